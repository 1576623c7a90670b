"""DHCPv6 as a discovery source (docs/design.md §11): an Information-Request from the link-local address,
UDP 546 → ff02::1:2:547 on the interface. PLACEHOLDER (issue 10 foundation): the exchange lands with the
DHCPv6 work."""

from __future__ import annotations

from provd.core.dhcp6 import Dhcp6Answer


async def inform(*, interface: str, index: int, link_local: str, mac: str, vendor_class: str, enterprise: int,
                 first_wait: float) -> tuple[Dhcp6Answer | None, str]:
    """Raises: DhcpUnavailable."""
    raise NotImplementedError
