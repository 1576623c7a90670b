"""What the kernel says about the phone's interface: up or not, its IPv4 address (SIOCGIF* ioctls), its IPv6
addresses (/proc/net/if_inet6, the kernel's own list) and its index (for IPv6 scope ids and multicast)."""

from __future__ import annotations

import fcntl
import socket
import struct

from provd.core.netaddr import Ipv6Address, parse_if_inet6

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
IF_INET6 = "/proc/net/if_inet6"


def _ioctl(interface: str, request: int) -> bytes | None:
    name = interface.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name))
        except OSError:
            return None


def is_up(interface: str) -> bool:
    result = _ioctl(interface, _SIOCGIFFLAGS)
    return result is not None and bool(struct.unpack("H", result[16:18])[0] & _IFF_UP)


def ipv4_address(interface: str) -> str | None:
    result = _ioctl(interface, _SIOCGIFADDR)
    return socket.inet_ntoa(result[20:24]) if result is not None else None


def ipv6_addresses(interface: str) -> tuple[Ipv6Address, ...]:
    """The interface's usable IPv6 addresses (not tentative, not failed DAD); none without IPv6."""
    try:
        with open(IF_INET6, encoding="ascii") as fh:
            text = fh.read()
    except OSError:  # IPv6 disabled in the kernel: no such file
        return ()
    return parse_if_inet6(text, interface)


def index(interface: str) -> int:
    """The interface index (0 when there is no such interface)."""
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        return 0
