"""The check-sync door (docs/design.md §6, §7) and its UDP listener (`sip.listen`). Both doors, the listener
and `provd check-sync` through the control socket, come to one `CheckSyncDoor`: one handler (one transaction
cache), every decision logged (a flood costs at most a line a second per sender, core/floods), answer
first, then queue what core/triggers says the decision asks for.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import cast

from provd import log
from provd.core import floods
from provd.core.checksync import CheckSyncHandler, Decision
from provd.core.triggers import RunRequest, check_sync_request
from provd.errors import ConfigError
from provd.settings.phone import PhoneSettings

_log = log.get(__name__)


class CheckSyncDoor:
    def __init__(self, settings: PhoneSettings, request: Callable[[RunRequest], object]) -> None:
        self.settings = settings
        self._request = request
        self._handler = CheckSyncHandler(settings.catalog.sections)
        self._floods = floods.FloodLimiter()  # check-sync decisions: one line per second per sender
        self._flood_timer: asyncio.TimerHandle | None = None

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision:
        """A NOTIFY from `source`: the decision (with the response to send); its action queued."""
        policy = self.settings.check_sync_policy()
        decision = self._handler.handle(data, source=source, policy=policy, now=time.monotonic())
        self._log_decision(decision, source)
        queued = check_sync_request(decision)
        if queued is not None:
            self._request(queued)
        return decision

    def close(self) -> None:
        if self._flood_timer is not None:
            self._flood_timer.cancel()
            self._flood_timer = None

    def _log_decision(self, decision: Decision, source: tuple[str, int]) -> None:
        """Every decision is logged, but a flood from one sender costs at most one line a second (the rest at
        debug, and counted into a summary)."""
        answer = f"answered {decision.status}" if decision.status is not None else "not answered"
        line = f"check-sync from {source[0]}:{source[1]} (event {decision.event or '-'}): {answer}: {decision.reason}"
        admission = self._floods.admit(source[0], time.monotonic())
        if not admission.log:
            _log.debug("%s", line)
            self._arm_flood_timer()
            return
        if admission.suppressed:
            line += f" ({admission.suppressed} more NOTIFYs from {admission.sender} suppressed)"
        _log.info("%s", line)

    def _arm_flood_timer(self) -> None:
        due = self._floods.next_flush()
        if self._flood_timer is None and due is not None:
            loop = asyncio.get_running_loop()  # loop.time() is time.monotonic(), the limiter's clock
            self._flood_timer = loop.call_at(due, self._flush_floods)

    def _flush_floods(self) -> None:
        self._flood_timer = None
        for summary in self._floods.flush(time.monotonic()):
            _log.info("%d more NOTIFYs from %s suppressed", summary.suppressed, summary.sender)
        self._arm_flood_timer()


async def open_listener(listen: str, door: CheckSyncDoor) -> asyncio.DatagramTransport:
    """The UDP socket at `listen` (`HOST:PORT`), each datagram handed to `door`, its response sent back.

    Raises:
        ConfigError: `listen` cannot be bound.
    """
    host, _, port = listen.rpartition(":")
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", int(port)))
    except (OSError, ValueError) as exc:
        sock.close()
        raise ConfigError(f"sip.listen {listen}: cannot listen: {getattr(exc, 'strerror', None) or exc}") \
            from exc
    sock.setblocking(False)
    transport, _ = await loop.create_datagram_endpoint(lambda: _SipProtocol(door), sock=sock)
    return transport


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, door: CheckSyncDoor) -> None:
        self._door = door
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a subclass of asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            decision = self._door.check_sync(data, (str(addr[0]), int(addr[1])))
        except Exception:  # noqa: BLE001 - one bad datagram must not deafen the listener
            _log.exception("unexpected error handling a datagram from %s", addr[0])
            return
        if decision.response is not None and self._transport is not None:
            self._transport.sendto(decision.response, addr)
