"""Benchmark of the daemon (figures, not a test): idle memory after a full run, CPU while idle, and the
latency from `provd start` to the daemon's first HTTP request.

    .venv/bin/python bench/bench_daemon.py [--idle 60] [--starts 10]

Everything on 127.0.0.1: a small HTTP server in this process serves examples/tree and notes when each
request arrives (time.monotonic() is one clock for every process on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import compile_bytecode, cpu_seconds, ready_daemon, rss_mib

REPO = Path(__file__).resolve().parents[1]
PROVD = [str(Path(sys.executable).with_name("provd"))]  # the console script, as users run it
TARGETS = {"rss": 45.0, "cpu": 0.1, "latency": 50.0}


class Server(http.server.ThreadingHTTPServer):
    first_request: dict[str, float]


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, Server)
        server.first_request.setdefault(self.path, time.monotonic())
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Server]:
    class Bound(Handler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(directory), **kw)  # type: ignore[arg-type]

    server = Server(("127.0.0.1", 0), Bound)
    server.first_request = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


def main() -> int:
    compile_bytecode()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    parser.add_argument("--starts", type=int, default=10, help="provd start calls for the latency figure")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provd-bench-daemon-"))
    tree = work / "tree"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "tree"), str(tree)], check=True)
    for i in range(args.starts):
        (tree / f"lat{i}.xml").write_text(f'<keys><phoneXtensions><key keyNumber="{i + 1}" label="l{i}"/>'
                                          "</phoneXtensions></keys>")
    config = work / "provd.yaml"
    config.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": "00:09:52:00:00:0E", "interface": "lo"},
        "paths": {"state_dir": str(work / "state"), "runtime_dir": str(work / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"}}))
    cli = [*PROVD, "--config", str(config)]
    inactive = work / "inactive.xml"
    inactive.write_text("<provisioning><active>false</active></provisioning>")  # no boot run, no schedule
    subprocess.run([*cli, "apply", str(inactive)], check=True, capture_output=True)
    try:
        with ready_daemon(cli, work) as daemon:
            rss_ready = rss_mib(daemon.pid)
            with serving(tree) as server:
                base = f"http://127.0.0.1:{server.server_address[1]}"
                full = subprocess.run([*cli, "start", "--url", f"{base}/provisioning.xml", "--json"],
                                      capture_output=True, text=True, check=True)
                outcome = json.loads(full.stdout)["outcome"]
                rss_after = rss_mib(daemon.pid)
                latencies = []
                for i in range(args.starts):
                    path = f"/lat{i}.xml"
                    started = time.monotonic()
                    subprocess.run([*cli, "start", "--url", base + path], capture_output=True, check=True)
                    latencies.append((server.first_request[path] - started) * 1000)
            rss_idle_start = rss_mib(daemon.pid)
            cpu_before = cpu_seconds(daemon.pid)[0]
            time.sleep(args.idle)  # the measurement itself: the daemon left alone
            cpu_used = cpu_seconds(daemon.pid)[0] - cpu_before
            cpu_percent = 100 * cpu_used / args.idle
            rss_idle_end = rss_mib(daemon.pid)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    load = os.getloadavg()
    print(f"provd daemon benchmark; machine: nproc {os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; Python {sys.version.split()[0]}")
    rows = [
        ("RSS at READY=1", f"{rss_ready:.1f} MiB", "", ""),
        (f"RSS after a full run ({outcome}, examples/tree: 6 files)", f"{rss_after:.1f} MiB", "", ""),
        (f"idle RSS after {args.starts} more runs", f"{rss_idle_start:.1f} MiB", f"<= {TARGETS['rss']:g} MiB",
         "ok" if rss_idle_start <= TARGETS["rss"] else "MISSED"),
        (f"RSS after {args.idle:g} s idle", f"{rss_idle_end:.1f} MiB", "", ""),
        (f"CPU while idle {args.idle:g} s", f"{cpu_percent:.3f} % ({cpu_used * 1000:.0f} ms)",
         f"<= {TARGETS['cpu']:g} %", "ok" if cpu_percent <= TARGETS["cpu"] else "MISSED"),
        (f"provd start -> first HTTP request, median of {args.starts}", f"{statistics.median(latencies):.1f} ms",
         f"<= {TARGETS['latency']:g} ms", "ok" if statistics.median(latencies) <= TARGETS["latency"] else "MISSED"),
        ("  min / max", f"{min(latencies):.1f} / {max(latencies):.1f} ms", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target, verdict in rows:
        print(f"{name:<{width}}  {value:>22}  {target:>12}  {verdict}")
    print("latency includes the CLI's own start-up (Python, configuration) and the daemon's run set-up.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
