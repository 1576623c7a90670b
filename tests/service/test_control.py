"""The control socket: the protocol's request check as a table; the CLI against a fake, misbehaving daemon (a
real unix-socket server in a thread); the real daemon against oversized, mistyped, idle and unprivileged
clients."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import select
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provd.core import control
from provd.core.control import (
    AliveEvent,
    ApplyRequest,
    CheckSyncAnswer,
    CheckSyncRequest,
    ConfirmEvent,
    ConfirmRequest,
    ErrorEvent,
    Message,
    ProgressEvent,
    QueuedEvent,
    ReportEvent,
    Request,
    RollbackEvent,
    RollbackRequest,
    RunningStatus,
    StartRequest,
    Status,
    StatusRequest,
    decode_answer,
    max_line_bytes,
    parse_request,
)
from provd.errors import ControlError
from tests.support.cli import Provd
from tests.support.daemon import configure, keys, running_daemon
from tests.support.peers.http import Served

B64 = base64.b64encode(b"NOTIFY").decode()


@pytest.mark.parametrize(("line", "expected"), [
    pytest.param(b'{"cmd": "status"}', StatusRequest(), id="status"),
    pytest.param(b'{"cmd": "start"}', StartRequest(), id="start-discovery"),
    pytest.param(b'{"cmd": "start", "url": null, "dry_run": false}', StartRequest(), id="start-as-cli-sends"),
    pytest.param(b'{"cmd": "start", "url": "http://a/x.xml", "dry_run": true}',
                 StartRequest(url="http://a/x.xml", dry_run=True), id="start-url-dry-run"),
    pytest.param(b'{"cmd": "check-sync", "source": "10.0.0.1", "port": 5070, "data": "' + B64.encode() + b'"}',
                 CheckSyncRequest(source="10.0.0.1", port=5070, data=b"NOTIFY"), id="check-sync"),
    pytest.param(b'{"cmd": "check-sync", "source": "::1", "data": ""}', CheckSyncRequest(source="::1"),
                 id="check-sync-ipv6-empty"),
    pytest.param(b'{"cmd": "apply", "data": "PGEvPg==", "name": "a.xml", "url": "file:///tmp/a.xml"}',
                 ApplyRequest(data=b"<a/>", name="a.xml", url="file:///tmp/a.xml"), id="apply"),
    pytest.param(b'{"cmd": "rollback", "generation": 3}', RollbackRequest(generation=3), id="rollback"),
])
def test_valid_requests(line: bytes, expected: Request) -> None:
    parsed = parse_request(line, allow_file_urls=False)
    assert (type(parsed), parsed) == (type(expected), expected)  # NamedTuples: equal as tuples across types


@pytest.mark.parametrize(("line", "names"), [
    pytest.param(b"not json", "JSON", id="not-json"),
    pytest.param(b"\xff\xfe", "JSON", id="not-utf8"),
    pytest.param(b"[1, 2]", "object", id="array"),
    pytest.param(b'{"cmd": 5}', "unknown command", id="cmd-int"),
    pytest.param(b'{"cmd": "reboot"}', "unknown command", id="cmd-unknown"),
    pytest.param(b'{}', "unknown command", id="no-cmd"),
    pytest.param(b'{"cmd": "status", "x": 1}', "unknown field 'x'", id="status-extra-field"),
    pytest.param(b'{"cmd": "start", "url": 5}', "url must be a string", id="url-int"),
    pytest.param(b'{"cmd": "start", "url": []}', "url must be a string", id="url-list"),
    pytest.param(b'{"cmd": "start", "dry_run": "yes"}', "dry_run must be true or false", id="dry-run-str"),
    pytest.param(b'{"cmd": "start", "url": "file:///etc/shadow"}', "file: URL is refused", id="file-url"),
    pytest.param(b'{"cmd": "start", "url": " FILE:/etc/shadow"}', "file: URL is refused", id="file-url-upper"),
    pytest.param(b'{"cmd": "check-sync", "source": 5, "data": 7}', "base64 string", id="check-sync-fuzzed"),
    pytest.param(b'{"cmd": "check-sync", "source": 5, "data": ""}', "IP address", id="source-int"),
    pytest.param(b'{"cmd": "check-sync", "source": "pbx.example", "data": ""}', "IP address", id="source-name"),
    pytest.param(b'{"cmd": "check-sync", "data": "!!!"}', "not valid base64", id="data-not-base64"),
    pytest.param(b'{"cmd": "check-sync", "data": "", "port": 70000}', "port", id="port-range"),
    pytest.param(b'{"cmd": "check-sync", "data": "", "port": true}', "port", id="port-bool"),
    pytest.param(b'{"cmd": "apply", "data": "PGEvPg=="}', "name", id="apply-no-name"),
    pytest.param(b'{"cmd": "apply", "name": "a.xml"}', "base64 string", id="apply-no-data"),
    pytest.param(b'{"cmd": "rollback", "generation": "3"}', "positive integer", id="generation-str"),
    pytest.param(b'{"cmd": "rollback", "generation": 0}', "positive integer", id="generation-zero"),
    pytest.param(b'{"cmd": "rollback", "generation": true}', "positive integer", id="generation-bool"),
])
def test_invalid_requests(line: bytes, names: str) -> None:
    with pytest.raises(ControlError, match=names):
        parse_request(line, allow_file_urls=False)


def test_file_urls_when_allowed() -> None:
    line = b'{"cmd": "start", "url": "file:///srv/p.xml"}'
    assert parse_request(line, allow_file_urls=True) == StartRequest(url="file:///srv/p.xml")


@pytest.mark.parametrize(("line", "names"), [
    pytest.param(b'{"state": "idle"', "middle of an answer", id="half-line"),
    pytest.param(b"<html>\n", "not JSON", id="not-json"),
    pytest.param(b"[]\n", "not a JSON object", id="array"),
])
def test_bad_answers(line: bytes, names: str) -> None:
    with pytest.raises(ControlError, match=names):
        decode_answer(line)


# The wire, byte for byte (README "Control socket"): what the CLI sends and the daemon answers today.
WIRE: list[tuple[Message, bytes]] = [
    (StatusRequest(), b'{"cmd": "status"}\n'),
    (StartRequest(None, False), b'{"cmd": "start", "url": null, "dry_run": false}\n'),
    (StartRequest("http://a/x.xml", True), b'{"cmd": "start", "url": "http://a/x.xml", "dry_run": true}\n'),
    (CheckSyncRequest("10.0.0.1", 5070, b"NOTIFY"),
     b'{"cmd": "check-sync", "source": "10.0.0.1", "port": 5070, "data": "Tk9USUZZ"}\n'),
    (ApplyRequest(b"<a/>", "a.xml", "file:///tmp/a.xml"),
     b'{"cmd": "apply", "data": "PGEvPg==", "name": "a.xml", "url": "file:///tmp/a.xml"}\n'),
    (RollbackRequest(3), b'{"cmd": "rollback", "generation": 3}\n'),
    (StartRequest(None, False, True), b'{"cmd": "start", "url": null, "dry_run": false, "force": true}\n'),
    (ConfirmRequest(), b'{"cmd": "confirm"}\n'),
    (ConfirmEvent(7), b'{"event": "confirm", "generation": 7}\n'),
    (ConfirmEvent(None), b'{"event": "confirm", "generation": null}\n'),
    (QueuedEvent(True), b'{"event": "queued", "running": true}\n'),
    (ProgressEvent("fetch x"), b'{"event": "progress", "line": "fetch x"}\n'),
    (AliveEvent(), b'{"event": "alive"}\n'),
    (ReportEvent({"outcome": "applied", "run": 4}),
     b'{"event": "report", "report": {"outcome": "applied", "run": 4}}\n'),
    (RollbackEvent(7, ["keys"]), b'{"event": "rollback", "generation": 7, "sections": ["keys"]}\n'),
    (RollbackEvent(None, []), b'{"event": "rollback", "generation": null, "sections": []}\n'),
    (ErrorEvent("no"), b'{"event": "error", "error": "no"}\n'),
    (CheckSyncAnswer(200, "check-sync from 127.0.0.1", b"SIP/2.0 200 OK\r\n"),
     b'{"status": 200, "accepted": true, "reason": "check-sync from 127.0.0.1", '
     b'"response": "U0lQLzIuMCAyMDAgT0sNCg=="}\n'),
    (CheckSyncAnswer(None, "a response (200) is never answered", None),
     b'{"status": null, "accepted": false, "reason": "a response (200) is never answered", "response": null}\n'),
    (Status("running", 42, RunningStatus(["cli", "sighup"], ["fetch x"]), 1, "2026-01-01T03:00:00+00:00", None, 0,
            {"run": 1}, 3),
     b'{"state": "running", "pid": 42, "running": {"triggers": ["cli", "sighup"], "progress": ["fetch x"]}, '
     b'"queued": 1, "next_run": "2026-01-01T03:00:00+00:00", "retry_at": null, "retry_attempt": 0, '
     b'"last_report": {"run": 1}, "runs_started": 3, "health": null}\n'),
    (Status("idle", 42, None, 0, None, "2026-01-01T03:00:00+00:00", 2, None, 0),
     b'{"state": "idle", "pid": 42, "running": null, "queued": 0, "next_run": null, '
     b'"retry_at": "2026-01-01T03:00:00+00:00", "retry_attempt": 2, "last_report": null, "runs_started": 0, '
     b'"health": null}\n'),
    (Status("idle", 42, None, 0, None, None, 0, None, 1, {"pending": 5, "rollback_to": 4}),
     b'{"state": "idle", "pid": 42, "running": null, "queued": 0, "next_run": null, "retry_at": null, '
     b'"retry_attempt": 0, "last_report": null, "runs_started": 1, "health": {"pending": 5, "rollback_to": 4}}\n'),
]


@pytest.mark.parametrize(("message", "wire"), WIRE, ids=lambda v: type(v).__name__ if not isinstance(v, bytes) else "")
def test_wire_bytes(message: Message, wire: bytes) -> None:
    assert control.encode(message) == wire


@pytest.mark.parametrize(("message", "wire"), WIRE, ids=lambda v: type(v).__name__ if not isinstance(v, bytes) else "")
def test_wire_round_trip(message: Message, wire: bytes) -> None:
    """Each message decodes from its own bytes to itself, by the decoder of its side."""
    decoded: Message | None
    if isinstance(message, Request):
        decoded = parse_request(wire, allow_file_urls=True)
    elif isinstance(message, Status):
        decoded = control.decode_status(decode_answer(wire))
    elif isinstance(message, CheckSyncAnswer):
        decoded = control.decode_check_sync_answer(decode_answer(wire))
    else:
        decoded = control.decode_event(decode_answer(wire))
    assert (type(decoded), decoded) == (type(message), message)


@pytest.mark.parametrize(("answer", "names"), [
    pytest.param({"event": "report", "report": []}, "report", id="report-not-object"),
    pytest.param({"event": "rollback", "generation": "3", "sections": []}, "generation", id="generation-str"),
    pytest.param({"event": "rollback", "generation": 3}, "sections", id="no-sections"),
])
def test_bad_events(answer: dict[str, object], names: str) -> None:
    with pytest.raises(ControlError, match=names):
        control.decode_event(answer)


def test_unknown_event_is_skipped() -> None:
    assert control.decode_event({"event": "later"}) is None


@pytest.mark.parametrize(("answer", "names"), [
    pytest.param({"state": "idle"}, "pid", id="no-pid"),
    pytest.param({"state": "idle", "pid": 1, "queued": 0, "retry_attempt": 0, "runs_started": True}, "runs_started",
                 id="bool-for-int"),
    pytest.param({"state": "idle", "pid": 1, "running": [], "queued": 0}, "running", id="running-list"),
])
def test_bad_status(answer: dict[str, object], names: str) -> None:
    with pytest.raises(ControlError, match=names):
        control.decode_status(answer)


def test_paths_in_runtime_dir(tmp_path: Path) -> None:
    assert (control.socket_path(tmp_path), control.lock_path(tmp_path)) == \
        (tmp_path / "provd.sock", tmp_path / "provd.lock")


def test_line_limit_carries_a_whole_file() -> None:
    assert max_line_bytes(4 * 1024 * 1024) > len(base64.b64encode(b"x" * 4 * 1024 * 1024)) + 1024


# --- the CLI against a misbehaving daemon -------------------------------------------------------------------


class FakeDaemon:
    """A unix-socket server at the control socket's path that misbehaves as told."""

    def __init__(self, path: Path, behaviour: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.behaviour = behaviour
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.behaviour == "reset":  # closed with the request unread: the client's read gets ECONNRESET
                select.select([conn], [], [], 5.0)  # the request has arrived (and stays unread)
                conn.close()
                continue
            conn.makefile("rb").readline()
            if self.behaviour == "half-line":
                conn.sendall(b'{"event": "queued", "running": fal')
            elif self.behaviour == "not-json":
                conn.sendall(b"<html>oops</html>\n")
            elif self.behaviour == "silent":
                self.held.append(conn)
                continue
            conn.close()

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def fake_daemon(provd: Provd, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(tmp_path / "run" / "provd.sock", request.param)
    yield fake
    fake.close()


@pytest.mark.parametrize("fake_daemon", ["reset", "half-line", "not-json", "silent"], indirect=True)
@pytest.mark.parametrize("command", [("status",), ("start", "--url", "http://127.0.0.1:9/x.xml")],
                         ids=["status", "start"])
def test_cli_against_a_broken_daemon(provd: Provd, fake_daemon: FakeDaemon, command: tuple[str, ...]) -> None:
    started = time.monotonic()
    result = provd.run(*command, check=1, timeout=60)
    assert result.stderr.startswith("provd: error: ") and result.stderr.count("\n") == 1, result.stderr
    if fake_daemon.behaviour == "silent":
        assert "did not answer" in result.stderr
        assert time.monotonic() - started < 30


# --- the daemon against hostile clients ---------------------------------------------------------------------


def exchange_raw(path: Path, data: bytes, timeout: float = 15.0) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        with contextlib.suppress(BrokenPipeError):  # the daemon stopped reading at its limit; it answered
            client.sendall(data)
        return [json.loads(line) for line in client.makefile("rb").read().splitlines() if line.strip()]


@pytest.mark.parametrize(("line", "names"), [
    pytest.param(b'{"cmd":"check-sync","source":5,"data":7}\n', "base64", id="fuzzed-check-sync"),
    pytest.param(b'{"cmd":"start","url":5}\n', "url must be a string", id="url-int"),
    pytest.param(b'{"cmd":"start","url":[]}\n', "url must be a string", id="url-list"),
    pytest.param(b"garbage\n", "JSON", id="garbage"),
    pytest.param(b'{"cmd":"status"', "incomplete", id="no-newline"),
])
def test_daemon_answers_bad_requests_with_an_error(tmp_path: Path, line: bytes, names: str) -> None:
    provd = configure(tmp_path)
    with running_daemon(provd, tmp_path) as daemon:
        sock = tmp_path / "run" / "provd.sock"
        if line.endswith(b"\n"):
            answers = exchange_raw(sock, line)
        else:  # half a request, then the client shuts its side
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(15)
                client.connect(str(sock))
                client.sendall(line)
                client.shutdown(socket.SHUT_WR)
                answers = [json.loads(x) for x in client.makefile("rb").read().splitlines()]
        assert len(answers) == 1 and answers[0]["event"] == "error" and names in str(answers[0]["error"])
        assert daemon.runs_started() == 0


def test_line_over_the_limit_is_answered_and_closed(tmp_path: Path) -> None:
    provd = configure(tmp_path)
    limit = max_line_bytes(4 * 1024 * 1024)
    with running_daemon(provd, tmp_path) as daemon:
        answers = exchange_raw(tmp_path / "run" / "provd.sock", b'{"cmd": "status", "x": "' + b"a" * limit + b'"}\n')
        assert answers[0]["event"] == "error" and "over" in str(answers[0]["error"])
        assert daemon.status()["state"] == "idle"


def test_idle_client_is_closed(tmp_path: Path) -> None:
    provd = configure(tmp_path)
    with running_daemon(provd, tmp_path):
        answers = exchange_raw(tmp_path / "run" / "provd.sock", b"", timeout=20)
        assert answers[0]["event"] == "error" and "no request line" in str(answers[0]["error"])


def test_many_idle_clients_do_not_stop_status(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    provd = configure(tmp_path)
    idle: list[socket.socket] = []
    try:
        with running_daemon(provd, tmp_path) as daemon:
            for _ in range(1100):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                with contextlib.suppress(BlockingIOError):  # backlog full: the daemon sheds them as it accepts
                    client.connect(str(tmp_path / "run" / "provd.sock"))
                idle.append(client)
            assert daemon.status()["state"] == "idle"
            open_fds = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
            assert open_fds < 100, open_fds
    finally:
        for client in idle:
            client.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start_as_nobody(sock: Path, url: str) -> list[dict[str, Any]]:
    """`start` from a process that is not root (uid 65534 before connect(): SO_PEERCRED is taken then)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, just the socket
        try:
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(20)
                client.connect(str(sock))
                client.sendall(json.dumps({"cmd": "start", "url": url}).encode() + b"\n")
                os.write(write_end, client.makefile("rb").read())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed-by-config"])
def test_file_urls_need_root_or_the_config(tmp_path: Path, served: Served, allow: bool) -> None:
    provd = configure(tmp_path)
    runtime = Path(tempfile.mkdtemp(prefix="provd-run-"))  # reachable for uid 65534 (pytest's tmp is 0700)
    runtime.chmod(0o755)
    cfg = json.loads(provd.config.read_text())
    cfg["paths"]["runtime_dir"] = str(runtime)
    cfg["control"] = {"allow_file_urls": allow}
    provd.config.write_text(json.dumps(cfg))
    secret = tmp_path / "secret.xml"
    secret.write_text(keys(5, "local-file"))
    with running_daemon(provd, tmp_path) as daemon:
        sock = runtime / "provd.sock"
        os.chmod(sock, 0o666)  # as if the user were in the socket's group
        answers = start_as_nobody(sock, secret.as_uri())
        if allow:
            assert answers[-1]["report"]["outcome"] == "applied"
        else:
            assert answers == [{"event": "error", "error": "start: a file: URL is refused from the control socket "
                                "(only root, or with control.allow_file_urls)"}]
            assert daemon.runs_started() == 0
            root = provd.run("start", "--url", secret.as_uri(), check=0)  # root may
            assert "applied: generation" in root.stdout
    shutil.rmtree(runtime)
