"""The client side of the control socket (`runtime_dir/provd.sock`, the protocol in `provd.core.control`): one
request line, then the daemon's answer lines until it closes the connection.

A daemon that resets, answers half a line or no JSON, or says nothing for too long is a ControlError (one line
for the user), never a traceback or a hang.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

from provd.core import control as protocol
from provd.errors import ControlError
from provd.errors import NoDaemon as NoDaemon  # raised here; callers catch it as control_client.NoDaemon


def socket_path(runtime_dir: Path) -> Path:
    return runtime_dir / protocol.SOCKET_NAME


def lock_path(runtime_dir: Path) -> Path:
    return runtime_dir / protocol.LOCK_NAME


def exchange(path: Path, message: dict[str, object], *,
             timeout: float = protocol.STATUS_TIMEOUT_S) -> Iterator[dict[str, object]]:
    """Send `message`, yield each answer line as it arrives; `timeout` bounds the wait for each line.

    An `{"event": "error"}` answer is raised: the daemon refused the request.

    Raises:
        NoDaemon: no socket, or nobody listening.
        ControlError: the daemon refused the request, broke the connection, answered garbage, or was silent
            for `timeout` seconds.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(protocol.STATUS_TIMEOUT_S)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise NoDaemon(str(exc)) from exc
    except OSError as exc:
        sock.close()
        raise ControlError(f"{path}: cannot connect to the daemon: {exc.strerror or exc}") from exc
    with sock:
        sock.settimeout(timeout)
        try:
            sock.sendall(protocol.encode(message))
            with sock.makefile("rb") as stream:
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if not line.strip():
                        continue
                    answer = protocol.decode_answer(line)
                    if answer.get("event") == "error":
                        raise ControlError(str(answer.get("error")))  # worded for the user, as in-process
                    yield answer
        except TimeoutError:
            raise ControlError(f"{path}: the daemon did not answer within {timeout:g} s (stopped or hung?)") \
                from None
        except OSError as exc:
            raise ControlError(f"{path}: the connection to the daemon broke: {exc.strerror or exc}") from None
