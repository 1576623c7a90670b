"""DHCPv6 as a discovery source (docs/design.md §11): an Information-Request from the link-local address,
UDP 546 → ff02::1:2:547 on the interface, in-process with asyncio (the codec is `core.dhcp6`, pure; no scapy,
no child process). Owns the socket, the clock and the random draws of the exchange; decides nothing itself.

Three transmissions with the same transaction id, RT per RFC 8415 §15 (IRT = `first_wait`, doubled, ±10 %),
Elapsed Time counted from the first; the first Reply `core.dhcp6.parse_reply` accepts wins. RFC 8415's initial
random delay (up to INF_MAX_DELAY, 1 s) is left out: a phone at boot has nobody to desynchronise from but
the other phones that booted with it, and DHCPv4 beside it does not wait either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import random
import re
import secrets
import socket

from provd.core import dhcp6
from provd.core.dhcp6 import Dhcp6Answer
from provd.errors import DhcpUnavailable


class _Exchange(asyncio.DatagramProtocol):
    """Every datagram on the socket goes through `parse_reply`; the first accepted one settles `found`."""

    def __init__(self, xid: int, client_id: bytes, found: asyncio.Future[tuple[Dhcp6Answer, str]]) -> None:
        self._xid = xid
        self._client_id = client_id
        self._found = found
        self.ignored = 0
        self.errors: list[OSError] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        answer = dhcp6.parse_reply(data, xid=self._xid, client_id=self._client_id)
        if answer is None:
            self.ignored += 1
        elif not self._found.done():
            self._found.set_result((answer, str(addr[0])))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.errors.append(exc)


def _socket(interface: str, index: int, address: str) -> socket.socket:
    """Raises: DhcpUnavailable (no such interface, address not on it, no permission for port 546)."""
    if index <= 0:
        raise DhcpUnavailable(f"DHCPv6 on {interface}: no such interface")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # beside a system DHCPv6 client on 546
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)  # link scope: never routed anyway
        sock.bind((address, dhcp6.CLIENT_PORT, 0, index))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise DhcpUnavailable(f"DHCPv6 on {interface}: cannot use UDP [{address}]:{dhcp6.CLIENT_PORT}: "
                              f"{exc.strerror or exc}") from exc
    return sock


def _zoned(host: str, interface: str) -> str:
    """A link-local address with its zone (`fe80::1%veth-cli`): without one it cannot be reached."""
    bare = host.split("%", 1)[0]
    try:
        address = ipaddress.IPv6Address(bare)
    except ValueError:
        return host  # an FQDN from option 56
    return f"{bare}%{interface}" if address.is_link_local else host


async def inform(*, interface: str, index: int, link_local: str, mac: str, vendor_class: str, enterprise: int,
                 first_wait: float) -> tuple[Dhcp6Answer | None, str]:
    """(the first Reply's answer, "Reply from fe80::…%if after N tries"), or (None, "no Reply after 3 tries").
    Link-local NTP servers in the answer get the interface as their zone. Cancel-safe: the socket is closed
    whichever way this ends.

    Raises:
        DhcpUnavailable: the socket cannot be set up or a send fails (no such interface, address not on it).
    """
    digits = re.sub(r"[:\-.\s]", "", mac)
    address = link_local.split("%", 1)[0]
    try:
        mac_bytes = bytes.fromhex(digits)
        client_id = dhcp6.duid_ll(mac_bytes)
        xid = secrets.randbits(24)
        dhcp6.build_information_request(xid=xid, mac=mac_bytes, vendor_class=vendor_class, enterprise=enterprise,
                                        elapsed_cs=0)  # bad parameters fail here, before any socket exists
    except ValueError as exc:
        raise DhcpUnavailable(f"DHCPv6 on {interface}: {exc}") from exc
    loop = asyncio.get_running_loop()
    found: asyncio.Future[tuple[Dhcp6Answer, str]] = loop.create_future()
    exchange = _Exchange(xid, client_id, found)
    sock = _socket(interface, index, address)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: exchange, sock=sock)
    except OSError as exc:
        sock.close()
        raise DhcpUnavailable(f"DHCPv6 on {interface}: {exc}") from exc
    timeouts = dhcp6.retransmission_timeouts(
        first_wait, [random.uniform(-dhcp6.RAND_SPAN, dhcp6.RAND_SPAN) for _ in range(dhcp6.TRANSMISSIONS)])
    destination = (dhcp6.ALL_SERVERS, dhcp6.SERVER_PORT, 0, index)
    try:
        start = loop.time()
        for tries, timeout in enumerate(timeouts, 1):
            packet = dhcp6.build_information_request(xid=xid, mac=mac_bytes, vendor_class=vendor_class,
                                                     enterprise=enterprise,
                                                     elapsed_cs=dhcp6.elapsed_cs(loop.time() - start))
            transport.sendto(packet, destination)
            if exchange.errors:  # the datagram transport hands a failed send to error_received
                error = exchange.errors[0]
                raise DhcpUnavailable(f"DHCPv6 on {interface}: sending to {dhcp6.ALL_SERVERS}: "
                                      f"{error.strerror or error}") from error
            await asyncio.wait([found], timeout=timeout)
            if found.done():
                answer, host = found.result()
                zoned = tuple(_zoned(server, interface) for server in answer.ntp_servers)
                detail = f"Reply from {_zoned(host, interface)} after {tries} tries"
                if exchange.ignored:
                    detail += f" ({exchange.ignored} other datagrams ignored)"
                return dataclasses.replace(answer, ntp_servers=zoned), detail
        detail = f"no Reply after {dhcp6.TRANSMISSIONS} tries"
        if exchange.ignored:
            detail += f" ({exchange.ignored} datagrams that were not our Reply ignored)"
        return None, detail
    finally:
        transport.close()
