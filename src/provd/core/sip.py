"""A small SIP message codec (RFC 3261 §7, §20) for check-sync and plug-and-play. Pure.

Parsing is defensive: any input either becomes a `SipRequest`/`SipResponse` or raises `SipParseError`; it
never raises anything else (RFC 4475's torture messages are in the tests). Header names are
case-insensitive, compact forms are expanded, folded lines are unfolded; over UDP a missing Content-Length
means "the rest of the datagram" (administrators' tools such as sipsak send none), and anything after the
declared body — a second request in the same datagram — is ignored (RFC 3261 §18.3). Numbers are ASCII
`1*DIGIT` (RFC 3261 §25.1): `int()` and `\\d` also take `①` or `٣`, which no SIP peer sends.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "e": "content-encoding", "s": "subject", "k": "supported", "o": "event",
           "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires"}
MAX_MESSAGE = 65535

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) (SIP/[0-9]+\.[0-9]+)$")
_STATUS_LINE = re.compile(r"^(SIP/[0-9]+\.[0-9]+) ([0-9]{3}) ?(.*)$")
_HEADER = re.compile(rf"^({_TOKEN})[ \t]*:[ \t]*(.*)$", re.DOTALL)
_CSEQ = re.compile(rf"^([0-9]{{1,10}})[ \t]+({_TOKEN})$")
_LENGTH = re.compile(r"^[0-9]{1,10}$")
# RFC 3261 §19.1.1 SIP-URI / SIPS-URI (userinfo, host, port, params, headers) and RFC 3966 tel: — checked
# for shape, not for every production: `*` (valid only in REGISTER-less OPTIONS talk, never here), a bare
# host, an http: URI are not where a NOTIFY can be addressed.
_URI_CHARS = r"[A-Za-z0-9\-_.!~*'()%&=+$,;?/:\[\]]"
_SIP_URI = re.compile(
    rf"^sips?:(?:{_URI_CHARS}+@)?(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?\.?|\[[0-9A-Fa-f:.]+\])"
    rf"(?::[0-9]{{1,5}})?(?:[;?]{_URI_CHARS}*)?$", re.IGNORECASE)
_TEL_URI = re.compile(r"^tel:\+?[0-9A-Fa-f*#().\-]+(?:;[A-Za-z0-9\-_.!~*'()%&=+$,;:/\[\]]*)?$", re.IGNORECASE)


class SipParseError(ValueError):
    """The datagram is not a usable SIP message; `status` is the response it deserves (400, 505).

    `request` is the request as far as it could be read (start line and headers, no body) when only the
    body framing is broken: enough to answer 400 to (RFC 3261 §21.4.1), not enough to act on."""

    def __init__(self, message: str, *, status: int = 400, request: SipRequest | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request = request


@dataclass(frozen=True)
class Headers:
    """Ordered (lower-case name, value) pairs; values unfolded and stripped."""

    items: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for n, v in self.items if n == name), None)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.items if n == name]


@dataclass(frozen=True)
class SipRequest:
    method: str
    uri: str
    version: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class SipResponse:
    version: str
    status: int
    reason: str
    headers: Headers
    body: bytes


SipMessage = SipRequest | SipResponse


def parse(data: bytes) -> SipMessage:
    """Raises: SipParseError, and nothing else."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    head, sep, rest = _split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")  # RFC 3261 headers are UTF-8; be lenient, never crash
    lines = _unfold(text)
    if not lines:
        raise SipParseError("empty message")
    start, header_lines = lines[0], lines[1:]
    headers = Headers(tuple(_header(line) for line in header_lines if line))
    status_match = _STATUS_LINE.match(start)
    if status_match:
        version, code, reason = status_match.groups()
        return SipResponse(version, int(code), reason, headers, _body(headers, rest if sep else b""))
    request_match = _REQUEST_LINE.match(start)
    if not request_match:
        raise SipParseError(f"malformed request line: {start[:80]!r}")
    method, uri, version = request_match.groups()
    if version != "SIP/2.0":
        raise SipParseError(f"unsupported version {version}", status=505)
    try:
        body = _body(headers, rest if sep else b"")
    except SipParseError as exc:
        raise SipParseError(str(exc), request=SipRequest(method, uri, version, headers, b"")) from None
    return SipRequest(method, uri, version, headers, body)


def _split_head(data: bytes) -> tuple[bytes, bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, rest = data.partition(separator)
        if sep:
            return head, sep, rest
    return data, b"", b""


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n", text):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1] + " " + raw.strip()
        else:
            lines.append(raw.rstrip(" \t"))
    while lines and not lines[0]:
        lines.pop(0)  # leading empty lines are tolerated (RFC 3261 §7.5)
    return lines


def _header(line: str) -> tuple[str, str]:
    match = _HEADER.match(line)
    if not match:
        raise SipParseError(f"malformed header line: {line[:60]!r}")
    name = match.group(1).lower()
    return COMPACT.get(name, name), match.group(2).strip()


def _body(headers: Headers, rest: bytes) -> bytes:
    values = headers.get_all("content-length")
    if not values:
        return rest  # over UDP the datagram ends the body
    if len(set(values)) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = values[0]
    if not _LENGTH.match(value):
        raise SipParseError(f"bad Content-Length {value[:20]!r}")
    length = int(value)
    if length > len(rest):
        raise SipParseError(f"body shorter than Content-Length ({len(rest)} < {length})")
    return rest[:length]


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str


def cseq(request: SipRequest) -> CSeq:
    """Raises: SipParseError (missing, malformed, or its method differs from the request's)."""
    value = request.headers.get("cseq")
    match = _CSEQ.match(value or "")
    if match is None:
        raise SipParseError(f"bad CSeq {value!r}")
    number, method = int(match.group(1)), match.group(2)
    if method != request.method or number >= 2**31:
        raise SipParseError("CSeq does not match the request")
    return CSeq(number, method)


@dataclass(frozen=True)
class Event:
    package: str  # lower case, e.g. "check-sync", "ua-profile"
    params: dict[str, str] = field(default_factory=dict)


def event(request: SipRequest) -> Event | None:
    value = request.headers.get("event")
    if value is None:
        return None
    package, *params = [p.strip() for p in value.split(";")]
    parsed: dict[str, str] = {}
    for p in params:
        key, _, val = p.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"')
    return Event(package.lower(), parsed)


def branch(request: SipRequest) -> str | None:
    via = request.headers.get("via")
    if via is None:
        return None
    match = re.search(r";\s*branch\s*=\s*([^;,\s]+)", via, re.IGNORECASE)
    return match.group(1) if match else None


def check_mandatory(request: SipRequest) -> None:
    """Raises: SipParseError when a header every request needs is missing (RFC 3261 §8.1.1), or the
    Request-URI is not a SIP, SIPS or tel URI."""
    for name in ("via", "from", "to", "call-id", "cseq"):
        if request.headers.get(name) is None:
            raise SipParseError(f"missing {name} header")
    cseq(request)
    if not valid_request_uri(request.uri):
        raise SipParseError(f"Request-URI {request.uri[:80]!r} is not a sip:, sips: or tel: URI")


def valid_request_uri(uri: str) -> bool:
    """RFC 3261 §25.1: a request is addressed to a SIP-URI or SIPS-URI (or, for a phone, a tel: URI)."""
    return bool(_SIP_URI.match(uri) or _TEL_URI.match(uri))


def can_answer(request: SipRequest) -> bool:
    """A response can be built only with a Via, From, To, Call-ID and CSeq to echo."""
    return all(request.headers.get(n) for n in ("via", "from", "to", "call-id", "cseq"))


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 481:
            "Call/Transaction Does Not Exist", 489: "Bad Event", 500: "Server Internal Error",
            505: "Version Not Supported"}


def response(request: SipRequest, status: int, *, to_tag: str | None = None,
             extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A response echoing Via (all), From, To (with a tag added when it has none), Call-ID and CSeq."""
    h = request.headers
    lines = [f"SIP/2.0 {status} {_REASONS.get(status, 'Unknown')}"]
    lines += [f"Via: {v}" for v in h.get_all("via")]
    lines.append(f"From: {h.get('from')}")
    to = h.get("to") or ""
    if not re.search(r";\s*tag\s*=", to, re.IGNORECASE):
        to = f"{to};tag={to_tag or new_tag()}"
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {h.get('call-id')}")
    lines.append(f"CSeq: {h.get('cseq')}")
    lines += [f"{name}: {value}" for name, value in extra]
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def new_tag() -> str:
    return secrets.token_hex(6)


def url_in_body(message: SipMessage) -> str | None:
    """The URL a ua-profile NOTIFY carries: a bare URL body, or `message/external-body`'s `URL=`."""
    content_type = (message.headers.get("content-type") or "").lower()
    try:
        body = message.body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if content_type.startswith("message/external-body"):
        match = re.search(r'URL\s*=\s*"?([^";\s]+)', message.headers.get("content-type") or "", re.IGNORECASE)
        if match is None:
            match = re.search(r'URL\s*=\s*"?([^";\s]+)', body, re.IGNORECASE)
        return match.group(1) if match else None
    first = body.splitlines()[0].strip() if body else ""
    return first or None
