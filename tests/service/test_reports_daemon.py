"""Result reports end to end (docs/design.md §10): `provd run` as a subprocess POSTs every finished run's report
to a real HTTP receiver on loopback that is down, then up, then slow; oldest first, with the device's identity;
a 2xx removes a report, anything else keeps it; a backlog survives a restart and a kill -9 during a delivery;
the outbox is bounded and says how many it dropped; `provd reports` lists what waits.
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.cli import Provd
from tests.support.daemon import configure, running_daemon
from tests.support.paths import VENDOR
from tests.support.polling import wait_until

MUSIC = VENDOR / "music.xml"


class Receiver(http.server.ThreadingHTTPServer):
    """What a provisioning server's report endpoint sees: every POST body, in arrival order. `delay` makes it
    slow, `status` makes it refuse."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (path, content type)
        self.delay = 0.0
        self.status = 200


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = self.server
        assert isinstance(server, Receiver)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(server.delay)
        self.requests_seen(server, body)
        self.send_response(server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def requests_seen(self, server: Receiver, body: bytes) -> None:
        server.requests.append((self.path, self.headers.get("Content-Type", "")))
        if server.status < 300:
            server.bodies.append(json.loads(body))

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def receiving(port: int) -> Iterator[Receiver]:
    server = Receiver(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def reporting(tmp_path: Path, port: int, **report: Any) -> Provd:
    url = f"http://reporter:s3cret@127.0.0.1:{port}/reports/{{serial}}"
    return configure(tmp_path, extra={"report": {"url": url, "timeout_s": 1, **report}})


def waiting(provd: Provd) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(provd.run("reports", "--json", check=0).stdout)
    return result


def start(provd: Provd, url: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(provd.run("start", "--json", "--url", url, check=0).stdout)
    return result


def test_down_then_up_then_slow(tmp_path: Path) -> None:
    port = free_port()
    provd = reporting(tmp_path, port)  # configure's own apply is the first report
    with running_daemon(provd, tmp_path):
        first = start(provd, MUSIC.as_uri())
        second = start(provd, MUSIC.as_uri())  # unchanged: a run that commits nothing is reported too
        wait_until(lambda: "not delivered" in (tmp_path / "daemon.log").read_text(), 10, "a failed delivery")
        queued = waiting(provd)
        assert [p["run"] for p in queued["pending"]][-2:] == [first["run"], second["run"]]
        assert queued["url"] == f"http://reporter:***@127.0.0.1:{port}/reports/{{serial}}"
        assert all(p["ready"] for p in queued["pending"])
        human = provd.run("reports", check=0).stdout
        assert f"run #{first['run']} cli → applied (generation {first['generation']})" in human

        with receiving(port) as receiver:
            third = start(provd, MUSIC.as_uri())  # a new report wakes the sender: the backlog goes first
            wait_until(lambda: len(receiver.bodies) >= 4, 10, "the backlog delivered")
            runs = [int(b["run"]) for b in receiver.bodies]
            assert runs == sorted(runs) and runs[-3:] == [first["run"], second["run"], third["run"]]
            body = receiver.bodies[-3]
            assert body["device"] == {"type": "D400", "serial": "0123456789", "mac": "00095200000E",
                                      "firmware": "2.12A-00000"}
            for key in ("trigger", "outcome", "started", "finished", "url", "files", "sections_changed",
                        "generation", "changes", "warnings", "errors"):
                assert key in body, key
            assert body["outcome"] == "applied" and receiver.bodies[-2]["outcome"] == "unchanged"
            assert {path for path, _ in receiver.requests} == {"/reports/0123456789"}  # the marker replaced
            assert {kind for _, kind in receiver.requests} == {"application/json"}
            wait_until(lambda: waiting(provd)["pending"] == [], 5, "the outbox empty")

            receiver.delay = 2.0  # slower than report.timeout_s: kept, tried again
            slow = start(provd, MUSIC.as_uri())
            wait_until(lambda: (tmp_path / "daemon.log").read_text().count("no answer within 1 s") >= 1, 10,
                       "a timed-out delivery")
            assert [p["run"] for p in waiting(provd)["pending"]] == [slow["run"]]
            receiver.delay = 0.0
            start(provd, MUSIC.as_uri())
            wait_until(lambda: waiting(provd)["pending"] == [], 10, "delivered once the receiver is quick")
            assert slow["run"] in [b.get("run") for b in receiver.bodies]
    log = (tmp_path / "daemon.log").read_text()
    assert "s3cret" not in log and "reporter:***@" in log


def test_a_refusing_receiver_keeps_the_report(tmp_path: Path) -> None:
    port = free_port()
    with receiving(port) as receiver:
        receiver.status = 500
        provd = reporting(tmp_path, port)
        with running_daemon(provd, tmp_path):
            run = start(provd, MUSIC.as_uri())["run"]
            wait_until(lambda: "HTTP 500" in (tmp_path / "daemon.log").read_text(), 10, "the refusal")
            assert run in [p["run"] for p in waiting(provd)["pending"]]
            receiver.status = 204
            start(provd, MUSIC.as_uri())
            wait_until(lambda: waiting(provd)["pending"] == [], 10, "delivered after the refusals")


def test_a_backlog_is_sent_after_a_restart_and_the_overflow_is_counted(tmp_path: Path) -> None:
    port = free_port()
    provd = reporting(tmp_path, port, max_pending=3)
    runs = [json.loads(provd.run("apply", "--json", str(MUSIC), check=0).stdout)["run"] for _ in range(5)]
    queued = waiting(provd)
    assert [p["run"] for p in queued["pending"]] == runs[-3:] and queued["dropped"] == 3  # configure's + 2
    assert "3 dropped" in provd.run("reports", check=0).stdout
    with receiving(port) as receiver, running_daemon(provd, tmp_path):
        wait_until(lambda: len(receiver.bodies) == 3, 10, "the backlog delivered at start")
        assert [b["run"] for b in receiver.bodies] == runs[-3:]
        assert receiver.bodies[0]["dropped"] == 3 and all("dropped" not in b for b in receiver.bodies[1:])
        wait_until(lambda: waiting(provd) == {"url": waiting(provd)["url"], "dropped": 0, "pending": []}, 5,
                   "nothing waiting")


def test_kill_9_during_a_delivery_loses_no_report(tmp_path: Path) -> None:
    port = free_port()
    provd = reporting(tmp_path, port, timeout_s=10)
    runs = [json.loads(provd.run("apply", "--json", str(MUSIC), check=0).stdout)["run"] for _ in range(3)]
    with receiving(port) as receiver:
        receiver.delay = 1.5
        for round_ in range(3):
            with running_daemon(provd, tmp_path) as daemon:
                time.sleep(0.5 + 0.6 * round_)  # in the middle of a POST, or between two
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait(5)
            (tmp_path / "daemon.log").rename(tmp_path / f"daemon.{round_}.log")
        receiver.delay = 0.0
        with running_daemon(provd, tmp_path):
            wait_until(lambda: waiting(provd)["pending"] == [], 15, "everything delivered in the end")
        delivered = {b["report_id"]: b.get("run") for b in receiver.bodies}  # at least once: de-duplicated by id
        assert set(runs) <= set(delivered.values())
        assert len(delivered) == len(set(delivered.values()))
