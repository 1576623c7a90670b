"""What the kernel says about the phone's interface: up or not, and its IPv4 address (SIOCGIF* ioctls)."""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1


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
