"""SIP multicast SUBSCRIBE on the wire (docs/design.md §6): one UDP socket on the interface's address and
`multicast.local_port`, `IP_MULTICAST_IF` set (without a default route sending to 224.0.1.75 fails), TTL 1,
no loopback. Identical retransmits at 0, 0.5, 1.5, 3.5 s; the window closes at `multicast.timeout_s`. Each
datagram is judged by `core.pnp`; NOTIFYs are answered to the packet's source address (not the Via: PnP
servers often copy the phone's own Via).
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

from provd.core import pnp, sip
from provd.errors import MulticastUnavailable
from provd.ports import PnpOutcome  # the value of the port


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, call_id: str, mac: str, found: asyncio.Future[tuple[str, str]], seen: list[str]) -> None:
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

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.transport is None:
            return
        cached = self._answered.get(data)
        if cached is not None:
            self.transport.sendto(cached, addr)
            return
        judged = pnp.judge(data, call_id=self._call_id, mac=self._mac)
        self._seen.append(f"{addr[0]}:{addr[1]}: {judged.detail}")
        if judged.request is not None and judged.verdict is not pnp.Verdict.IGNORE:
            status = 200 if judged.verdict is pnp.Verdict.URL or judged.status == 200 else judged.status
            answer = sip.response(judged.request, status, to_tag=self._tag)
            self._answered[data] = answer
            self.transport.sendto(answer, addr)
        if judged.verdict is pnp.Verdict.URL and judged.url and not self._found.done():
            self._found.set_result((judged.url, f"{judged.detail} from {addr[0]}:{addr[1]}"))

    def error_received(self, exc: Exception) -> None:
        self._seen.append(f"socket error: {exc}")


async def lookup(*, local_ip: str, mac: str, local_port: int, group: str, port: int, window_s: float,
                 vendor: str, model: str, firmware: str, user_agent: str) -> PnpOutcome:
    """Send the SUBSCRIBE and wait for a NOTIFY with a URL until the window closes.

    Raises:
        MulticastUnavailable: the socket could not be set up (port taken, no such address).
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        sock.bind((local_ip, local_port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise MulticastUnavailable(f"cannot use UDP {local_ip}:{local_port}: {exc}") from exc
    subscribe = pnp.build_subscribe(mac=mac, local_ip=local_ip, local_port=local_port, vendor=vendor, model=model,
                                    firmware=firmware, user_agent=user_agent)
    found: asyncio.Future[tuple[str, str]] = loop.create_future()
    seen: list[str] = []
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(subscribe.call_id, mac, found, seen), sock=sock)
    start = loop.time()

    async def send() -> None:
        for at in pnp.RETRANSMITS:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            transport.sendto(subscribe.data, (group, port))

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(window_s):
            url, detail = await found
        return PnpOutcome(url, detail, seen)
    except TimeoutError:
        return PnpOutcome(None, f"no NOTIFY with a URL within {window_s:g} s", seen)
    finally:
        sender.cancel()
        # The socket stays until the window closes, answering a retransmitted NOTIFY whose 200 got lost.
        loop.call_at(start + window_s, transport.close)
