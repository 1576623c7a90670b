"""Which URLs provd fetches, and how a reference file's entries resolve against it (RFC 3986). Pure."""

from __future__ import annotations

from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from provd.errors import FetchURLError

SCHEMES = frozenset({"http", "https", "file"})


def check_url(url: str) -> SplitResult:
    """The parts of an absolute URL provd will fetch.

    Raises:
        FetchURLError: not absolute, a scheme other than http, https, file, or no host for http(s).
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise FetchURLError(f"not a valid URL: {exc}", url=redact(url)) from exc
    if parts.scheme not in SCHEMES:
        raise FetchURLError(f"scheme {parts.scheme or '(none)'!r} is not supported (http, https, file)",
                            url=redact(url))
    if parts.scheme != "file" and not parts.hostname:
        raise FetchURLError("no host", url=redact(url))
    if any(c in url for c in "\r\n\t\x00"):
        raise FetchURLError("control characters in URL", url=redact(url))
    return parts


def resolve(reference: str, base: str) -> str:
    """An entry of a reference file, resolved against the URL the reference file came from.

    `common.xml` → the base's directory; `/x/y.xml` → the base's host; `https://…` → as is. A remote
    reference file may not point at the phone's own files (`file:`): only a local one may.

    Raises:
        FetchURLError: the result is not fetchable, or a remote file refers to a local one.
    """
    target = urljoin(base, reference.strip())
    parts = check_url(target)
    if parts.scheme == "file" and urlsplit(base).scheme != "file":
        raise FetchURLError(f"a file fetched from {redact(base)} may not refer to a local file",
                            url=redact(target))
    return target


def redact(url: str) -> str:
    """The URL without its password, for reports and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, (user, password)) — credentials go into an auth handler, not the URL."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    from urllib.parse import unquote

    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    clean = urlunsplit(parts._replace(netloc=host))
    return clean, (unquote(parts.username), unquote(parts.password or ""))
