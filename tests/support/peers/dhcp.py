"""DHCP servers in the server namespace answering the client's DHCPINFORM: ISC dhcpd and dnsmasq.

Owns their configs, lease and pid files (in the pair's workdir, never the Debian defaults) and their processes,
run in the foreground and stopped by PID. What they serve is the factory's parameters. Neither implementation
sends 43/66/67 unless the client lists them in option 55.
"""

from __future__ import annotations

import functools
import ipaddress
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.peers.http import PeerStartError
from tests.support.peers.netns import NetnsPair, NsProcess, Side, bound_ports, has_packet_socket

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
VENDOR_CLASS_PREFIX = "auerswald-"  # docs/design.md §3: dhcp.vendor_class defaults to "auerswald-<type>"


class DhcpKind(Enum):
    ISC = "isc"  # isc-dhcp-server's dhcpd
    DNSMASQ = "dnsmasq"  # dnsmasq-base


class Example(Enum):
    """The default of `opt66`/`file`: the vendor's own example (`option tftp-server-name "http://<srv>:8080";`
    + `filename "prov/<MACADR>.xml";`)."""

    VALUE = "example"


EXAMPLE = Example.VALUE
EXAMPLE_FILE = "prov/<MACADR>.xml"


def auerswald_opt43(base: str | None, path: str | None, *, nul: bool = True) -> bytes:
    """Option 43 the Auerswald way: sub-option 0x42 (stands for 66) and 0x43 (for 67), each code, length,
    text; with `nul` the text ends in NUL and the length counts it (as the vendor's examples do)."""
    out = b""
    for code, text in ((0x42, base), (0x43, path)):
        if text is not None:
            value = text.encode() + (b"\0" if nul else b"")
            out += bytes([code, len(value)]) + value
    return out


# Malformed option-43 payloads a client must survive (PROTOCOLS §3.3: truncation tolerated).
OPT43_TRUNCATED = b"\x42\x30http://10.123.0"  # 0x42 claims 48 bytes, 14 follow
OPT43_SHORT_LENGTH = b"\x42\x05http://10.123.0.1:8080\x00"  # length 5: "http:", then "//10…" read as sub-options
OPT43_CODE_ONLY = b"\x42\x17http://10.123.0.1:8080\x00\x43"  # a 0x43 code byte, no length
OPT43_MALFORMED = {"truncated": OPT43_TRUNCATED, "short-length": OPT43_SHORT_LENGTH, "code-only": OPT43_CODE_ONLY}


@dataclass(frozen=True)
class DhcpServer:
    kind: DhcpKind
    config: Path
    process: NsProcess

    @property
    def startup_s(self) -> float | None:
        """Seconds from spawn until its sockets were bound."""
        return self.process.ready_after_s

    def log_text(self) -> str:
        """The server's own log (ISC: `DHCPINFORM from …`, `DHCPACK to …`; dnsmasq with log-dhcp: every option)."""
        return self.process.log_text()

    def stop(self) -> None:
        self.process.stop()


class DhcpServerFactory(Protocol):
    def __call__(self, kind: DhcpKind | str = DhcpKind.ISC, *, opt66: str | Example | None = EXAMPLE,
                 file: str | Example | None = EXAMPLE, opt67: str | None = None, sname: str | None = None,
                 opt43: bytes | None = None, opt43_vendor_prefix: str = VENDOR_CLASS_PREFIX,
                 ntp: bool | str = False) -> DhcpServer:
        """Start a DHCP server in the server namespace (one at a time: both need port 67).

        Args:
            kind: "isc" or "dnsmasq".
            opt66: option 66 (tftp-server-name); default `http://<server ip>:8080`; None: not sent.
            file: the boot file, default `prov/<MACADR>.xml`: ISC `filename` (always the BOOTP `file` field,
                never option 67); dnsmasq `dhcp-boot` (option 67, NUL-terminated, when the client asks for 67;
                else the `file` field).
            opt67: option 67 (bootfile-name) as a real option.
            sname: the BOOTP `sname` field (ISC `server-name`; dnsmasq only together with `file`).
            opt43: raw option-43 bytes (see `auerswald_opt43`, `OPT43_MALFORMED`), sent only to clients whose
                option 60 starts with `opt43_vendor_prefix` (ISC; dnsmasq: contains it); "" = to every client.
            ntp: option 42: True = the server's address, or an address.
        """
        ...


def sbin_binary(name: str, package: str) -> str:
    """The path of a server binary (also in /usr/sbin, often not on a test's PATH); PeerStartError naming its
    Debian package when it is missing."""
    found = shutil.which(name) or shutil.which(name, path=SBIN)
    if found is None:
        raise PeerStartError(f"{name} is not installed ({package}): run scripts/setup.sh as root (APT_PACKAGES)")
    return found


def isc_string(value: str) -> str:
    """A quoted string for an ISC dhcpd configuration."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def isc_hex(data: bytes) -> str:
    """Bytes as ISC dhcpd writes them in a configuration: colon-separated hex."""
    return ":".join(f"{byte:02x}" for byte in data)


@dataclass(frozen=True)
class _Served:
    opt66: str | None
    file: str | None
    opt67: str | None
    sname: str | None
    opt43: bytes | None
    opt43_vendor_prefix: str
    ntp: str | None


def _isc_conf(pair: NetnsPair, served: _Served) -> str:
    net = ipaddress.ip_network(f"{pair.server_ip}/{pair.prefix}", strict=False)
    lines = []
    if served.opt66 is not None:
        lines.append(f"option tftp-server-name {isc_string(served.opt66)};")
    if served.opt67 is not None:
        lines.append(f"option bootfile-name {isc_string(served.opt67)};")
    if served.file is not None:
        lines.append(f"filename {isc_string(served.file)};")  # the BOOTP file field, never option 67
    if served.sname is not None:
        lines.append(f"server-name {isc_string(served.sname)};")  # the BOOTP sname field
    if served.ntp is not None:
        lines.append(f"option ntp-servers {served.ntp};")
    vendor = ""
    if served.opt43 is not None:
        option = f"option vendor-encapsulated-options {isc_hex(served.opt43)};"  # sent as is, however malformed
        if served.opt43_vendor_prefix:
            prefix = served.opt43_vendor_prefix
            vendor = (f'class "vendor-{len(prefix)}" {{\n'
                      f"  match if substring(option vendor-class-identifier, 0, {len(prefix.encode())}) = "
                      f"{isc_string(prefix)};\n  {option}\n}}\n")
        else:
            lines.append(option)
    body = "".join(f"  {line}\n" for line in lines)
    # ping-check: an OFFER would wait ~1 s for an ICMP echo; INFORM is not affected, but keep the server quick.
    return f"""# tests/support/peers/dhcp.py: ISC dhcpd in {pair.server_ns}
authoritative;
ping-check false;
ddns-update-style none;
default-lease-time 600;
max-lease-time 600;
subnet {net.network_address} netmask {net.netmask} {{
{body}}}
{vendor}"""


def _dnsmasq_conf(pair: NetnsPair, served: _Served, leases: Path) -> str:
    net = ipaddress.ip_network(f"{pair.server_ip}/{pair.prefix}", strict=False)
    lines = [
        "port=0",  # DHCP only, no DNS
        "no-resolv",
        "no-hosts",
        f"interface={pair.server_if}",
        "bind-interfaces",
        f"dhcp-range={net.network_address},static,{net.netmask}",  # answers INFORM, hands out no leases
        f"dhcp-leasefile={leases}",
        "dhcp-authoritative",
        "log-dhcp",
    ]
    if served.opt66 is not None:
        lines.append(f'dhcp-option=66,"{served.opt66}"')
    if served.opt67 is not None:
        lines.append(f'dhcp-option=67,"{served.opt67}"')
    if served.file is not None:
        lines.append(f"dhcp-boot={served.file}" + (f",{served.sname}" if served.sname is not None else ""))
    elif served.sname is not None:
        raise ValueError("dnsmasq sets the BOOTP sname field only together with file (dhcp-boot)")
    if served.ntp is not None:
        lines.append(f"dhcp-option=42,{served.ntp}")
    if served.opt43 is not None:
        if len(served.opt43) < 2:
            raise ValueError("dnsmasq would read a one-byte hex value as a decimal number")
        tag = ""
        if served.opt43_vendor_prefix:
            lines.append(f"dhcp-vendorclass=set:vendor43,{served.opt43_vendor_prefix}")  # a substring match
            tag = "tag:vendor43,"
        lines.append(f"dhcp-option={tag}43,{isc_hex(served.opt43)}")
    return "# tests/support/peers/dhcp.py: dnsmasq in " + pair.server_ns + "\n" + "\n".join(lines) + "\n"


def start_dhcp_server(pair: NetnsPair, kind: DhcpKind | str = DhcpKind.ISC, *,
                      opt66: str | Example | None = EXAMPLE, file: str | Example | None = EXAMPLE,
                      opt67: str | None = None, sname: str | None = None, opt43: bytes | None = None,
                      opt43_vendor_prefix: str = VENDOR_CLASS_PREFIX,
                      ntp: bool | str = False) -> DhcpServer:
    """See `DhcpServerFactory.__call__`. Returns once the server's sockets are bound; stopped at teardown."""
    kind = DhcpKind(kind)
    served = _Served(opt66=f"http://{pair.server_ip}:8080" if opt66 is EXAMPLE else opt66,
                     file=EXAMPLE_FILE if file is EXAMPLE else file, opt67=opt67, sname=sname, opt43=opt43,
                     opt43_vendor_prefix=opt43_vendor_prefix,
                     ntp=pair.server_ip if ntp is True else (ntp or None))
    if kind is DhcpKind.ISC:
        dhcpd = sbin_binary("dhcpd", "isc-dhcp-server")
        config = pair.unique_path("dhcpd.conf")
        config.write_text(_isc_conf(pair, served))
        leases = pair.unique_path("dhcpd.leases")  # must exist, may be empty
        pid = pair.unique_path("dhcpd.pid")
        pid.unlink()
        # -f -d: foreground, log to stderr; own -cf/-lf/-pf; bound to the veth only.
        process = pair.start(Side.SERVER, "dhcpd", [dhcpd, "-4", "-f", "-d", "-cf", str(config), "-lf", str(leases),
                                                    "-pf", str(pid), pair.server_if])
        # LPF receive socket and the UDP 67 "fallback" socket (it sends the unicast DHCPACK to an INFORM).
        process.wait_until(lambda: has_packet_socket(process.pid) and 67 in bound_ports(process.pid, "udp"),
                           "listening on LPF and UDP 67")
    else:
        dnsmasq = sbin_binary("dnsmasq", "dnsmasq-base")
        config = pair.unique_path("dnsmasq.conf")
        leases = pair.unique_path("dnsmasq.leases")
        config.write_text(_dnsmasq_conf(pair, served, leases))
        pid = pair.unique_path("dnsmasq.pid")
        # --conf-file: this file only (not /etc/dnsmasq.conf); --user root: the "dnsmasq" user exists only with
        # the full dnsmasq package; --no-ping: no ICMP probe before an offer.
        process = pair.start(Side.SERVER, "dnsmasq", [dnsmasq, "--keep-in-foreground", "--log-facility=-",
                                                      f"--conf-file={config}", f"--pid-file={pid}", "--no-ping",
                                                      "--user=root", "--group=root"])
        process.wait_bound("udp", 67)
    return DhcpServer(kind=kind, config=config, process=process)


@pytest.fixture
def dhcp_server(netns: NetnsPair) -> DhcpServerFactory:
    """Factory: `dhcp_server(kind="isc", opt66=…, file=…, opt67=…, sname=…, opt43=…, ntp=True)`."""
    return functools.partial(start_dhcp_server, netns)
