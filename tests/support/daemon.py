"""Running `provd run` as a subprocess under a fake service manager (a notify socket the test reads), a store
set up for it (`configure`), and the check-sync datagrams the tests send it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cli import Provd
from tests.support.polling import wait_until


@dataclass
class RunningDaemon:
    provd: Provd
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    notes: list[str] = field(default_factory=list)

    def notifications(self, timeout: float = 0.0) -> list[str]:
        """Every datagram received so far (waiting up to `timeout` for the next one)."""
        self.notify.settimeout(timeout or 0.001)
        while True:
            try:
                self.notes += self.notify.recv(4096).decode().split("\n")
            except (TimeoutError, BlockingIOError):
                return self.notes
            self.notify.settimeout(0.001)

    def wait_note(self, note: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while note not in self.notifications(0.05):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"{note} not sent; got {self.notes}; exit {self.proc.poll()}")

    def status(self) -> dict[str, Any]:
        result = self.provd.run("status", "--json", check=0)
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def runs_started(self) -> int:
        return int(self.status().get("runs_started", 0))

    def wait_idle_after(self, runs: int, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until at least `runs` runs have started and the daemon is idle again; the last report."""
        state: dict[str, Any] = {}

        def done() -> bool:
            nonlocal state
            state = self.status()
            return int(state.get("runs_started", 0)) >= runs and state.get("state") == "idle" \
                and not state.get("queued")
        wait_until(done, timeout, f"{runs} runs finished")
        report: dict[str, Any] = state["last_report"]
        return report

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


@contextmanager
def running_daemon(provd: Provd, tmp_path: Path, *, watchdog_usec: int | None = None,
                   prefix: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
                   tracebacks: int = 0, options: tuple[str, ...] = ()) -> Iterator[RunningDaemon]:
    """The daemon as a subprocess; `prefix` runs it elsewhere (`ip netns exec NS`): the notify and control
    sockets are files, reachable from any network namespace. `tracebacks`: how many the daemon's log must
    hold at the end (an unexpected error in a run is logged with its traceback, once). `options` go before
    the command (`-v`, `-q`). Its stdout and stderr go to `tmp_path/daemon.log` (opened for writing, so an
    existing file keeps its inode: a test can name it in $JOURNAL_STREAM)."""
    address = str(tmp_path / "notify.sock")
    Path(address).unlink(missing_ok=True)  # a daemon started again in the same directory (a restart test)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(address)
    env = {**os.environ, "NOTIFY_SOCKET": address, "PYTHONDONTWRITEBYTECODE": "1", **(extra_env or {})}
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "provd", *options, "--config", str(provd.config), "run"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    daemon = RunningDaemon(provd, proc, notify)
    try:
        daemon.wait_note("READY=1")
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        notify.close()
        log.close()
        text = (tmp_path / "daemon.log").read_text(errors="replace")
        assert text.count("Traceback") == tracebacks, text


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(tmp_path: Path, *, url: str = "", active: bool = False, sip_port: int | None = None,
              hooks: bool = True, allow: str = "127.0.0.1", extra: dict[str, Any] | None = None) -> Provd:
    """A provd under tmp_path for a daemon test; `extra`: more configuration sections (e.g. health, report)."""
    state = tmp_path / "state"
    hook_log = tmp_path / "hook.log"
    write_env = (f"import os; open({str(hook_log)!r}, 'a').write(os.environ.get('PROVD_SECTIONS', '') + "
                 f"'|' + os.environ.get('HOOK', '') + chr(10))")
    config: dict[str, Any] = {
        "device": {"type": "D400", "serial": "0123456789", "mac": "00:09:52:00:00:0E", "interface": "lo"},
        "paths": {"state_dir": str(state), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"required": False},
        "dhcp": {"mode": "off"},
        "http": {"timeout_s": 30},
        "sip": {"listen": f"127.0.0.1:{sip_port}" if sip_port else None},
    }
    if hooks:
        config["hooks"] = {"changed": {"*": [sys.executable, "-c", write_env]},
                           "reboot": ["env", "HOOK=reboot", sys.executable, "-c", write_env]}
    config.update(extra or {})
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps(config))
    provd = Provd(cfg, state)
    settings = tmp_path / "settings.xml"
    settings.write_text(
        f"<provisioning><active>{str(active).lower()}</active><dhcp>false</dhcp><redirect>false</redirect>"
        f"<pbx>false</pbx><url>{url}</url><sip><active>true</active><allowlist><allowlistEntry>{allow}"
        "</allowlistEntry></allowlist></sip></provisioning>")
    provd.run("apply", str(settings), check=0)
    return provd


def keys(number: int, label: str) -> str:
    return f'<keys><phoneXtensions><key keyNumber="{number}" label="{label}"/></phoneXtensions></keys>'


def notify_message(source: str, event: str = "check-sync", body: str = "", branch: str = "z9hG4bKt1") -> bytes:
    head = (f"NOTIFY sip:201@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {source}:5070;branch={branch}\r\n"
            f"From: <sip:pbx@{source}>\r\nTo: <sip:201@127.0.0.1>\r\nCall-ID: {branch}@{source}\r\n"
            f"CSeq: 1 NOTIFY\r\nEvent: {event}\r\n")
    if body:
        head += f"Content-Type: application/xml\r\nContent-Length: {len(body.encode())}\r\n"
    return (head + "\r\n" + body).encode()


def send_udp(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 2.0) -> bytes | None:
    """`send_udp_to` the daemon on 127.0.0.1."""
    return send_udp_to("127.0.0.1", port, data, source=source, timeout=timeout)


# --- IPv6: a port free on both families, a listener at any HOST:PORT, several allowlist entries ----------------


def free_dual_udp_port() -> int:
    """A UDP port free for IPv4 and IPv6 alike (found through one dual-stack `[::]` socket), for a daemon that
    listens on `[::]` or `[::1]` and a test that may send from either family."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", 0))
        return int(s.getsockname()[1])


def listen_at(provd: Provd, listen: str | None) -> None:
    """Rewrite the configuration's `sip.listen` (e.g. "[::1]:5070", "[::]:5070")."""
    config = json.loads(provd.config.read_text())
    config["sip"] = {"listen": listen}
    provd.config.write_text(json.dumps(config))


def set_allowlist(provd: Provd, tmp_path: Path, *entries: str) -> None:
    """Replace `provisioning/sip/allowlist` by `entries`, as written (the allowlist element replaces the stored
    one); the text is XML-escaped, nothing else is checked: a malformed entry is stored as it is."""
    from xml.sax.saxutils import escape

    items = "".join(f"<allowlistEntry>{escape(entry)}</allowlistEntry>" for entry in entries)
    patch = tmp_path / "allowlist.xml"
    patch.write_text(f"<provisioning><sip><allowlist>{items}</allowlist></sip></provisioning>")
    provd.run("apply", str(patch), check=0)


def send_udp_to(host: str, port: int, data: bytes, *, source: str, timeout: float = 2.0) -> bytes | None:
    """One datagram from `source` (an address of either family, port chosen by the kernel) to host:port; the
    answer, or None after `timeout`."""
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None
