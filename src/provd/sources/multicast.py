"""SIP multicast SUBSCRIBE on the wire (docs/design.md §6, §11): one UDP socket per IP family the interface has,
each on the interface's address and `multicast.local_port`. IPv4: `IP_MULTICAST_IF` set (without a default
route sending to 224.0.1.75 fails), TTL 1, no loopback. IPv6: `IPV6_MULTICAST_IF` = the interface index (a
link-scope group means nothing without it), hop limit 1, no loopback, `IPV6_V6ONLY` (the IPv4 socket owns
IPv4). Identical retransmits at 0, 0.5, 1.5, 3.5 s on every socket; the window closes at `multicast.timeout_s`.
Each datagram is judged by `core.pnp`; NOTIFYs are answered on the socket they came in on, to the packet's
source address (not the Via: PnP servers often copy the phone's own Via). The first URL on either socket wins.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import cast

from provd.core import pnp, sip
from provd.errors import MulticastUnavailable
from provd.model import Family
from provd.ports import PnpOutcome  # the value of the port

_Found = asyncio.Future[tuple[str, str, Family]]


def _peer(addr: tuple[str | object, ...]) -> str:
    host = str(addr[0])
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, family: Family, call_id: str, mac: str, found: _Found, seen: list[str]) -> None:
        self._family = family
        self._call_id = call_id
        self._mac = mac
        self._found = found
        self._seen = seen
        self._tag = sip.new_tag()
        self._answered: dict[bytes, bytes] = {}  # a retransmitted NOTIFY gets the same answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a subclass of asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self.transport is None:
            return
        cached = self._answered.get(data)
        if cached is not None:
            self.transport.sendto(cached, addr)
            return
        judged = pnp.judge(data, call_id=self._call_id, mac=self._mac)
        self._seen.append(f"{_peer(addr)}: {judged.detail}")
        if judged.request is not None and judged.verdict is not pnp.Verdict.IGNORE:
            status = 200 if judged.verdict is pnp.Verdict.URL or judged.status == 200 else judged.status
            answer = sip.response(judged.request, status, to_tag=self._tag)
            self._answered[data] = answer
            self.transport.sendto(answer, addr)  # the full source address: an IPv6 one keeps its scope id
        if judged.verdict is pnp.Verdict.URL and judged.url and not self._found.done():
            self._found.set_result((judged.url, f"{judged.detail} from {_peer(addr)}", self._family))

    def error_received(self, exc: Exception) -> None:
        self._seen.append(f"{self._family.value} socket error: {exc}")


@dataclass(frozen=True)
class _Channel:
    """One family's socket, what it sends, and where."""

    family: Family
    sock: socket.socket
    subscribe: pnp.Subscribe
    destination: tuple[str, int] | tuple[str, int, int, int]


def _socket4(local_ip: str, local_port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.bind((local_ip, local_port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _socket6(local_ip6: str, index: int, local_port: int) -> socket.socket:
    # A link-local source needs its scope (the interface) in the bind; a global one must not carry it.
    scope = index if ipaddress.IPv6Address(local_ip6).is_link_local else 0
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.bind((local_ip6, local_port, 0, scope))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _channels(*, local_ip: str, local_ip6: str, index: int, local_port: int, group: str, group6: str, port: int,
              build: dict[str, str]) -> tuple[list[_Channel], list[str]]:
    """A channel per family the interface has, and a note for each that could not be set up."""
    channels: list[_Channel] = []
    problems: list[str] = []
    if local_ip:
        try:
            sock = _socket4(local_ip, local_port)
        except OSError as exc:
            problems.append(f"cannot use UDP {local_ip}:{local_port}: {exc}")
        else:
            channels.append(_Channel(Family.IPV4, sock, pnp.build_subscribe(local_ip=local_ip, local_port=local_port,
                                                                          group=group, **build), (group, port)))
    if local_ip6:
        address = local_ip6.split("%", 1)[0]  # the scope is `index`, not a name in the string
        try:
            ipaddress.IPv6Address(address)
            if index <= 0:  # a link-scope group names no link without it
                raise ValueError("no interface index")
            if not group6:
                raise ValueError("no IPv6 group to send to")
            sock = _socket6(address, index, local_port)
        except (OSError, ValueError) as exc:
            problems.append(f"cannot use UDP [{address}]:{local_port} on interface {index}: {exc}")
        else:
            # A separate Call-ID (and tag, branch) per family: one SUBSCRIBE with the same Call-ID, From tag and
            # CSeq but another branch is a merged request (RFC 3261 §8.2.2.2), which a dual-stack server may
            # refuse with 482; two independent subscriptions are each answered in full.
            channels.append(_Channel(Family.IPV6, sock, pnp.build_subscribe(local_ip=address, local_port=local_port,
                                                                          group=group6, **build),
                                     (group6, port, 0, index)))
    return channels, problems


async def lookup(*, local_ip: str, mac: str, local_port: int, group: str, port: int, window_s: float,
                 vendor: str, model: str, firmware: str, user_agent: str, local_ip6: str = "", index: int = 0,
                 group6: str = "") -> PnpOutcome:
    """Send the SUBSCRIBE on each family the interface has (`local_ip` IPv4, `local_ip6` a global or link-local
    IPv6 address on interface `index`; "" = none) and wait for a NOTIFY with a URL on any until the window closes.
    A family whose socket cannot be set up is noted in `seen` while the other goes on.

    Raises:
        MulticastUnavailable: no socket could be set up (port taken, no such address, no address at all).
    """
    loop = asyncio.get_running_loop()
    build = {"mac": mac, "vendor": vendor, "model": model, "firmware": firmware, "user_agent": user_agent}
    channels, problems = _channels(local_ip=local_ip, local_ip6=local_ip6, index=index, local_port=local_port,
                                   group=group, group6=group6, port=port, build=build)
    if not channels:
        raise MulticastUnavailable("; ".join(problems) or "the interface has no address to send the SUBSCRIBE from")
    found: _Found = loop.create_future()
    seen: list[str] = list(problems)
    transports: list[tuple[asyncio.DatagramTransport, _Channel]] = []
    try:
        for channel in channels:
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Protocol, channel.family, channel.subscribe.call_id, mac, found, seen),
                sock=channel.sock)
            transports.append((transport, channel))
    except BaseException:
        for transport, _ in transports:
            transport.close()
        for channel in channels[len(transports):]:
            channel.sock.close()
        raise
    start = loop.time()

    async def send() -> None:
        for at in pnp.RETRANSMITS:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            for transport, channel in transports:
                transport.sendto(channel.subscribe.data, channel.destination)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(window_s):
            url, detail, family = await found
        return PnpOutcome(url, detail, seen, family)
    except TimeoutError:
        return PnpOutcome(None, f"no NOTIFY with a URL within {window_s:g} s", seen)
    finally:
        sender.cancel()
        # The sockets stay until the window closes, answering a retransmitted NOTIFY whose 200 got lost.
        for transport, _ in transports:
            loop.call_at(start + window_s, transport.close)
