"""The check-sync door (docs/design.md §6, §7) and its UDP listener (`sip.listen`). Both doors, the listener
and `provd check-sync` through the control socket, come to one `CheckSyncDoor`: one handler (one transaction
cache), every decision logged (a flood costs at most a line a second per sender, core/floods), answer
first, then queue what core/triggers says the decision asks for. The listener takes either family: `[::]` is
one dual-stack socket (IPv4 senders arrive IPv4-mapped; core/checksync compares and names them as IPv4).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import cast

from provd import log
from provd.config import split_listen
from provd.core import floods
from provd.core.checksync import CheckSyncHandler, Decision, Policy, parse_allowlist, sender_label, sender_text
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
        self._warned: set[str] = set()  # allowlist entries already reported as ignored

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision:
        """A NOTIFY from `source`: the decision (with the response to send); its action queued."""
        policy = self.settings.check_sync_policy()
        self._report_ignored(policy)
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

    def review_allowlist(self) -> None:
        """Warn now about the stored allowlist's entries that match nobody (the daemon does at start)."""
        self._report_ignored(self.settings.check_sync_policy())

    def _report_ignored(self, policy: Policy) -> None:
        """An allowlist entry that is no address or network matches nobody: said once per entry, as a warning,
        so that an administrator sees why a sender they meant to allow gets 403."""
        for entry in parse_allowlist(policy.allowlist).ignored:
            if entry not in self._warned:
                self._warned.add(entry)
                _log.warning("provisioning/sip/allowlist entry %r is not an IP address or network: it matches no "
                             "sender", entry)

    def _log_decision(self, decision: Decision, source: tuple[str, int]) -> None:
        """Every decision is logged, but a flood from one sender costs at most one line a second (the rest at
        debug, and counted into a summary). The sender is named and counted in its normal form, so an IPv4
        sender on a dual-stack socket is `192.0.2.7:5060`, not `::ffff:192.0.2.7`, and IPv6 is `[2001:db8::1]:5060`."""
        answer = f"answered {decision.status}" if decision.status is not None else "not answered"
        line = (f"check-sync from {sender_label(*source)} (event {decision.event or '-'}): {answer}: "
                f"{decision.reason}")
        admission = self._floods.admit(sender_text(source[0]), time.monotonic())
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
    """The UDP socket at `listen` (`HOST:PORT`, IPv6 in brackets), each datagram handed to `door`, its response
    sent back on the same socket to the datagram's source.

    Raises:
        ConfigError: `listen` is malformed, does not resolve, or cannot be bound.
    """
    host, port = split_listen("sip.listen", listen)
    loop = asyncio.get_running_loop()
    try:  # a literal (zone included: `fe80::1%eth0` gets its scope id) or a name such as localhost
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"sip.listen {listen}: cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") \
            from exc
    family, _, _, _, address = found[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # `[::]` takes both families on one socket (RFC 3493 §5.3), whatever net.ipv6.bindv6only says;
            # IPv4 senders then arrive as ::ffff:a.b.c.d and are answered through the same socket.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"sip.listen {listen}: cannot listen: {exc.strerror or exc}") from exc
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
        source = (_host(addr), int(addr[1]))
        try:
            decision = self._door.check_sync(data, source)
        except Exception:  # noqa: BLE001 - one bad datagram must not deafen the listener
            _log.exception("unexpected error handling a datagram from %s", sender_label(*source))
            return
        if decision.response is not None and self._transport is not None:
            self._transport.sendto(decision.response, addr)  # as received: IPv6 keeps its flow info and scope


def _host(addr: tuple[object, ...]) -> str:
    """The sender's host as text; a link-local IPv6 sender with its zone (`fe80::1%eth0`): Linux gives the scope
    only as the sockaddr's fourth field, and the log should say which link the sender is on."""
    host = str(addr[0])
    scope = addr[3] if len(addr) >= 4 else 0
    if isinstance(scope, int) and scope and "%" not in host:
        try:
            return f"{host}%{socket.if_indextoname(scope)}"
        except OSError:  # the interface went away meanwhile
            return f"{host}%{scope}"
    return host
