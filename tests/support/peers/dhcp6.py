"""DHCPv6 servers in the server namespace answering the client's Information-Request: ISC `dhcpd -6` (4.4.3-P1
answers Information-Requests, stateless, from a `subnet6` on the veth's global prefix) and a scripted responder
(`nettools.py dhcp6-respond`) for the malformed Replies no real server sends.

Owns their configs, lease, pid and log files (in the pair's workdir) and their processes, stopped by PID. The
fixture `dhcp6_server` works on whichever IPv6 pair the test asked for (`netns6` or `netns_dual`). The option
bytes here are built by hand, never by provd's codec: the bench is the independent side.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.peers.dhcp import isc_hex, isc_string, sbin_binary
from tests.support.peers.netns import NetnsPair, NsProcess, Side, bound_ports, nettools_argv

ENTERPRISE = 34567  # the bench's default option-17 enterprise number (any will do: provd's default reads any)


# --- option bytes, by hand ---------------------------------------------------------------------------------------


def option(code: int, data: bytes) -> bytes:
    """A DHCPv6 option (and an option-17 or option-56 sub-option): code(2) length(2) data."""
    return code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def ipv6_bytes(address: str) -> bytes:
    return ipaddress.IPv6Address(address).packed


def dns_name(name: str) -> bytes:
    """A name in DNS wire format, uncompressed (RFC 5908 §4)."""
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"


def ntp_option_data(*servers: str, fqdns: Sequence[str] = ()) -> bytes:
    """Option 56's data: sub-option 1 per address, then sub-option 3 per FQDN."""
    return (b"".join(option(1, ipv6_bytes(s)) for s in servers)
            + b"".join(option(3, dns_name(n)) for n in fqdns))


@dataclass(frozen=True)
class Vendor:
    """One option 17 (vendor-specific information) the server sends: sub-options 0x42 (server) and 0x43 (file),
    as text; `raw_server` sends those bytes as 0x42 instead (e.g. not text)."""

    enterprise: int = ENTERPRISE
    server: str | None = None
    file: str | None = None
    raw_server: bytes | None = None


def _isc6_conf(pair: NetnsPair, *, boot_file_url: str | None, vendors: Sequence[Vendor], ntp: bytes | None,
               sntp: Sequence[str]) -> str:
    head: list[str] = []
    body: list[str] = []
    if boot_file_url is not None:
        body.append(f"option dhcp6.bootfile-url {isc_string(boot_file_url)};")
    for n, vendor in enumerate(vendors):
        space = f"vendor{n}"
        # 2-byte codes and lengths, as option 17's sub-options are (RFC 8415 §21.17); `string`: sent as given.
        head += [f"option space {space} code width 2 length width 2;",
                 f"option {space}.server code 66 = string;", f"option {space}.file code 67 = string;",
                 f"option vsio.{space} code {vendor.enterprise} = encapsulate {space};"]
        server = vendor.raw_server if vendor.raw_server is not None else (
            vendor.server.encode() if vendor.server is not None else None)
        if server is not None:
            body.append(f"option {space}.server {isc_hex(server)};")
        if vendor.file is not None:
            body.append(f"option {space}.file {isc_hex(vendor.file.encode())};")
    if ntp is not None:  # ISC 4.4 has no definition of option 56 (RFC 5908): its bytes as a string
        head.append("option dhcp6.provd-ntp-server code 56 = string;")
        body.append(f"option dhcp6.provd-ntp-server {isc_hex(ntp)};")
    if sntp:
        body.append(f"option dhcp6.sntp-servers {', '.join(sntp)};")
    lines = "".join(f"  {line}\n" for line in body)
    return (f"# tests/support/peers/dhcp6.py: ISC dhcpd -6 in {pair.server_ns}\n" + "".join(f"{h}\n" for h in head)
            + f"subnet6 {pair.server_ip6.rsplit('::', 1)[0]}::/64 {{\n{lines}}}\n")


# --- the scripted responder ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedReply:
    """One datagram the responder sends to each Information-Request it answers (see `nettools.py
    dhcp6-respond`). `raw` sends exactly those bytes; otherwise msg-type, the transaction id ("echo" = the
    request's, "other" = a different one), a Server Identifier, the Client Identifier ("echo", "none", or these
    bytes), then `options` as raw bytes; `truncate` cuts the finished datagram to that many bytes."""

    raw: bytes | None = None
    msg_type: int = 7
    xid: str = "echo"
    client_id: str | bytes = "echo"
    server_id: bool = True
    options: bytes = b""
    truncate: int | None = None

    def to_json(self) -> dict[str, object]:
        return {"raw": None if self.raw is None else self.raw.hex(), "msg_type": self.msg_type, "xid": self.xid,
                "client_id": self.client_id.hex() if isinstance(self.client_id, bytes) else self.client_id,
                "server_id": self.server_id, "options": self.options.hex(), "truncate": self.truncate}


@dataclass(frozen=True)
class ReceivedRequest:
    """An Information-Request as the responder received it."""

    time: float  # time.monotonic() in the responder (the same clock as the tests')
    src: str
    sport: int
    hop_limit: int | None
    payload: bytes


# --- servers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dhcp6Server:
    config: Path
    process: NsProcess
    log: Path | None = None  # the scripted responder's JSON lines of requests received

    @property
    def startup_s(self) -> float | None:
        return self.process.ready_after_s

    def log_text(self) -> str:
        """ISC: `Information-request message from fe80::… port 546, transaction ID …`, `Sending Reply to …`."""
        return self.process.log_text()

    def requests(self) -> list[ReceivedRequest]:
        """What the scripted responder received (ISC: empty)."""
        if self.log is None or not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            if line.endswith("}"):
                raw = json.loads(line)
                out.append(ReceivedRequest(time=raw["time"], src=raw["src"], sport=raw["sport"],
                                           hop_limit=raw["hop_limit"], payload=bytes.fromhex(raw["payload"])))
        return out

    def stop(self) -> None:
        self.process.stop()


class Dhcp6Servers:
    """The `dhcp6_server` fixture: `dhcp6_server(boot_file_url=…, vendors=[Vendor(…)], ntp=…, sntp=[…])` starts ISC
    dhcpd -6; `dhcp6_server.scripted([ScriptedReply(…), …])` the responder. One at a time (both need UDP 547)."""

    def __init__(self, pair: NetnsPair) -> None:
        self.pair = pair

    def __call__(self, *, boot_file_url: str | None = None, vendors: Sequence[Vendor] = (),
                 ntp: bytes | None = None, sntp: Sequence[str] = ()) -> Dhcp6Server:
        """ISC dhcpd -6 on the server veth, answering every Information-Request with option 59 `boot_file_url`,
        one option 17 per `vendors`, option 56 with the raw data `ntp` (see `ntp_option_data`) and option 31
        with `sntp`; each only when given. ISC sends what the client's Option Request asks for. Returns once
        UDP 547 is bound."""
        dhcpd = sbin_binary("dhcpd", "isc-dhcp-server")
        config = self.pair.unique_path("dhcpd6.conf")
        config.write_text(_isc6_conf(self.pair, boot_file_url=boot_file_url, vendors=vendors, ntp=ntp, sntp=sntp))
        leases = self.pair.unique_path("dhcpd6.leases")  # must exist; dhcpd writes its server DUID (LLT) here
        pid = self.pair.unique_path("dhcpd6.pid")
        pid.unlink()
        process = self.pair.start(Side.SERVER, "dhcpd6", [dhcpd, "-6", "-f", "-d", "-cf", str(config), "-lf",
                                                          str(leases), "-pf", str(pid), self.pair.server_if])
        process.wait_until(lambda: 547 in bound_ports(process.pid, "udp6"), "bound to UDP6 547")
        return Dhcp6Server(config=config, process=process)

    def scripted(self, replies: Sequence[ScriptedReply], *, answer_from: int = 1) -> Dhcp6Server:
        """The responder: each Information-Request from the `answer_from`-th on is answered with `replies`, in
        order; every request is logged (`Dhcp6Server.requests()`, hop limit included)."""
        script = self.pair.unique_path("dhcp6-script.json")
        script.write_text(json.dumps({"replies": [r.to_json() for r in replies], "answer_from": answer_from}))
        log = self.pair.unique_path("dhcp6-requests.jsonl")
        argv = nettools_argv("dhcp6-respond", "--iface", self.pair.server_if, "--script", str(script),
                             "--log", str(log))
        process = self.pair.start(Side.SERVER, "dhcp6-respond", argv, ready_line=True)
        process.wait_line("ready")
        return Dhcp6Server(config=script, process=process, log=log)


@pytest.fixture
def dhcp6_server(request: pytest.FixtureRequest) -> Dhcp6Servers:
    """Factory on the test's IPv6 pair (`netns6` or `netns_dual`, exactly one of them)."""
    pairs = [name for name in ("netns6", "netns_dual") if name in request.fixturenames]
    if len(pairs) != 1:
        raise pytest.UsageError("dhcp6_server needs exactly one of the fixtures netns6, netns_dual")
    pair: NetnsPair = request.getfixturevalue(pairs[0])
    return Dhcp6Servers(pair)


__all__ = ["ENTERPRISE", "Dhcp6Server", "Dhcp6Servers", "ReceivedRequest", "ScriptedReply", "Vendor", "dhcp6_server",
           "dns_name", "ntp_option_data", "option"]
