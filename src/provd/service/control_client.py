"""The client side of the control socket (the protocol and its path in `provd.core.control`): one typed request,
then the daemon's typed answers until it closes the connection.

A daemon that resets, answers half a line or no JSON, or says nothing for too long is a ControlError (one line
for the user), never a traceback or a hang. Light: no asyncio (`provd apply` asks here first).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

from provd.core import control as protocol
from provd.errors import ControlError
from provd.errors import NoDaemon as NoDaemon  # raised here; callers catch it as control_client.NoDaemon


def status(runtime_dir: Path) -> protocol.Status:
    """The daemon's status.

    Raises:
        NoDaemon: no daemon runs.
        ControlError: as `exchange`, or the daemon closed without an answer.
    """
    for answer in exchange(runtime_dir, protocol.StatusRequest()):
        return protocol.decode_status(answer)
    raise ControlError("the daemon closed the control socket without a status")


def check_sync(runtime_dir: Path, request: protocol.CheckSyncRequest) -> protocol.CheckSyncAnswer | None:
    """The daemon's answer to a NOTIFY; None when it closed without one.

    Raises:
        NoDaemon: no daemon runs.
        ControlError: as `exchange`.
    """
    for answer in exchange(runtime_dir, request):
        return protocol.decode_check_sync_answer(answer)
    return None


def events(runtime_dir: Path, request: protocol.StartRequest | protocol.ApplyRequest | protocol.RollbackRequest
           | protocol.ConfirmRequest) -> Iterator[protocol.Event]:
    """The events of a queued request as they arrive (an ErrorEvent is raised, not yielded).

    Raises:
        NoDaemon: no daemon runs.
        ControlError: as `exchange`, with EVENT_TIMEOUT_S between two events.
    """
    for answer in exchange(runtime_dir, request, timeout=protocol.EVENT_TIMEOUT_S):
        event = protocol.decode_event(answer)
        if event is not None:
            yield event


def exchange(runtime_dir: Path, request: protocol.Request, *,
             timeout: float = protocol.STATUS_TIMEOUT_S) -> Iterator[dict[str, object]]:
    """Send `request`, yield each answer line as it arrives; `timeout` bounds the wait for each line.

    An ErrorEvent answer is raised: the daemon refused the request.

    Raises:
        NoDaemon: no socket, or nobody listening.
        ControlError: the daemon refused the request, broke the connection, answered garbage, or was silent
            for `timeout` seconds.
    """
    path = protocol.socket_path(runtime_dir)
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
            sock.sendall(protocol.encode(request))
            with sock.makefile("rb") as stream:
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if not line.strip():
                        continue
                    answer = protocol.decode_answer(line)
                    error = protocol.error_of(answer)
                    if error is not None:
                        raise ControlError(error.error)  # worded for the user, as in-process
                    yield answer
        except TimeoutError:
            raise ControlError(f"{path}: the daemon did not answer within {timeout:g} s (stopped or hung?)") \
                from None
        except OSError as exc:
            raise ControlError(f"{path}: the connection to the daemon broke: {exc.strerror or exc}") from None
