"""The ports of a run: what discovery, the chain and the run ask of the outside world (the clock, the
interface, DHCP, NTP, SIP multicast, HTTP), as Protocols, with the values that cross them.

No I/O and no heavy import here: `provd.run.wiring.real_ports()` imports the adapters when called, so
`provd apply` (which never runs) stays free of asyncio and ssl. Tests pass typed fakes instead (tests/support/fakes.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self, TypeVar

from provd.core.clock import NtpSample
from provd.core.dhcp import DhcpAnswer
from provd.core.dhcp6 import Dhcp6Answer
from provd.core.netaddr import Ipv6Address
from provd.errors import FetchTooLarge
from provd.model import Family

_T = TypeVar("_T")

# --- the values that cross the HTTP port --------------------------------------------------------------------

@dataclass(frozen=True)
class HttpOptions:
    timeout_s: float
    max_file_bytes: int
    concurrency: int
    user_agent: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class Validators:
    """What a conditional request sends back (docs/design.md §7)."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class HttpResponse:
    url: str  # after redirects (with the credentials that went there): references resolve against it
    status: int  # 200, or 304 when `validators` matched
    body: bytes
    etag: str | None
    last_modified: str | None


class RunBudget:
    """The bytes one run may still download (`http.max_run_bytes`), shared by all its files."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int, *, url: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise FetchTooLarge(f"the run downloaded more than http.max_run_bytes ({self.limit})", url=url)


@dataclass
class PnpOutcome:
    """What the SIP multicast lookup heard (docs/design.md §6)."""

    url: str | None
    detail: str
    seen: list[str] = field(default_factory=list)  # every datagram's verdict, for the report
    family: Family | None = None  # which family's socket the winning NOTIFY came in on


# --- the ports ------------------------------------------------------------------------------------------------

class Clock(Protocol):
    """Monotonic seconds for deadlines, wall time for the clock verdict, and sleeping."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


async def within(clock: Clock, seconds: float, work: Awaitable[_T]) -> _T:
    """`work`'s result, or TimeoutError once `seconds` have passed on `clock` (a test's virtual clock decides
    the timeout as it decides every other wait); `work` is cancelled then. asyncio.timeout would measure
    real time whatever the clock."""
    import asyncio  # only waiting needs it; `provd apply` imports this module without asyncio

    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (task, timer):
            if not waiter.done():
                waiter.cancel()
        await asyncio.gather(task, timer, return_exceptions=True)
    if task.cancelled() and timer.done() and not timer.cancelled():
        raise TimeoutError
    return task.result()


class Interfaces(Protocol):
    """What the kernel says about an interface (provd.sources.netif)."""

    def is_up(self, interface: str) -> bool: ...

    def ipv4_address(self, interface: str) -> str | None: ...

    def ipv6_addresses(self, interface: str) -> tuple[Ipv6Address, ...]: ...

    def index(self, interface: str) -> int: ...


class DhcpAsker(Protocol):
    """A DHCPINFORM, or a dhclient lease file (provd.sources.dhcp_inform). Each returns (the answer or None,
    a detail line) and raises DhcpUnavailable when DHCP cannot be asked at all."""

    async def inform(self, *, interface: str, address: str, mac: str, vendor_class: str, first_wait: float,
                     ) -> tuple[DhcpAnswer | None, str]: ...

    def read_lease(self, path: str) -> tuple[DhcpAnswer | None, str]: ...


class Dhcp6Asker(Protocol):
    """A DHCPv6 Information-Request from the link-local address (provd.sources.dhcp6). Returns (the Reply's
    answer or None when no server answered, a detail line); raises DhcpUnavailable when it cannot be sent."""

    async def inform(self, *, interface: str, index: int, link_local: str, mac: str, vendor_class: str,
                     enterprise: int, first_wait: float) -> tuple[Dhcp6Answer | None, str]: ...


class NtpQuerier(Protocol):
    """One NTP query (provd.sources.ntp); raises NtpUnavailable."""

    async def query(self, server: str, *, timeout: float) -> NtpSample: ...


class MulticastLookup(Protocol):
    """The SIP multicast SUBSCRIBE and its window (provd.sources.multicast), on IPv4 (`local_ip`) and IPv6
    (`local_ip6` on interface `index`, to `group6`) as the interface has them ("" = not that family); raises
    MulticastUnavailable when no socket can be set up."""

    async def lookup(self, *, local_ip: str, mac: str, local_port: int, group: str, port: int, window_s: float,
                     vendor: str, model: str, firmware: str, user_agent: str, local_ip6: str = "", index: int = 0,
                     group6: str = "") -> PnpOutcome: ...


class HttpClient(Protocol):
    """One run's HTTP client (provd.transport.http.HttpClient): entered once, then GETs.

    `get` raises FetchError and its subclasses (FetchStatusError for anything but a 200, or a 304 to
    `validators`)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def get(self, url: str, *, validators: Validators | None, budget: RunBudget) -> HttpResponse: ...

    async def post_json(self, url: str, body: bytes, *, timeout_s: float) -> int:
        """POST a result report (docs/design.md §10); the status, redirects not followed."""
        ...


HttpClientFactory = Callable[[HttpOptions], HttpClient]


class SystemClock:
    """The real clock: time.monotonic, time.time, asyncio.sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        import asyncio  # only a run sleeps; `provd apply` imports this module without asyncio

        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Ports:
    """Everything a run reaches outside itself (the store aside: it is the Settings' own)."""

    clock: Clock
    interfaces: Interfaces
    dhcp: DhcpAsker
    dhcp6: Dhcp6Asker
    ntp: NtpQuerier
    multicast: MulticastLookup
    http: HttpClientFactory

