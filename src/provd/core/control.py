"""The control socket's protocol (README "Control socket"): names, limits and the typed check of every request.

Pure: bytes in, a `Request` (or a ControlError naming what is wrong) out. The daemon serves it,
`provd.service.control_client` speaks it as a client; no other module knows the socket's file name or the
message shapes. One request line (a JSON object) per connection, then the daemon's answer lines
(`{"event": …}`) until it closes.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from provd.errors import ControlError

SOCKET_NAME = "provd.sock"  # in runtime_dir, mode 0660
LOCK_NAME = "provd.lock"  # in runtime_dir: held (flock) by the one running daemon
BASE_LINE_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 10.0  # from accepting a connection to its request line
MAX_CLIENTS = 32  # concurrent connections; a new one beyond evicts the oldest that sent nothing yet
HEARTBEAT_S = 5.0  # a client waiting on a queued request hears from the daemon at least this often
STATUS_TIMEOUT_S = 5.0  # the CLI's wait for a one-answer request
EVENT_TIMEOUT_S = 20.0  # the CLI's wait between two events of a streamed request (> HEARTBEAT_S)

COMMANDS = ("status", "start", "check-sync", "apply", "rollback")
_FIELDS: dict[str, frozenset[str]] = {
    "status": frozenset(),
    "start": frozenset({"url", "dry_run"}),
    "check-sync": frozenset({"source", "port", "data"}),
    "apply": frozenset({"data", "name", "url"}),
    "rollback": frozenset({"generation"}),
}


def max_line_bytes(max_file_bytes: int) -> int:
    """The longest request line: an `apply` carries a whole file (up to http.max_file_bytes) in base64."""
    return BASE_LINE_BYTES + (max_file_bytes + 2) // 3 * 4


class Request(NamedTuple):
    """A checked request; fields a command does not take keep their defaults. (A NamedTuple: the CLI side
    imports this module, and dataclasses would cost `provd status` 7 ms.)"""

    cmd: str
    url: str | None = None
    dry_run: bool = False
    source: str = "127.0.0.1"
    port: int = 5060
    data: bytes = b""
    name: str = ""
    generation: int = 0


def is_file_url(url: str) -> bool:
    scheme, sep, _ = url.strip().partition(":")
    return bool(sep) and scheme.lower() == "file"


def parse_request(line: bytes, *, allow_file_urls: bool) -> Request:
    """One request line → a Request.

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
    fields: dict[str, Any] = {}
    if cmd == "start":
        url = _optional_str(message, "url")
        if url is not None and is_file_url(url) and not allow_file_urls:
            raise ControlError("start: a file: URL is refused from the control socket (only root, or with "
                               "control.allow_file_urls)")
        fields["url"] = url
        fields["dry_run"] = _bool(message, "dry_run")
    elif cmd == "check-sync":
        import ipaddress  # the daemon's side only

        fields["data"] = _base64(message, "data")
        source = message.get("source", "127.0.0.1")
        try:
            fields["source"] = str(ipaddress.ip_address(source if isinstance(source, str) else ""))
        except ValueError:
            raise ControlError("check-sync: source must be an IP address as a string") from None
        port = message.get("port", 5060)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ControlError("check-sync: port must be an integer 0..65535")
        fields["port"] = port
    elif cmd == "apply":
        fields["data"] = _base64(message, "data")
        name = message.get("name")
        if not isinstance(name, str) or not name:
            raise ControlError("apply: name must be a non-empty string (the file's name)")
        fields["name"] = name
        fields["url"] = _optional_str(message, "url")
    elif cmd == "rollback":
        generation = message.get("generation")
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise ControlError("rollback: generation must be a positive integer")
        fields["generation"] = generation
    return Request(cmd, **fields)


def encode(obj: dict[str, object]) -> bytes:
    """One answer or request line."""
    return json.dumps(obj).encode() + b"\n"


def error(message: str) -> dict[str, object]:
    return {"event": "error", "error": message}


def decode_answer(line: bytes) -> dict[str, object]:
    """One answer line from the daemon (the client side).

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


def _optional_str(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{message['cmd']}: {key} must be a string or absent")
    return value


def _bool(message: dict[str, Any], key: str) -> bool:
    value = message.get(key, False)
    if not isinstance(value, bool):
        raise ControlError(f"{message['cmd']}: {key} must be true or false")
    return value


def _base64(message: dict[str, Any], key: str) -> bytes:
    import base64
    import binascii

    value = message.get(key)
    if not isinstance(value, str):
        raise ControlError(f"{message['cmd']}: {key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ControlError(f"{message['cmd']}: {key} is not valid base64") from None
