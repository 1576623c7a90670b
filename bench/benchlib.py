"""What the benchmark scripts share: compiled bytecode before timing, the rows of a results table, the daemon
started as systemd would and its memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_bytecode() -> None:
    """An installed provd has its bytecode compiled (pip does it); an editable checkout under
    PYTHONDONTWRITEBYTECODE would otherwise compile every module on every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)


@dataclass(frozen=True)
class Row:
    what: str
    value: str
    target: str
    met: bool | None  # None: no target, shown for comparison


def print_table(rows: list[Row]) -> None:
    """The results as a table: measure, value, target, ok / MISSED (nothing where there is no target)."""
    width = max(len(r.what) for r in rows)
    vwidth = max(len(r.value) for r in rows)
    print(f"{'measure':<{width}}  {'value':<{vwidth}}  {'target':<10}  result")
    for r in rows:
        result = "" if r.met is None else ("ok" if r.met else "MISSED")
        print(f"{r.what:<{width}}  {r.value:<{vwidth}}  {r.target:<10}  {result}")


def rss_mib(pid: int) -> float:
    """The resident set of `pid` (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of `pid` itself, of its children reaped so far), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


@contextlib.contextmanager
def ready_daemon(cli: list[str], work: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`provd run` under a stand-in for systemd (a notify socket in `work`): yielded once it has sent READY=1,
    stopped with SIGTERM afterwards, as systemd would."""
    address = work / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(address))
    notify.settimeout(20)
    daemon = subprocess.Popen([*cli, "run"], env={**os.environ, "NOTIFY_SOCKET": str(address)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        notify.close()
        address.unlink(missing_ok=True)
