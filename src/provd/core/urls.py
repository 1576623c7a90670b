"""Which URLs provd fetches, how a reference file's entries resolve against it (RFC 3986), and which
credentials go with a URL (its own userinfo, or those of its reference file on the same origin). Pure.

Every URL that enters a run (explicit, discovered, a reference entry, a redirect target) passes
`check_url` before any I/O: what it lets through, the HTTP adapter can encode. An IPv6 address stands in
brackets (RFC 3986 §3.2.2: `http://[2001:db8::1]:8080/`); a zone (RFC 6874 `[fe80::1%25eth0]`) is refused,
as the WHATWG URL Standard and browsers refuse it: the zone names one host's interface, not a server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urljoin, urlsplit, urlunsplit

from provd.errors import FetchURLError

SCHEMES = frozenset({"http", "https", "file"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 §3.2.2 reg-name without pct-encoded (no phone server needs "%" in its name), after IDNA.
_REG_NAME = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=-]+$")
_AUTHORITY = re.compile(r"^(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*:)?//)(?P<authority>[^/?#]*)(?P<tail>.*)$", re.DOTALL)


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
    except ValueError as exc:
        raise FetchURLError(f"not a valid URL: {exc}", url=shown) from exc
    if parts.scheme in DEFAULT_PORTS:
        _check_brackets(parts.netloc.rpartition("@")[2], shown)  # before .port: it misreads `2001:db8::1`
    try:
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


def _check_brackets(hostport: str, shown: str) -> None:
    """RFC 3986 §3.2.2: `[` and `]` only around a whole IPv6 address, nothing but `:port` after it, and an
    IPv6 address never bare (its colons would read as a port)."""
    if hostport.startswith("["):
        literal, closed, rest = hostport[1:].partition("]")
        if not closed:
            raise FetchURLError("not a valid URL: the IPv6 address has no closing ']'", url=shown)
        if rest and not re.fullmatch(r":[0-9]*", rest):
            raise FetchURLError(f"not a valid URL: {rest!r} after the IPv6 address [{literal}] (only :port may "
                                f"follow it)", url=shown)
        _check_ipv6_literal(literal, shown)
    elif "[" in hostport or "]" in hostport:
        raise FetchURLError(f"not a valid URL: host {hostport!r}: brackets only go around a whole IPv6 address",
                            url=shown)
    elif hostport.count(":") > 1 and _is_ipv6(hostport):
        raise FetchURLError(f"not a valid URL: an IPv6 address in a URL goes in brackets: [{hostport}]", url=shown)


def _check_ipv6_literal(literal: str, shown: str) -> None:
    if literal[:1] in ("v", "V"):
        raise FetchURLError(f"not a valid URL: [{literal}] is an IPvFuture address, which no server uses",
                            url=shown)
    if "%" in literal:
        raise FetchURLError(f"not a valid URL: [{literal}] carries a zone (the interface of a link-local "
                            f"address), which URLs cannot use: give a global address or a host name", url=shown)
    if not _is_ipv6(literal):
        raise FetchURLError(f"not a valid URL: [{literal}] is not an IPv6 address", url=shown)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_host(host: str, shown: str) -> None:
    problem = _host_problem(host)
    if problem is not None:
        raise FetchURLError(f"not a valid URL: {problem}", url=shown)


def _host_problem(host: str) -> str | None:
    """Why `host` (no brackets) is neither an address nor a host name; None when it is one."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:  # IDNA: empty labels, over-long labels, prohibited code points
        return f"host {host!r} is not a valid host name ({exc})"
    if not _REG_NAME.match(ascii_host) or ".." in ascii_host or ascii_host.startswith("."):
        return f"host {host!r} is not a valid host name"
    return None


def split_host_port(text: str, *, default_port: int) -> tuple[str, int]:
    """(host, port) of a server named outside a URL (`ntp.servers`, DHCP's NTP options): `name`, `name:123`,
    `192.0.2.1`, `192.0.2.1:123`, a bare IPv6 address (`2001:db8::1`: every colon is the address's),
    `[2001:db8::1]`, `[2001:db8::1]:123`; a link-local address may name its interface (`fe80::1%eth0`, as
    `ping` writes it, not RFC 6874's `%25`). The host comes back without brackets, as sockets take it.

    Raises:
        ValueError: none of those forms (the message says why).
    """
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not a host, address or [IPv6 address]:port")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: an IPv6 address in brackets is written [address] or [address]:port")
        if not _is_ipv6(host):
            raise ValueError(f"{text!r}: [{host}] is not an IPv6 address")
        return host, _port(rest[1:], text) if rest else default_port
    if text.count(":") > 1:  # a bare IPv6 address: it cannot carry a port
        if not _is_ipv6(text):
            raise ValueError(f"{text!r} is not an IPv6 address (with a port, write [address]:port)")
        return text, default_port
    host, colon, port = text.partition(":")
    problem = _host_problem(host) if host else f"{text!r} has no host"
    if problem is not None:
        raise ValueError(problem)
    return host, _port(port, text) if colon else default_port


def _port(text: str, whole: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: port {text!r} is not a number from 1 to 65535")
    return int(text)


def origin(url: str) -> Origin:
    """The origin of an absolute URL (the port spelled out when the scheme implies it; an address in its
    canonical form, RFC 5952, so `[2001:DB8:0::1]` and `[2001:db8::1]` are one origin)."""
    parts = urlsplit(url)
    port = parts.port if parts.port is not None else DEFAULT_PORTS.get(parts.scheme)
    host = (parts.hostname or "").lower()
    with contextlib.suppress(ValueError):  # a host name stays as it is
        host = ipaddress.ip_address(host).compressed
    return Origin(parts.scheme, host, port)


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
    try:
        target = urljoin(base, reference.strip())
    except ValueError as exc:  # urljoin splits the reference too: `//[::zz]/x` raises there
        raise FetchURLError(f"not a valid URL: {exc}", url=redact(reference.strip())) from exc
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
    surrogate) are shown escaped, so a hostile URL cannot break the report or the terminal.

    The authority is split by hand (RFC 3986 §3.2: userinfo up to the last `@`, the password after its first
    `:`), not by `urlsplit`: a URL it refuses (`http://u:pw@[::1/`) still loses its password before an error
    message shows it. Brackets and port stay as written: `http://u:***@[2001:db8::1]:8080/x`.
    """
    if not url.isprintable():
        url = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in url)
    match = _AUTHORITY.match(url)
    if match is None:
        return url
    userinfo, at, hostport = match["authority"].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{match['head']}{userinfo.partition(':')[0]}:***@{hostport}{match['tail']}"


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without userinfo, (user, password)) — credentials go into an auth handler, not the URL."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    clean = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return clean, (unquote(parts.username), unquote(parts.password or ""))
