"""Benchmark of result-report delivery (figures, not a test): a backlog of `--reports` run reports queued in the
store, then `provd run` started with a receiver on 127.0.0.1; the time from the daemon's READY=1 to the last
report received, and reports per second. Then, with the receiver answering slowly, how long a `provd start`
takes while a delivery hangs, next to one while nothing is delivered: the sender must never delay a run.

    .venv/bin/python bench/bench_reports.py [--reports 100]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import REPO, Row, compile_bytecode, print_table, ready_daemon

PROVD = [str(Path(sys.executable).with_name("provd"))]


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True
    count = 0
    last = 0.0
    delay = 0.0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, Receiver)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(server.delay)
        server.count += 1
        server.last = time.monotonic()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    compile_bytecode()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provd-bench-reports-"))
    receiver = Receiver(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config = work / "provd.yaml"
    config.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": "00:09:52:00:00:0E", "interface": "lo"},
        "paths": {"state_dir": str(work / "state"), "runtime_dir": str(work / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"},
        "report": {"url": f"http://127.0.0.1:{receiver.server_address[1]}/r", "max_pending": args.reports * 2,
                   "timeout_s": 30}}))
    cli = [*PROVD, "--config", str(config)]
    inactive = work / "inactive.xml"
    inactive.write_text("<provisioning><active>false</active></provisioning>")  # no boot run, no schedule
    patch = REPO / "examples" / "tree" / "common.xml"
    subprocess.run([*cli, "apply", str(inactive)], check=True, capture_output=True)
    # The backlog: real run reports of `provd apply` (a full one first, then unchanged ones), as the store keeps them.
    seed = ("import sys, json; from provd import config; from provd.settings.phone import PhoneSettings\n"
            "from provd.run import restore; from pathlib import Path\n"
            "phone = PhoneSettings(config.load(sys.argv[1]))\n"
            "for _ in range(int(sys.argv[3])): restore.apply_path(phone, Path(sys.argv[2]))\n")
    subprocess.run([sys.executable, "-c", seed, str(config), str(patch), str(args.reports - 1)], check=True)
    queued = len(json.loads(subprocess.run([*cli, "reports", "--json"], check=True, capture_output=True).stdout)
                 ["pending"])
    try:
        with ready_daemon(cli, work):
            ready = time.monotonic()
            while receiver.count < queued and time.monotonic() - ready < 120:
                time.sleep(0.01)
            elapsed = receiver.last - ready
            delivered = receiver.count

            def start_ms() -> float:
                began = time.monotonic()
                subprocess.run([*cli, "start", "--url", patch.as_uri()], check=True, capture_output=True)
                return (time.monotonic() - began) * 1000

            quiet = statistics.median(start_ms() for _ in range(5))
            time.sleep(0.5)  # the five reports delivered
            receiver.delay = 20.0  # every delivery from now on hangs for 20 s
            busy = statistics.median(start_ms() for _ in range(5))
    finally:
        receiver.shutdown()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    load = os.getloadavg()
    print(f"provd report delivery benchmark; machine: nproc {os.cpu_count()}, load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}; Python {sys.version.split()[0]}")
    print_table([
        Row(f"backlog of {queued} reports: READY=1 -> last received", f"{elapsed * 1000:.0f} ms", "", None),
        Row("  delivered / throughput", f"{delivered} / {delivered / elapsed:.0f} reports/s", "", None),
        Row("provd start (unchanged), nothing being delivered, median of 5", f"{quiet:.0f} ms", "", None),
        Row("provd start (unchanged), a delivery hanging, median of 5", f"{busy:.0f} ms", "<= +10 %",
            busy <= quiet * 1.1),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
