"""The control socket's protocol (README "Control socket"): its file names and limits, and every message both ways
as a typed value with its JSON encoding and its checked decoding.

Pure: bytes in, typed messages out (or a ControlError naming what is wrong), and back. The daemon serves it
(`provd.service.control_server`), `provd.service.control_client` speaks it; no other module knows the socket's
file name or a message's shape. One request line (a JSON object) per connection, then the daemon's answer
lines until it closes: a status, a check-sync answer, or events (`{"event": …}`) ending in a final one.
(NamedTuples, not dataclasses: the CLI side imports this module, and dataclasses would cost `provd status` 7 ms.)
"""

from __future__ import annotations

import json
from typing import NamedTuple, Protocol, Self, TypeVar

from provd.errors import ControlError

SOCKET_NAME = "provd.sock"  # in runtime_dir, mode 0660
LOCK_NAME = "provd.lock"  # in runtime_dir: held (flock) by the one running daemon
BASE_LINE_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 10.0  # from accepting a connection to its request line
MAX_CLIENTS = 32  # concurrent connections; a new one beyond evicts the oldest that sent nothing yet
HEARTBEAT_S = 5.0  # a client waiting on a queued request hears from the daemon at least this often
STATUS_TIMEOUT_S = 5.0  # the CLI's wait for a one-answer request
EVENT_TIMEOUT_S = 20.0  # the CLI's wait between two events of a streamed request (> HEARTBEAT_S)

COMMANDS = ("status", "start", "check-sync", "apply", "rollback", "confirm")
_FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset(),
    "start": frozenset({"url", "dry_run", "force"}),
    "check-sync": frozenset({"source", "port", "data"}),
    "apply": frozenset({"data", "name", "url"}),
    "rollback": frozenset({"generation"}),
    "confirm": frozenset(),
}


class _Directory(Protocol):
    def __truediv__(self, name: str, /) -> Self: ...


_D = TypeVar("_D", bound=_Directory)


def socket_path(runtime_dir: _D) -> _D:
    """`runtime_dir/provd.sock` (a pathlib.Path in, one out: the core does not import pathlib)."""
    path: _D = runtime_dir / SOCKET_NAME
    return path


def lock_path(runtime_dir: _D) -> _D:
    """`runtime_dir/provd.lock`."""
    path: _D = runtime_dir / LOCK_NAME
    return path


def max_line_bytes(max_file_bytes: int) -> int:
    """The longest request line: an `apply` carries a whole file (up to http.max_file_bytes) in base64."""
    return BASE_LINE_BYTES + (max_file_bytes + 2) // 3 * 4


# --- requests (client → daemon) ---------------------------------------------------------------------------


class StatusRequest(NamedTuple):
    @property
    def cmd(self) -> str:
        return "status"

    def to_json(self) -> dict[str, object]:
        return {"cmd": "status"}


class StartRequest(NamedTuple):
    """`provd start [--url URL] [--dry-run] [--force]`: queued, streams events, ends with a ReportEvent."""

    url: str | None = None
    dry_run: bool = False
    force: bool = False  # apply even documents in quarantine (docs/design.md §10)

    @property
    def cmd(self) -> str:
        return "start"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"cmd": "start", "url": self.url, "dry_run": self.dry_run}
        if self.force:  # only when set: a daemon of the previous version refuses an unknown field
            out["force"] = True
        return out


class CheckSyncRequest(NamedTuple):
    """`provd check-sync`: a NOTIFY read from stdin; answered with one CheckSyncAnswer."""

    source: str = "127.0.0.1"
    port: int = 5060
    data: bytes = b""

    @property
    def cmd(self) -> str:
        return "check-sync"

    def to_json(self) -> dict[str, object]:
        return {"cmd": "check-sync", "source": self.source, "port": self.port, "data": _b64(self.data)}


class ApplyRequest(NamedTuple):
    """`provd apply FILE` while a daemon runs: the file's bytes (the daemon never opens a path a client names)."""

    data: bytes = b""
    name: str = ""
    url: str | None = None

    @property
    def cmd(self) -> str:
        return "apply"

    def to_json(self) -> dict[str, object]:
        return {"cmd": "apply", "data": _b64(self.data), "name": self.name, "url": self.url}


class RollbackRequest(NamedTuple):
    """`provd rollback GENERATION`: queued, ends with a RollbackEvent."""

    generation: int

    @property
    def cmd(self) -> str:
        return "rollback"

    def to_json(self) -> dict[str, object]:
        return {"cmd": "rollback", "generation": self.generation}


class ConfirmRequest(NamedTuple):
    """`provd confirm`: queued (it changes the store), ends with a ConfirmEvent."""

    @property
    def cmd(self) -> str:
        return "confirm"

    def to_json(self) -> dict[str, object]:
        return {"cmd": "confirm"}


Request = StatusRequest | StartRequest | CheckSyncRequest | ApplyRequest | RollbackRequest | ConfirmRequest


# --- answers and events (daemon → client) ------------------------------------------------------------------


class QueuedEvent(NamedTuple):
    """The request is in the queue; `running`: behind a run in progress."""

    running: bool

    def to_json(self) -> dict[str, object]:
        return {"event": "queued", "running": self.running}


class ProgressEvent(NamedTuple):
    line: str

    def to_json(self) -> dict[str, object]:
        return {"event": "progress", "line": self.line}


class AliveEvent(NamedTuple):
    """The heartbeat, every HEARTBEAT_S while a request waits: a busy daemon, not a stopped one."""

    def to_json(self) -> dict[str, object]:
        return {"event": "alive"}


class ReportEvent(NamedTuple):
    """Final for start and apply: the run report (docs/design.md §8), JSON as stored."""

    report: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {"event": "report", "report": self.report}


class RollbackEvent(NamedTuple):
    """Final for rollback: the new generation (None: already equal) and the sections it restored."""

    generation: int | None
    sections: list[str]

    def to_json(self) -> dict[str, object]:
        return {"event": "rollback", "generation": self.generation, "sections": self.sections}


class ConfirmEvent(NamedTuple):
    """Final for confirm: the generation confirmed by hand (None: nothing was pending)."""

    generation: int | None

    def to_json(self) -> dict[str, object]:
        return {"event": "confirm", "generation": self.generation}


class ErrorEvent(NamedTuple):
    """Final for any request: refused, worded for the user."""

    error: str

    def to_json(self) -> dict[str, object]:
        return {"event": "error", "error": self.error}


Event = QueuedEvent | ProgressEvent | AliveEvent | ReportEvent | RollbackEvent | ConfirmEvent | ErrorEvent
FINAL_EVENTS = (ReportEvent, RollbackEvent, ConfirmEvent, ErrorEvent)


class RunningStatus(NamedTuple):
    triggers: list[str]
    progress: list[str]  # the run's last progress lines

    def to_json(self) -> dict[str, object]:
        return {"triggers": self.triggers, "progress": self.progress}


class Status(NamedTuple):
    """The answer to `status` (`provd status --json` prints it as it is)."""

    state: str  # "running" or "idle"
    pid: int
    running: RunningStatus | None
    queued: int
    next_run: str | None  # ISO 8601
    retry_at: str | None
    retry_attempt: int
    last_report: dict[str, object] | None
    runs_started: int
    health: dict[str, object] | None = None  # the generation waiting on its health check (docs/design.md §10)

    def to_json(self) -> dict[str, object]:
        return {"state": self.state, "pid": self.pid,
                "running": self.running.to_json() if self.running is not None else None,
                "queued": self.queued, "next_run": self.next_run, "retry_at": self.retry_at,
                "retry_attempt": self.retry_attempt, "last_report": self.last_report,
                "runs_started": self.runs_started, "health": self.health}


class CheckSyncAnswer(NamedTuple):
    """The answer to `check-sync`: the SIP status (None: not answered) and the response to send back."""

    status: int | None
    reason: str
    response: bytes | None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "accepted": self.accepted, "reason": self.reason,
                "response": _b64(self.response) if self.response else None}


Answer = Event | Status | CheckSyncAnswer
Message = Request | Answer


def encode(message: Message) -> bytes:
    """One request or answer line."""
    return json.dumps(message.to_json()).encode() + b"\n"


# --- decoding ---------------------------------------------------------------------------------------------


def is_file_url(url: str) -> bool:
    scheme, sep, _ = url.strip().partition(":")
    return bool(sep) and scheme.lower() == "file"


def parse_request(line: bytes, *, allow_file_urls: bool) -> Request:
    """One request line → a Request (the daemon's side).

    `allow_file_urls`: whether this peer may make the daemon read local files (`start --url file:…`): the
    daemon runs as root, the socket is open to a group.

    Raises:
        ControlError: not a JSON object, an unknown command or field, a field of the wrong type or value.
    """
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("the request is not a JSON line") from None
    if not isinstance(message, dict):
        raise ControlError("the request must be a JSON object")
    cmd = message.get("cmd")
    if not isinstance(cmd, str) or cmd not in _FIELDS:
        raise ControlError(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
    unknown = sorted(set(message) - _FIELDS[cmd] - {"cmd"})
    if unknown:
        raise ControlError(f"{cmd}: unknown field {unknown[0]!r}")
    if cmd == "start":
        url = _optional_str(message, "url")
        if url is not None and is_file_url(url) and not allow_file_urls:
            raise ControlError("start: a file: URL is refused from the control socket (only root, or with "
                               "control.allow_file_urls)")
        return StartRequest(url, _bool(message, "dry_run"), _bool(message, "force"))
    if cmd == "check-sync":
        import ipaddress  # the daemon's side only

        data = _base64(message, "data")
        source = message.get("source", "127.0.0.1")
        try:
            address = str(ipaddress.ip_address(source if isinstance(source, str) else ""))
        except ValueError:
            raise ControlError("check-sync: source must be an IP address as a string") from None
        port = message.get("port", 5060)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ControlError("check-sync: port must be an integer 0..65535")
        return CheckSyncRequest(address, port, data)
    if cmd == "apply":
        data = _base64(message, "data")
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise ControlError("apply: name must be a non-empty string (the file's name)")
        return ApplyRequest(data, name, _optional_str(message, "url"))
    if cmd == "rollback":
        generation = message.get("generation")
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise ControlError("rollback: generation must be a positive integer")
        return RollbackRequest(generation)
    if cmd == "confirm":
        return ConfirmRequest()
    return StatusRequest()


def decode_answer(line: bytes) -> dict[str, object]:
    """One answer line from the daemon as a JSON object (the client side; the typed decoders take it on).

    Raises:
        ControlError: half a line, not JSON, not an object.
    """
    if not line.endswith(b"\n"):
        raise ControlError("the daemon closed the control socket in the middle of an answer")
    try:
        answer = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ControlError("the daemon's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ControlError("the daemon's answer is not a JSON object")
    return answer


def error_of(answer: dict[str, object]) -> ErrorEvent | None:
    """The ErrorEvent when the answer is one (any request may be refused so)."""
    return ErrorEvent(str(answer.get("error"))) if answer.get("event") == "error" else None


def decode_event(answer: dict[str, object]) -> Event | None:
    """An event of a queued request; None for one this version does not know (skipped: a later daemon may
    say more).

    Raises:
        ControlError: a known event with a field of the wrong type.
    """
    kind = answer.get("event")
    if kind == "queued":
        return QueuedEvent(bool(answer.get("running")))
    if kind == "progress":
        return ProgressEvent(str(answer.get("line")))
    if kind == "alive":
        return AliveEvent()
    if kind == "report":
        return ReportEvent(_answer_field(answer, "report", dict))
    if kind == "rollback":
        return RollbackEvent(_optional_int_field(answer, "generation"),
                             [str(s) for s in _answer_field(answer, "sections", list)])
    if kind == "confirm":
        return ConfirmEvent(_optional_int_field(answer, "generation"))
    return error_of(answer)


def decode_status(answer: dict[str, object]) -> Status:
    """The answer to `status`.

    Raises:
        ControlError: a field missing or of the wrong type.
    """
    running = answer.get("running")
    last = answer.get("last_report")
    if running is not None and not isinstance(running, dict):
        raise ControlError("the daemon's status: running is not an object")
    if last is not None and not isinstance(last, dict):
        raise ControlError("the daemon's status: last_report is not an object")
    health = answer.get("health")
    if health is not None and not isinstance(health, dict):
        raise ControlError("the daemon's status: health is not an object")
    return Status(
        state=str(answer.get("state")), pid=_int_field(answer, "pid"),
        running=None if running is None else RunningStatus(
            [str(t) for t in _answer_field(running, "triggers", list)],
            [str(p) for p in _answer_field(running, "progress", list)]),
        queued=_int_field(answer, "queued"), next_run=_optional_str_field(answer, "next_run"),
        retry_at=_optional_str_field(answer, "retry_at"), retry_attempt=_int_field(answer, "retry_attempt"),
        last_report=last, runs_started=_int_field(answer, "runs_started"), health=health)


def decode_check_sync_answer(answer: dict[str, object]) -> CheckSyncAnswer:
    """The answer to `check-sync`.

    Raises:
        ControlError: a status that is not a number, a response that is not base64.
    """
    import base64
    import binascii

    status = _optional_int_field(answer, "status")
    response = _optional_str_field(answer, "response")
    try:
        data = base64.b64decode(response) if response is not None else None
    except (binascii.Error, ValueError):
        raise ControlError("the daemon's check-sync answer: response is not base64") from None
    return CheckSyncAnswer(status, str(answer.get("reason")), data)


# --- field checks -----------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _answer_field(answer: dict[str, object], key: str, kind: type[_T]) -> _T:
    value = answer.get(key)
    if not isinstance(value, kind):
        raise ControlError(f"the daemon's answer: {key} is not a JSON {'object' if kind is dict else 'array'}")
    return value


def _optional_int_field(answer: dict[str, object], key: str) -> int | None:
    value = answer.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ControlError(f"the daemon's answer: {key} is not a number")


def _int_field(answer: dict[str, object], key: str) -> int:
    value = _optional_int_field(answer, key)
    if value is None:
        raise ControlError(f"the daemon's answer: {key} is not a number")
    return value


def _optional_str_field(answer: dict[str, object], key: str) -> str | None:
    value = answer.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"the daemon's answer: {key} is not a string")
    return value


def _optional_str(message: dict[str, object], key: str) -> str | None:
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{message['cmd']}: {key} must be a string or absent")
    return value


def _bool(message: dict[str, object], key: str) -> bool:
    value = message.get(key, False)
    if not isinstance(value, bool):
        raise ControlError(f"{message['cmd']}: {key} must be true or false")
    return value


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _base64(message: dict[str, object], key: str) -> bytes:
    import base64
    import binascii

    value = message.get(key)
    if not isinstance(value, str):
        raise ControlError(f"{message['cmd']}: {key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ControlError(f"{message['cmd']}: {key} is not valid base64") from None
