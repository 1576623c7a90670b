"""DHCP answers → a provisioning URL (docs/design.md §1 step 2.1, §6; docs/protocols.md §3). Pure.

Option 43 is read as Auerswald sub-options (0x42 → 66, 0x43 → 67; code byte, length byte with or without
the trailing NUL, text; pad 0x00 and end 0xFF honoured) and overrides 66/67 field by field. Truncation is
tolerated in that it never fails the run, but an option 43 whose structure is broken (a value cut short, a
code without length, a 0x42/0x43 that is not text) is ignored as a whole and reported: half a server
name is not a server to send the phone's MAC to. 66/67 fall back to the BOOTP `sname`/`file` fields
(ISC's `filename` fills `file`, not option 67). The two parts are joined with exactly one `/`; a result
without a scheme is tried as https, then http.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

SUB_SERVER = 0x42  # stands for option 66
SUB_FILE = 0x43  # stands for option 67
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass(frozen=True)
class DhcpAnswer:
    """What a DHCPACK (or a lease) said that matters here; bytes as received."""

    option43: bytes | None = None
    option66: bytes | None = None
    option67: bytes | None = None
    sname: bytes | None = None
    file: bytes | None = None
    ntp_servers: tuple[str, ...] = ()  # option 42


@dataclass(frozen=True)
class DhcpUrl:
    candidates: tuple[str, ...]  # to try in order (https before http for a scheme-less result)
    notes: tuple[str, ...] = field(default_factory=tuple)  # what was read from where, for the report


def parse_option43(raw: bytes) -> tuple[dict[int, str], list[str]]:
    """Auerswald sub-options of option 43, and notes on what is broken; any note means: do not use it."""
    subs: dict[int, str] = {}
    notes: list[str] = []
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == 0x00:
            i += 1
            continue
        if code == 0xFF:
            break
        if i + 1 >= len(raw):
            notes.append(f"option 43 truncated after sub-option code 0x{code:02x}")
            break
        length = raw[i + 1]
        value = raw[i + 2: i + 2 + length]
        if len(value) < length:
            notes.append(f"option 43 sub-option 0x{code:02x} truncated: {len(value)} of {length} bytes")
            break
        text = text_value(value)
        if text is None and code in (SUB_SERVER, SUB_FILE):
            notes.append(f"option 43 sub-option 0x{code:02x} is not text")
        elif text is not None:
            subs[code] = text
        i += 2 + length
    return subs, notes


def text_value(value: bytes) -> str | None:
    """An option's text as DHCP servers send it (option 43/17 sub-options, 66, 67, 59): up to the first NUL,
    UTF-8, no control characters, stripped; None when it is not text."""
    value = value.split(b"\x00", 1)[0]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    return text.strip()


def url_from_answer(answer: DhcpAnswer) -> DhcpUrl:
    """The URL candidates DHCP gives (none: empty), with notes on where they came from and what was wrong."""
    notes: list[str] = []
    subs: dict[int, str] = {}
    if answer.option43:
        subs, broken = parse_option43(answer.option43)
        if broken:
            notes += [*broken, "option 43 ignored: malformed"]
            subs = {}
    base, base_from = _first((subs.get(SUB_SERVER), "option 43/0x42"), (_opt(answer.option66), "option 66"),
                             (_opt(answer.sname), "BOOTP sname"))
    path, path_from = _first((subs.get(SUB_FILE), "option 43/0x43"), (_opt(answer.option67), "option 67"),
                             (_opt(answer.file), "BOOTP file"))
    if base_from:
        notes.append(f"server from {base_from}: {base}")
    if path_from:
        notes.append(f"file from {path_from}: {path}")
    joined = join(base, path)
    if joined is None:
        return DhcpUrl((), tuple(notes))
    if _SCHEME.match(joined):
        return DhcpUrl((joined,), tuple(notes))
    return DhcpUrl((f"https://{joined}", f"http://{joined}"), tuple(notes))


def join(base: str, path: str) -> str | None:
    """66 + 67 with exactly one `/` between them (docs/protocols.md §3.4). A server given as a bare IPv6
    address (`2001:db8::1`, `http://2001:db8::1/`: what an administrator types into option 66 or DHCPv6's
    0x42) gets its brackets, the only form a URL can carry it in."""
    base = _bracket_ipv6(base)
    if not base and not path:
        return None
    if path and _SCHEME.match(path):
        return path  # 67 alone is a full URL
    if not base:
        return None
    if not path:
        return base
    return base.rstrip("/") + "/" + path.lstrip("/")


def _bracket_ipv6(base: str) -> str:
    scheme, sep, rest = base.partition("://")
    if not sep:
        scheme, rest = "", base
    host, slash, tail = rest.partition("/")
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return base
    return f"{scheme}{sep}[{host}]{slash}{tail}"


def _opt(value: bytes | None) -> str:
    if not value:
        return ""
    return text_value(value) or ""


def _first(*pairs: tuple[str | None, str]) -> tuple[str, str]:
    for value, where in pairs:
        if value:
            return value, where
    return "", ""


def parse_hex_bytes(text: str) -> bytes:
    """ISC dhclient writes option bytes as `42:17:68:…:0:f`: not zero-padded.

    Raises:
        ValueError: not colon-separated hex bytes.
    """
    parts = [p for p in text.strip().split(":") if p != ""]
    if not all(_HEX_BYTE.match(p) for p in parts):  # int(p, 16) also takes "٣" and " 4", "0x4"
        raise ValueError("not colon-separated hex bytes")
    return bytes(int(p, 16) for p in parts)


_HEX_BYTE = re.compile(r"^[0-9A-Fa-f]{1,2}$")
_STATEMENT = re.compile(r"^\s*(?:option\s+)?([\w-]+)\s+(.*?);\s*$")


def parse_dhclient_lease(text: str) -> DhcpAnswer | None:
    """The last `lease { }` of an ISC dhclient lease file (docs/design.md §3, `dhcp.mode: lease:PATH`)."""
    leases: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():  # line by line: quoted values may hold braces ("prov/{mac}.xml")
        stripped = line.strip()
        if current is None and re.match(r"^lease\s*\{$", stripped):
            current = []
        elif current is not None and stripped == "}":
            leases.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if not leases:
        return None
    values: dict[str, str] = {}
    for line in leases[-1]:
        match = _STATEMENT.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip()

    def string(name: str) -> bytes | None:
        value = values.get(name)
        if value is None:
            return None
        if value.startswith('"') and value.endswith('"'):
            return value[1:-1].encode()
        try:
            return parse_hex_bytes(value)
        except ValueError:
            return value.encode()

    # Not hex (a hand-edited file, Arabic-Indic digits): the raw text, which option 43's decoder then reports as
    # broken, rather than a ValueError out of discovery.
    opt43 = string("vendor-encapsulated-options")
    ntp = tuple(s.strip() for s in values.get("ntp-servers", "").split(",") if s.strip())
    return DhcpAnswer(option43=opt43, option66=string("tftp-server-name"), option67=string("bootfile-name"),
                      file=string("filename"), sname=string("server-name"), ntp_servers=ntp)
