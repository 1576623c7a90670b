"""Benchmark of the health gate while idle (figures, not a test): the daemon's CPU and RSS over `--idle` seconds
with a generation pending (a check that keeps failing, every health.interval_s), next to the same daemon with
nothing pending and no health check.

    .venv/bin/python bench/bench_health.py [--idle 60] [--interval 15]

The check is `/bin/false`: what is measured is the gate's own cost (a timer, one child process per interval,
one small store write per failed check), not that of a real check. The checks' CPU is counted apart (the
children's time, from /proc/PID/stat once they are reaped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import REPO, Row, compile_bytecode, cpu_seconds, print_table, ready_daemon, rss_mib

PROVD = [str(Path(sys.executable).with_name("provd"))]


def measure(work: Path, *, gated: bool, idle: float, interval: float) -> dict[str, float]:
    config = work / "provd.yaml"
    settings: dict[str, object] = {
        "device": {"type": "D400", "serial": "0123456789", "mac": "00:09:52:00:00:0E", "interface": "lo"},
        "paths": {"state_dir": str(work / "state"), "runtime_dir": str(work / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"}}
    if gated:
        settings["health"] = {"check": ["/bin/false"], "window_s": idle * 10, "interval_s": interval}
    config.write_text(json.dumps(settings))
    cli = [*PROVD, "--config", str(config)]
    inactive = work / "inactive.xml"
    inactive.write_text("<provisioning><active>false</active></provisioning>")  # no boot run, no schedule
    subprocess.run([*cli, "apply", str(inactive)], check=True, capture_output=True)  # pending when gated
    subprocess.run([*cli, "apply", str(REPO / "examples" / "tree" / "common.xml")], check=True, capture_output=True)
    status = json.loads(subprocess.run([*cli, "status", "--json"], check=True, capture_output=True).stdout)
    assert (status.get("health") is not None) == gated, status
    with ready_daemon(cli, work) as daemon:
        time.sleep(1.0)  # the first check after a start runs at once: not part of the idle figure
        rss_start = rss_mib(daemon.pid)
        own0, children0 = cpu_seconds(daemon.pid)
        time.sleep(idle)
        own1, children1 = cpu_seconds(daemon.pid)
        rss_end = rss_mib(daemon.pid)
        status = json.loads(subprocess.run([*cli, "status", "--json"], check=True, capture_output=True).stdout)
        checks = float((status.get("health") or {}).get("checks") or 0)
    return {"own": own1 - own0, "children": children1 - children0, "rss_start": rss_start, "rss_end": rss_end,
            "checks": checks}


def main() -> int:
    compile_bytecode()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle measurement per daemon")
    parser.add_argument("--interval", type=float, default=15.0, help="health.interval_s")
    args = parser.parse_args()
    results = {}
    for gated in (False, True):
        work = Path(tempfile.mkdtemp(prefix="provd-bench-health-"))
        try:
            results[gated] = measure(work, gated=gated, idle=args.idle, interval=args.interval)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    load = os.getloadavg()
    print(f"provd health gate benchmark; machine: nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; Python {sys.version.split()[0]}; idle {args.idle:g} s, health.interval_s {args.interval:g}")
    off, on = results[False], results[True]
    def share(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms ({100 * seconds / args.idle:.3f} %)"

    def rss(result: dict[str, float]) -> str:
        return f"{result['rss_start']:.1f} / {result['rss_end']:.1f} MiB"

    rows = [
        Row("daemon CPU, nothing pending", share(off["own"]), "", None),
        Row("daemon CPU, a generation pending", share(on["own"]), "<= 0.1 %", 100 * on["own"] / args.idle <= 0.1),
        Row(f"  the checks' own CPU ({on['checks']:.0f} checks run in all)", f"{on['children'] * 1000:.0f} ms", "",
            None),
        Row("daemon RSS, nothing pending (start / end)", rss(off), "", None),
        Row("daemon RSS, a generation pending (start / end)", rss(on), "", None),
    ]
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
