"""DHCPv6 Information-Request and Reply (RFC 8415 §18.2.6, docs/design.md §11) as bytes, and the Reply's URL. Pure.

Owns the encoder, the decoder and the retransmission arithmetic; the exchange itself (socket, clock, random
draws) is `provd.sources.dhcp6`'s. The decoder never raises: every malformed option is ignored and named in
`Dhcp6Answer.notes`; a datagram that is not a Reply to our Information-Request gives None.

Why a pure codec and not scapy's DHCPv6 layers in the DHCPv4 child: the exchange then runs inside the
daemon with asyncio, with no child process. Measured on the bench machine (CPython 3.11, 2 CPUs, median of 10
whole-process runs under `/usr/bin/time`): `python -c pass` 0.015 s, 8.4 MB RSS; `import scapy.layers.dhcp6`
0.40 s, 54 MB (build and parse with it: the same); `import provd.core.dhcp6` plus building and parsing a
packet 0.055 s, 12 MB. In the daemon, where asyncio and socket are loaded anyway, one build and parse costs
about 7 µs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from provd.core.dhcp import SUB_FILE, SUB_SERVER, DhcpUrl, join, text_value

CLIENT_PORT = 546
SERVER_PORT = 547
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers, link scope

MSG_REPLY = 7
MSG_INFORMATION_REQUEST = 11
OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_ORO = 6
OPT_ELAPSED_TIME = 8
OPT_STATUS_CODE = 13
OPT_VENDOR_CLASS = 16
OPT_VENDOR_OPTS = 17
OPT_DNS_SERVERS = 23
OPT_SNTP_SERVERS = 31
OPT_INFORMATION_REFRESH_TIME = 32
OPT_NTP_SERVER = 56
OPT_BOOTFILE_URL = 59
OPT_INF_MAX_RT = 83
# RFC 8415 §18.2.6: an Information-request MUST ask for INF_MAX_RT and the Information Refresh Time; the rest
# is what provd reads (17, 56, 31, 59) or what a phone's stack wants beside it (23: DNS servers).
REQUESTED = (OPT_VENDOR_OPTS, OPT_DNS_SERVERS, OPT_SNTP_SERVERS, OPT_INFORMATION_REFRESH_TIME, OPT_NTP_SERVER,
             OPT_BOOTFILE_URL, OPT_INF_MAX_RT)
DUID_LL = 3
HW_ETHERNET = 1
NTP_SUB_SRV_ADDR = 1
NTP_SUB_MC_ADDR = 2
NTP_SUB_SRV_FQDN = 3
TRANSMISSIONS = 3  # MRC: three tries, as DHCPv4's (docs/design.md §6)
RAND_SPAN = 0.1  # RFC 8415 §15: RAND is uniform in [-0.1, +0.1]
_STATUS_NAMES = {1: "UnspecFail", 2: "NoAddrsAvail", 3: "NoBinding", 4: "NotOnLink", 5: "UseMulticast",
                 6: "NoPrefixAvail"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_LABEL = re.compile(rb"^[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?$")


@dataclass(frozen=True)
class Dhcp6Answer:
    """What a Reply said that matters here; bytes as received, addresses as text."""

    vendor_options: tuple[tuple[int, bytes], ...] = ()  # option 17: (enterprise number, its option-data)
    boot_file_url: bytes | None = None  # option 59 (RFC 5970)
    ntp_servers: tuple[str, ...] = ()  # option 56 (RFC 5908: addresses and FQDNs), then option 31 (SNTP)
    notes: tuple[str, ...] = ()  # what was malformed and ignored, for the report
    server_id: bytes | None = None  # option 2, the server's DUID (RFC 8415 wants one; provd does not insist)


def duid_ll(mac: bytes) -> bytes:
    """DUID-LL (RFC 8415 §11.4): type 3, hardware type 1 (Ethernet), the MAC. Stable across reboots and
    needs no clock, unlike DUID-LLT: the right one for a phone that provisions before its time is valid."""
    return DUID_LL.to_bytes(2, "big") + HW_ETHERNET.to_bytes(2, "big") + mac


def _option(code: int, data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"option {code} would be {len(data)} bytes, more than 65535")
    return code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def elapsed_cs(seconds: float) -> int:
    """The Elapsed Time option's value (RFC 8415 §21.9): hundredths of a second since the first
    transmission, 0xffff once that no longer fits."""
    return min(max(round(seconds * 100), 0), 0xFFFF)


def build_information_request(*, xid: int, mac: bytes, vendor_class: str, enterprise: int,
                              elapsed_cs: int) -> bytes:
    """An Information-Request: Client Identifier (DUID-LL), Option Request, Elapsed Time and, unless
    `vendor_class` is empty, a Vendor Class option (16) for `enterprise` with `vendor_class` as its one
    class-data item. The same `xid` for every retransmission; only `elapsed_cs` changes.

    Raises:
        ValueError: xid not 24 bits, mac not 6 bytes, enterprise not 32 bits, vendor_class too long.
    """
    if not 0 <= xid <= 0xFFFFFF:
        raise ValueError(f"transaction id {xid} is not 24 bits")
    if len(mac) != 6:
        raise ValueError(f"MAC has {len(mac)} bytes, not 6")
    if not 0 <= enterprise <= 0xFFFFFFFF:
        raise ValueError(f"enterprise number {enterprise} is not 32 bits")
    out = bytes([MSG_INFORMATION_REQUEST]) + xid.to_bytes(3, "big")
    out += _option(OPT_CLIENTID, duid_ll(mac))
    out += _option(OPT_ORO, b"".join(code.to_bytes(2, "big") for code in REQUESTED))
    out += _option(OPT_ELAPSED_TIME, min(max(elapsed_cs, 0), 0xFFFF).to_bytes(2, "big"))
    if vendor_class:
        data = vendor_class.encode("utf-8")
        if len(data) > 0xFFFF - 6:
            raise ValueError(f"vendor class is {len(data)} bytes, too long for option 16")
        out += _option(OPT_VENDOR_CLASS, enterprise.to_bytes(4, "big") + len(data).to_bytes(2, "big") + data)
    return out


def retransmission_timeouts(first_wait: float, rands: Sequence[float]) -> tuple[float, ...]:
    """RT of each transmission (RFC 8415 §15): RT1 = IRT + RAND*IRT, RTn = 2*RTn-1 + RAND*RTn-1, with IRT =
    `first_wait` and one RAND per transmission from `rands` (clamped to ±0.1). No MRT cap: three doublings
    of a few seconds stay far below INF_MAX_RT (3600 s). The exchange ends when the last RT has run out."""
    timeouts: list[float] = []
    for rand in rands:
        rand = min(max(rand, -RAND_SPAN), RAND_SPAN)
        previous = timeouts[-1] if timeouts else None
        timeouts.append(first_wait + rand * first_wait if previous is None else 2 * previous + rand * previous)
    return tuple(timeouts)


def _options(data: bytes, start: int, where: str, notes: list[str]) -> list[tuple[int, bytes]]:
    """code(2) length(2) data, from `start` to the end; a cut-short option ends the walk (noted)."""
    found: list[tuple[int, bytes]] = []
    i = start
    while i < len(data):
        if i + 4 > len(data):
            notes.append(f"{where}: {len(data) - i} stray bytes after the last option: ignored")
            break
        code = int.from_bytes(data[i:i + 2], "big")
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if i + 4 + length > len(data):
            notes.append(f"{where} {code} claims {length} bytes, {len(data) - i - 4} remain: ignored"
                         + (" with what follows" if where == "option" else ""))
            break
        found.append((code, data[i + 4:i + 4 + length]))
        i += 4 + length
    return found


def parse_reply(data: bytes, *, xid: int, client_id: bytes | None = None) -> Dhcp6Answer | None:
    """The answer of a Reply (msg-type 7) to transaction `xid`; None for anything else, including a Reply that
    carries a Client Identifier other than `client_id` (when given; RFC 8415 §16.10). Never raises."""
    if len(data) < 4 or data[0] != MSG_REPLY or int.from_bytes(data[1:4], "big") != xid:
        return None
    notes: list[str] = []
    options = _options(data, 4, "option", notes)
    if client_id is not None and any(code == OPT_CLIENTID and value != client_id for code, value in options):
        return None
    if client_id is not None and any(code == OPT_CLIENTID for code, _ in _cut_option(data, options)):
        return None  # a Client Identifier cut short cannot be ours
    vendor: list[tuple[int, bytes]] = []
    boot_file_url: bytes | None = None
    ntp56: list[str] = []
    sntp: list[str] = []
    server_id: bytes | None = None
    for code, value in options:
        if code == OPT_SERVERID and server_id is None:
            server_id = value
        elif code == OPT_STATUS_CODE:
            _status(value, notes)
        elif code == OPT_VENDOR_OPTS:
            parsed = _vendor_option(value, notes)
            if parsed is not None:
                vendor.append(parsed)
        elif code == OPT_BOOTFILE_URL:
            if boot_file_url is None:
                boot_file_url = value
            else:
                notes.append("option 59 repeated: the first one counts")
        elif code == OPT_NTP_SERVER:
            ntp56 += _ntp_option(value, notes)
        elif code == OPT_SNTP_SERVERS:
            sntp += _addresses(value, "option 31", notes)
    return Dhcp6Answer(vendor_options=tuple(vendor), boot_file_url=boot_file_url,
                       ntp_servers=tuple(dict.fromkeys(ntp56 + sntp)), notes=tuple(notes), server_id=server_id)


def _cut_option(data: bytes, options: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """The option whose header is complete but whose data runs past the end (as code, b""), if any."""
    i = 4 + sum(4 + len(value) for _, value in options)
    if i + 4 <= len(data):
        return [(int.from_bytes(data[i:i + 2], "big"), b"")]
    return []


def _status(value: bytes, notes: list[str]) -> None:
    if len(value) < 2:
        notes.append(f"option 13 (Status Code) has {len(value)} bytes, needs 2: ignored")
        return
    code = int.from_bytes(value[:2], "big")
    if code != 0:
        message = value[2:].decode("utf-8", "replace")
        message = "".join(c if c.isprintable() else "?" for c in message)[:200]
        name = _STATUS_NAMES.get(code, "unknown")
        notes.append(f"Status Code {code} ({name})" + (f": {message}" if message else ""))


def _vendor_option(value: bytes, notes: list[str]) -> tuple[int, bytes] | None:
    """Option 17 (RFC 8415 §21.17): enterprise-number(4), then sub-options code(2) len(2) data. One whose
    sub-options do not fit is ignored as a whole, as option 43 is: half a server name is no server."""
    if len(value) < 4:
        notes.append(f"option 17 has {len(value)} bytes, needs an enterprise number: ignored")
        return None
    enterprise = int.from_bytes(value[:4], "big")
    broken: list[str] = []
    _options(value, 4, f"option 17 (enterprise {enterprise}) sub-option", broken)
    if broken:
        notes += [*broken, f"option 17 (enterprise {enterprise}) ignored: malformed"]
        return None
    return enterprise, value[4:]


def _addresses(value: bytes, where: str, notes: list[str]) -> list[str]:
    if len(value) % 16:
        notes.append(f"{where} is {len(value)} bytes, not a multiple of 16: ignored")
        return []
    return [str(ipaddress.IPv6Address(value[i:i + 16])) for i in range(0, len(value), 16)]


def _ntp_option(value: bytes, notes: list[str]) -> list[str]:
    """Option 56 (RFC 5908): sub-option 1 a server address, 3 a server FQDN (DNS wire format, uncompressed);
    2 (a multicast group) is noted and not used: provd asks its NTP servers by unicast."""
    broken: list[str] = []
    subs = _options(value, 0, "option 56 sub-option", broken)
    notes += broken
    servers: list[str] = []
    for code, data in subs:
        if code == NTP_SUB_SRV_ADDR:
            if len(data) != 16:
                notes.append(f"option 56 sub-option 1 is {len(data)} bytes, not 16: ignored")
            else:
                servers.append(str(ipaddress.IPv6Address(data)))
        elif code == NTP_SUB_MC_ADDR:
            notes.append("option 56 multicast address ignored: provd asks NTP servers by unicast")
        elif code == NTP_SUB_SRV_FQDN:
            name = _fqdn(data)
            if name is None:
                notes.append(f"option 56 sub-option 3 is not a DNS name in wire format: {data[:64].hex()}")
            else:
                servers.append(name)
        else:
            notes.append(f"option 56 sub-option {code} unknown: ignored")
    return servers


def _fqdn(data: bytes) -> str | None:
    """A host name in DNS wire format (RFC 1035 §3.1), without compression (RFC 5908 §4); None if it is not
    one: a bad label length, a compression pointer, no root label at the end, or more than 255 bytes."""
    if not 2 <= len(data) <= 255 or data[-1] != 0:
        return None
    labels: list[str] = []
    i = 0
    while data[i] != 0:
        length = data[i]
        label = data[i + 1:i + 1 + length]
        if length > 63 or len(label) != length or i + 1 + length >= len(data) or not _LABEL.match(label):
            return None
        labels.append(label.decode("ascii"))
        i += 1 + length
    return ".".join(labels) if i == len(data) - 1 and labels else None




def url_from_answer(answer: Dhcp6Answer, *, enterprise: int) -> DhcpUrl:
    """The URL candidates of a Reply (none: empty) and the notes for the report: the answer's own notes first,
    then what was read from where and what was ignored.

    Option 17 of `enterprise` (0: any), the first that carries 0x42 or 0x43, joined like option 43's; else
    option 59. A result without a scheme is tried as https, then http.
    """
    notes = list(answer.notes)
    joined: str | None = None
    for number, data in answer.vendor_options:
        if enterprise and number != enterprise:
            notes.append(f"option 17 for enterprise {number} ignored: not {enterprise}")
            continue
        subs = _options(data, 0, "", [])
        texts: dict[int, str] = {}
        bad = False
        for code, value in subs:
            if code in (SUB_SERVER, SUB_FILE) and code not in texts:
                text = text_value(value)
                if text is None:
                    notes.append(f"option 17 (enterprise {number}) sub-option 0x{code:02x} is not text")
                    bad = True
                elif text:
                    texts[code] = text
        if bad:
            notes.append(f"option 17 (enterprise {number}) ignored: malformed")
            continue
        if not texts:
            continue
        base, path = texts.get(SUB_SERVER, ""), texts.get(SUB_FILE, "")
        if base:
            notes.append(f"server from option 17/0x42 (enterprise {number}): {base}")
        if path:
            notes.append(f"file from option 17/0x43 (enterprise {number}): {path}")
        joined = join(base, path)
        if joined is not None:
            break
        notes.append(f"option 17 (enterprise {number}): a file without a server is no URL")
    if joined is None and answer.boot_file_url is not None:
        text = text_value(answer.boot_file_url)
        if not text:
            notes.append("option 59 is empty or not text: ignored")
        else:
            notes.append(f"URL from option 59: {text}")
            joined = text
    if joined is None:
        return DhcpUrl((), tuple(notes))
    if _SCHEME.match(joined):
        return DhcpUrl((joined,), tuple(notes))
    return DhcpUrl((f"https://{joined}", f"http://{joined}"), tuple(notes))
