"""chronyd as the NTP server in the server namespace: synchronised (`local stratum 8`) or not (leap 3, stratum 0).

Owns its config, pid and drift files (in the pair's workdir) and its process. Run with `-x`, so it never
touches the host clock, `-d` (foreground), `-u root` (no drop to _chrony, which could not write the workdir);
`cmdport 0` + `bindcmdaddress /`: no command sockets, nothing created under /run/chrony. In a pair with IPv6
(`netns6`, `netns_dual`) it serves on the server's IPv6 address too (chrony takes one `bindaddress` per family).
"""

from __future__ import annotations

import functools
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.peers.http import PeerStartError
from tests.support.peers.netns import Ipv6, NetnsPair, NsProcess, Side, bound_ports

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class NtpServer:
    ip: str
    port: int
    synced: bool
    config: Path
    process: NsProcess
    ip6: str | None = None  # the server's IPv6 address when the pair has IPv6 (chrony answers there too)

    @property
    def startup_s(self) -> float | None:
        return self.process.ready_after_s

    def stop(self) -> None:
        self.process.stop()


class NtpServerFactory(Protocol):
    def __call__(self, *, synced: bool = True, port: int = 123) -> NtpServer:
        """Start chronyd on the server address. `synced=False`: no local reference, so it answers leap=3 (alarm),
        stratum 0, as an unsynchronised server does. Two servers in one pair need two ports."""
        ...


def start_ntp_server(pair: NetnsPair, *, synced: bool = True, port: int = 123) -> NtpServer:
    chronyd = shutil.which("chronyd") or shutil.which("chronyd", path=SBIN)
    if chronyd is None:
        raise PeerStartError("chronyd is not installed (chrony): run scripts/setup.sh as root (APT_PACKAGES)")
    config = pair.unique_path("chrony.conf")
    pid = pair.unique_path("chronyd.pid")
    pid.unlink()  # chronyd refuses to start while its pid file names a running chronyd; a fresh name is safer
    drift = pair.unique_path("chrony.drift")
    ip6 = pair.server_ip6 if pair.ipv6 is not Ipv6.OFF else None
    v6 = f"allow {ipaddress.ip_network(f'{pair.client_ip6}/64', strict=False)}\nbindaddress {ip6}\n" if ip6 else ""
    config.write_text(f"""# tests/support/peers/ntp.py: chronyd in {pair.server_ns}
{"local stratum 8" if synced else "# no local reference: unsynchronised"}
allow {ipaddress.ip_network(f"{pair.client_ip}/{pair.prefix}", strict=False)}
bindaddress {pair.server_ip}
{v6}port {port}
cmdport 0
bindcmdaddress /
pidfile {pid}
driftfile {drift}
""")
    process = pair.start(Side.SERVER, "chronyd", [chronyd, "-x", "-d", "-u", "root", "-f", str(config)])
    process.wait_bound("udp", port)
    if ip6 is not None:
        process.wait_until(lambda: port in bound_ports(process.pid, "udp6"), f"bound to [{ip6}]:{port}")
    return NtpServer(ip=pair.server_ip, port=port, synced=synced, config=config, process=process, ip6=ip6)


@pytest.fixture
def ntp_server(netns: NetnsPair) -> NtpServerFactory:
    """Factory: `ntp_server(synced=True, port=123)` → `NtpServer` (ip, port)."""
    return functools.partial(start_ntp_server, netns)
