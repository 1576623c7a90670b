"""Benchmark of provisioning over IPv6 (figures, not a test), as root, in the test bench's network namespaces:

    .venv/bin/python bench/bench_ipv6.py [--runs 5]

(1) DHCP-found discovery latency, in the same run: DHCPv4 (ISC dhcpd -4 answering the DHCPINFORM, on an
    IPv4 link) next to DHCPv6 (ISC dhcpd -6 answering the Information-Request, on an IPv6-only link); from the
    start of the preconditions (interface, DHCP, NTP against chrony) to the URL. Target: DHCPv6 no worse.
(2) Time to a committed run on an IPv6-only link, a whole `provd start` process (start-up, preconditions,
    DHCPv6, fetch over IPv6, apply, commit), with DHCPv4 enabled in the configuration next to `dhcp.mode:
    off`. Target: within 1 s of each other (no waiting for DHCPv4's retries on a link without IPv4).
Each discovery measurement runs in a process inside the client namespace that has imported provd first, as
the daemon has; (2) times the CLI process from outside, as a user would.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Row, print_table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KEYS = '<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'


def inner(config: str) -> None:
    """Runs inside the client namespace: preconditions and discovery, timed; prints JSON."""
    from provd import __version__
    from provd import config as configuration
    from provd.run import device, provision
    from provd.run.wiring import real_ports
    from provd.settings.phone import PhoneSettings
    from provd.sources import discovery, preconditions

    settings = PhoneSettings(configuration.load(config))
    cfg = settings.config
    dev = device.device_from_config(cfg)

    async def run() -> dict[str, object]:
        ports = real_ports()
        async with ports.http(provision.http_options(cfg, device.user_agent(cfg, dev, __version__))) as client:
            ctx = discovery.Context(config=cfg, device=dev, switches=settings.discovery_switches(), client=client,
                                    progress=lambda _line: None, ports=ports)
            started = time.monotonic()
            await preconditions.wait_for_preconditions(ctx)
            found = await discovery.discover(ctx)
            done = time.monotonic()
        return {"total_ms": (done - started) * 1000, "url": found.url,
                "family": next((a.family.value for a in found.attempts if a.url and a.family), None)}

    print(json.dumps(asyncio.run(run())))


def outer(runs: int) -> int:
    from tests.support.peers.dhcp import start_dhcp_server
    from tests.support.peers.dhcp6 import Dhcp6Servers, ntp_option_data
    from tests.support.peers.netns import Ipv6, NetnsPair, running_netns
    from tests.support.peers.ntp import start_ntp_server
    from tests.support.peers.web import start_prov_http

    work = Path(tempfile.mkdtemp(prefix="provd-bench-ipv6-"))
    versions = itertools.count(1)

    def phone(pair: NetnsPair, name: str, *, dhcp: str, ntp: list[str]) -> str:
        cfg = work / f"{name}.yaml"
        cfg.write_text(json.dumps({
            "device": {"type": "D400", "serial": "0123456789", "mac": "auto", "interface": pair.client_if},
            "paths": {"state_dir": str(work / name), "runtime_dir": str(work / f"{name}-run")},
            "ntp": {"servers": ntp, "timeout_s": 1},
            "dhcp": {"mode": dhcp, "timeout_s": 1},
            "dhcp6": {"mode": "inform", "timeout_s": 1},
        }))
        patch = work / f"{name}-switches.xml"
        patch.write_text("<provisioning><dhcp>true</dhcp><redirect>false</redirect><pbx>false</pbx></provisioning>")
        subprocess.run([sys.executable, "-m", "provd", "--config", str(cfg), "apply", str(patch)], check=True,
                       capture_output=True)
        return str(cfg)

    def discovery_ms(pair: NetnsPair, cfg: str) -> tuple[float, dict[str, object]]:
        result = pair.run_in_client([sys.executable, __file__, "--inner", cfg], timeout=60, check=True)
        answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
        return float(str(answer["total_ms"])), answer

    def committed_ms(pair: NetnsPair, cfg: str, label: str, prov: object) -> float:
        from tests.support.peers.web import ProvHttp

        assert isinstance(prov, ProvHttp)
        path = prov.write(f"v6/{pair.client_mac_marker}.xml", KEYS.format(label=label))  # a change every run
        stamp = time.time() - 1000 + next(versions)  # a new mtime each time: nginx's ETag is mtime and size
        os.utime(path, (stamp, stamp))
        started = time.monotonic()
        result = pair.run_in_client([sys.executable, "-m", "provd", "--config", cfg, "start", "--json"], timeout=60)
        elapsed = (time.monotonic() - started) * 1000
        report = json.loads(result.stdout)
        assert report["outcome"] == "applied", report
        return elapsed

    for sub in ("v4", "v6"):
        (work / sub).mkdir()
    with running_netns(work / "v4") as pair:
        start_ntp_server(pair)
        start_dhcp_server(pair, "isc", ntp=True)  # option 42 names chrony, as option 56 does for DHCPv6
        cfg = phone(pair, "dhcp4", dhcp="inform", ntp=[])
        v4 = [discovery_ms(pair, cfg) for _ in range(runs)]
    with running_netns(work / "v6", Ipv6.ONLY) as pair:
        start_ntp_server(pair)
        prov = start_prov_http(pair)
        Dhcp6Servers(pair)(boot_file_url=f"http://[{pair.server_ip6}]:8080/v6/{{mac}}.xml",
                           ntp=ntp_option_data(pair.server_ip6))
        cfg6 = phone(pair, "dhcp6", dhcp="inform", ntp=[])
        v6 = [discovery_ms(pair, cfg6) for _ in range(runs)]
        cfg_off = phone(pair, "dhcp6-v4off", dhcp="off", ntp=[])
        with_v4, v4_off = [], []
        for n in range(runs):  # interleaved, so drift in the machine's load hits both alike
            with_v4.append(committed_ms(pair, cfg6, f"on-{n}", prov))
            v4_off.append(committed_ms(pair, cfg_off, f"off-{n}", prov))
    subprocess.run(["rm", "-rf", str(work)], check=False)

    v4_ms = statistics.median(ms for ms, _ in v4)
    v6_ms = statistics.median(ms for ms, _ in v6)
    on_ms, off_ms = statistics.median(with_v4), statistics.median(v4_off)
    load = os.getloadavg()
    print(f"provd IPv6 benchmark; machine: nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; median of {runs}")
    print_table([
        Row("(1) DHCPv4-found discovery (IPv4 link)", f"{v4_ms:.0f} ms", "", None),
        Row("    DHCPv6-found discovery (IPv6-only link)", f"{v6_ms:.0f} ms", f"<= {v4_ms:.0f} ms", v6_ms <= v4_ms),
        Row("    family / url", f"{v6[0][1]['family']} {v6[0][1]['url']}", "", None),
        Row("(2) committed run, IPv6-only, dhcp.mode inform", f"{on_ms:.0f} ms", f"<= {off_ms + 1000:.0f} ms",
            on_ms <= off_ms + 1000),
        Row("    committed run, IPv6-only, dhcp.mode off", f"{off_ms:.0f} ms", "", None),
    ])
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    raise SystemExit(outer(parser.parse_args().runs))
