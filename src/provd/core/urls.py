"""Which URLs provd fetches, how a reference file's entries resolve against it (RFC 3986), and which
credentials go with a URL (its own userinfo, or those of its reference file on the same origin). Pure.

Every URL that enters a run (explicit, discovered, a reference entry, a redirect target) passes
`check_url` before any I/O: what it lets through, the HTTP adapter can encode.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urljoin, urlsplit, urlunsplit

from provd.errors import FetchURLError

SCHEMES = frozenset({"http", "https", "file"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §3.2.2 reg-name without pct-encoded (no phone server needs "%" in its name), after IDNA.
_REG_NAME = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=-]+$")


class Origin(NamedTuple):
    """RFC 6454 §4: the scheme, host and port a URL talks to; credentials belong to one origin."""

    scheme: str
    host: str
    port: int | None


def check_url(url: str) -> SplitResult:
    """The parts of an absolute URL provd will fetch.

    Raises:
        FetchURLError: not absolute, a scheme other than http, https, file, no host for http(s), a host that
            is not a host name or address, characters no URL can carry (anything `str.isprintable` refuses:
            controls, lone surrogates, invisible format characters).
    """
    shown = redact(url)
    bad = None if url.isprintable() else next(c for c in url if not c.isprintable())
    if bad is not None:  # a lone surrogate cannot be encoded at all; controls split requests and logs,
        # and invisible format characters (U+200D, bidi overrides) make a host look like another
        raise FetchURLError(f"not a valid URL: character U+{ord(bad):04X} is not allowed in a URL", url=shown)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise FetchURLError(f"not a valid URL: {exc}", url=shown) from exc
    if parts.scheme not in SCHEMES:
        raise FetchURLError(f"scheme {parts.scheme or '(none)'!r} is not supported (http, https, file)",
                            url=shown)
    if parts.scheme != "file":
        if not parts.hostname:
            raise FetchURLError("no host", url=shown)
        _check_host(parts.hostname, shown)
    return parts


def _check_host(host: str, shown: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:  # IDNA: empty labels, over-long labels, prohibited code points
        raise FetchURLError(f"not a valid URL: host {host!r} is not a valid host name ({exc})", url=shown) from exc
    if not _REG_NAME.match(ascii_host):
        raise FetchURLError(f"not a valid URL: host {host!r} is not a valid host name", url=shown)


def origin(url: str) -> Origin:
    """The origin of an absolute URL (the port spelled out when the scheme implies it)."""
    parts = urlsplit(url)
    port = parts.port if parts.port is not None else DEFAULT_PORTS.get(parts.scheme)
    return Origin(parts.scheme, (parts.hostname or "").lower(), port)


def resolve(reference: str, base: str) -> str:
    """An entry of a reference file, resolved against the URL the reference file came from.

    `common.xml` → the base's directory; `/x/y.xml` → the base's host; `https://…` → as is. A remote
    reference file may not point at the phone's own files (`file:`): only a local one may. The base's
    credentials go with every entry on the base's origin: a relative entry keeps them anyway (RFC 3986
    §5.2.2 keeps the authority when the reference has none); an absolute entry naming the same scheme,
    host and port without userinfo gets them too, as a browser's credential cache would; an entry on any
    other origin never does.

    Raises:
        FetchURLError: the result is not fetchable, or a remote file refers to a local one.
    """
    target = urljoin(base, reference.strip())
    parts = check_url(target)
    if parts.scheme == "file" and urlsplit(base).scheme != "file":
        raise FetchURLError(f"a file fetched from {redact(base)} may not refer to a local file",
                            url=redact(target))
    return with_credentials(target, base)


def with_credentials(url: str, owner: str) -> str:
    """`url` carrying `owner`'s userinfo when it has none of its own and both are on the same origin;
    otherwise `url` as it is (credentials are never handed to another origin)."""
    clean, own = split_credentials(url)
    if own is not None:
        return url
    _, creds = split_credentials(owner)
    if creds is None or origin(url) != origin(owner):
        return url
    return _join_userinfo(clean, urlsplit(owner).netloc.rpartition("@")[0])


def _join_userinfo(url: str, userinfo: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def redact(url: str) -> str:
    """The URL without its password, for reports and logs; characters no output can print (a lone
    surrogate) are shown escaped, so a hostile URL cannot break the report or the terminal."""
    if not url.isprintable():
        url = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in url)
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return url
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, (user, password)) — credentials go into an auth handler, not the URL."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean, (unquote(parts.username), unquote(parts.password or ""))
