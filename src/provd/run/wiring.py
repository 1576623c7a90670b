"""The real adapters behind the ports (`provd.ports`): what a run reaches outside itself, wired here, above
the adapters, so that the Protocols below them import none. Imported lazily: `provd apply` never runs
and stays free of asyncio and ssl.
"""

from __future__ import annotations

from provd.ports import Ports, SystemClock


def real_ports() -> Ports:
    """The interfaces, DHCP, NTP, multicast and HTTP adapters, and the system clock."""
    from provd.sources import dhcp6, dhcp_inform, multicast, netif, ntp
    from provd.transport.http import HttpClient

    return Ports(clock=SystemClock(), interfaces=netif, dhcp=dhcp_inform, dhcp6=dhcp6, ntp=ntp,
                 multicast=multicast, http=HttpClient)
