"""IPv6 addresses as the kernel lists them (/proc/net/if_inet6), and which of them a source uses. Pure.

Each line: address (32 hex digits), interface index, prefix length, scope, flags (all hex), name. An
address still in duplicate address detection (IFA_F_TENTATIVE) or that failed it (IFA_F_DADFAILED) cannot
be bound yet and is left out; a deprecated one still works and stays.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

_TENTATIVE = 0x40
_DADFAILED = 0x08


class Ipv6Address(NamedTuple):
    address: str  # compressed form, no zone
    prefix: int
    link_local: bool  # fe80::/10: needs the interface as its scope

    @property
    def is_global(self) -> bool:
        """What docs/design.md §11 calls a global address: any usable address that is not link-local (ULAs
        included: a phone LAN numbered from fd00::/8 provisions the same)."""
        return not self.link_local and not ipaddress.IPv6Address(self.address).is_loopback


def parse_if_inet6(text: str, interface: str) -> tuple[Ipv6Address, ...]:
    """The usable addresses of `interface`, link-local ones last; malformed lines are skipped."""
    found: list[Ipv6Address] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != interface:
            continue
        try:
            raw = bytes.fromhex(fields[0])
            prefix, flags = int(fields[2], 16), int(fields[4], 16)
        except ValueError:
            continue
        if len(raw) != 16 or flags & (_TENTATIVE | _DADFAILED):
            continue
        address = ipaddress.IPv6Address(raw)
        found.append(Ipv6Address(str(address), prefix, address.is_link_local))
    return tuple(sorted(found, key=lambda a: a.link_local))


def global_address(addresses: tuple[Ipv6Address, ...]) -> str | None:
    return next((a.address for a in addresses if a.is_global), None)


def link_local_address(addresses: tuple[Ipv6Address, ...]) -> str | None:
    return next((a.address for a in addresses if a.link_local), None)
