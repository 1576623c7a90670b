"""The daemon's side of the control socket (the protocol in core/control): listening on its socket in
runtime_dir, each connection a task in the daemon's TaskGroup, one checked request answered with typed messages.

Hostile clients cost little: at most MAX_CLIENTS connections (the oldest still silent one makes room),
IDLE_TIMEOUT_S for the request line, a bounded line, `file:` URLs only from root or by configuration.
What a request does is the daemon's (`Service`); this module only speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from pathlib import Path
from typing import Protocol

from provd import log
from provd.core import control as protocol
from provd.core.checksync import Decision
from provd.core.triggers import RunRequest
from provd.errors import ControlError, ProvdError
from provd.model import Trigger

_log = log.get(__name__)


class Service(Protocol):
    """What the control socket asks of the daemon."""

    def status(self) -> protocol.Status: ...

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision: ...

    def request(self, request: RunRequest) -> RunRequest: ...

    def busy(self) -> bool: ...


class ControlServer:
    def __init__(self, service: Service, *, max_file_bytes: int, allow_file_urls: bool) -> None:
        self._service = service
        self._line_limit = protocol.max_line_bytes(max_file_bytes)
        self._allow_file_urls = allow_file_urls  # control.allow_file_urls: every member of the socket's group may
        self._clients: dict[asyncio.StreamWriter, bool] = {}  # open connections, oldest first: still silent?
        self._server: asyncio.AbstractServer | None = None
        self._group: asyncio.TaskGroup | None = None
        self._early: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []  # before start()

    async def listen(self, path: Path) -> None:
        """Listen at `path` (mode 0660), replacing a socket file a killed daemon left.

        Raises:
            ControlError: the socket cannot be made.
        """
        try:
            path.unlink(missing_ok=True)  # left by a killed daemon: the lock says nobody serves it
            self._server = await asyncio.start_unix_server(self._accept, path=str(path), limit=self._line_limit)
            os.chmod(path, 0o660)
        except OSError as exc:
            raise ControlError(f"{path}: cannot listen on the control socket: {exc.strerror or exc}") from exc

    def start(self, group: asyncio.TaskGroup) -> None:
        """From now on every connection is a task of `group` (stopping the daemon cancels them with the rest)."""
        self._group = group
        for reader, writer in self._early:
            group.create_task(self._client(reader, writer))
        self._early.clear()

    async def close(self) -> None:
        self._group = None
        for _reader, writer in self._early:
            writer.close()
        self._early.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._group is None:  # accepted while the daemon still starts: served once its TaskGroup runs
            self._early.append((reader, writer))
            return
        self._group.create_task(self._client(reader, writer))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: at most MAX_CLIENTS at once (the oldest still silent one makes room, else the new
        one is closed at once), IDLE_TIMEOUT_S for the request line, a bounded line, a checked request."""
        if len(self._clients) >= protocol.MAX_CLIENTS:
            silent = next((w for w, waiting in self._clients.items() if waiting), None)
            if silent is None:
                writer.close()
                return
            self._clients.pop(silent)
            silent.close()
        self._clients[writer] = True
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # provd is stopping: this connection's task ends here, quietly, as the TaskGroup asked
        except Exception:  # noqa: BLE001 - in the daemon's TaskGroup: a bug in one connection must not end it
            _log.exception("unexpected error on a control connection; the daemon keeps serving")
        finally:
            self._clients.pop(writer, None)
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(protocol.IDLE_TIMEOUT_S):
                line = await reader.readline()
        except TimeoutError:
            await _reply(writer, protocol.ErrorEvent(f"no request line within {protocol.IDLE_TIMEOUT_S:g} s"))
            return
        except ValueError:  # asyncio's LimitOverrunError, as readline() raises it
            await _reply(writer, protocol.ErrorEvent(f"request line over {self._line_limit} bytes"))
            return
        self._clients[writer] = False
        if not line.endswith(b"\n"):
            if line:
                await _reply(writer, protocol.ErrorEvent("incomplete request line"))
            return
        try:
            request = protocol.parse_request(line, allow_file_urls=self._file_urls_allowed(writer))
        except ControlError as exc:
            await _reply(writer, protocol.ErrorEvent(str(exc)))
            return
        try:
            await self._command(request, writer)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable store: answered, serving on
            _log.exception("unexpected error answering %s", request.cmd)
            await _reply(writer, protocol.ErrorEvent(str(exc) if isinstance(exc, ProvdError) else
                                                     f"internal error: {type(exc).__name__}"))

    def _file_urls_allowed(self, writer: asyncio.StreamWriter) -> bool:
        """`file:` URLs make the root daemon read a local file: only for a root peer (SO_PEERCRED), or when
        control.allow_file_urls says every member of the socket's group may."""
        if self._allow_file_urls:
            return True
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        creds: bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == 0)

    async def _command(self, request: protocol.Request, writer: asyncio.StreamWriter) -> None:
        def send(message: protocol.Answer) -> None:
            if not writer.is_closing():
                writer.write(protocol.encode(message))

        _log.debug("control socket: %s", request.cmd)
        if isinstance(request, protocol.StatusRequest):
            send(self._service.status())
        elif isinstance(request, protocol.CheckSyncRequest):
            decision = self._service.check_sync(request.data, (request.source, request.port))
            send(protocol.CheckSyncAnswer(decision.status, decision.reason, decision.response))
        else:  # queued: start, apply, rollback, confirm
            done = asyncio.Event()

            def listener(event: protocol.Event) -> None:
                send(event)
                if isinstance(event, protocol.FINAL_EVENTS):
                    done.set()

            if isinstance(request, protocol.StartRequest):
                queued = RunRequest(Trigger.CLI, url=request.url, dry_run=request.dry_run, force=request.force,
                                    listeners=[listener])
            elif isinstance(request, protocol.ApplyRequest):
                queued = RunRequest(Trigger.APPLY, apply=request, listeners=[listener])
            elif isinstance(request, protocol.ConfirmRequest):
                queued = RunRequest(Trigger.CLI, confirm=True, listeners=[listener])
            else:
                queued = RunRequest(Trigger.ROLLBACK, rollback=request.generation, listeners=[listener])
            self._service.request(queued)
            send(protocol.QueuedEvent(self._service.busy()))
            while not done.is_set():  # a heartbeat, so a client can tell a busy daemon from a stopped one
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(protocol.HEARTBEAT_S):
                        await done.wait()
                if not done.is_set():
                    send(protocol.AliveEvent())
        async with asyncio.timeout(protocol.IDLE_TIMEOUT_S):  # a client that never reads is dropped
            await writer.drain()


async def _reply(writer: asyncio.StreamWriter, answer: protocol.ErrorEvent) -> None:
    """A refusal, sent before the connection is closed; a peer that does not read it is not waited for."""
    writer.write(protocol.encode(answer))
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1.0):
            await writer.drain()
