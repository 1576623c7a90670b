"""Typed fakes of the run's ports (provd.ports): a virtual clock, the interface, DHCP, NTP, SIP multicast and
an HTTP client serving a dict of URLs. mypy checks each against its Protocol (the block at the end and
`World.ports`). They do no I/O and never sleep for real: what happens first is decided by the fake clock's
deadlines or by asyncio.Events, so the in-process tests run in milliseconds.

The store is not faked: a real Store on a tmp_path (SQLite) takes milliseconds, and the tests assert on its
generations and runs, which a fake would have to re-implement.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from provd.core.clock import NtpSample
from provd.core.dhcp import DhcpAnswer
from provd.core.dhcp6 import Dhcp6Answer
from provd.core.netaddr import Ipv6Address
from provd.core.urls import check_url, redact
from provd.errors import (
    DhcpUnavailable,
    FetchError,
    FetchStatusError,
    FetchTooLarge,
    MulticastUnavailable,
    NtpUnavailable,
)
from provd.model import Family, Outcome, Progress, RunReport, Trigger, quiet
from provd.ports import HttpOptions, HttpResponse, PnpOutcome, Ports, RunBudget, Validators
from provd.settings.phone import PhoneSettings, now_iso

WALL = 1_800_000_000.0  # 2027-01-15: after provd's build date, so the clock verdict can be valid

_SETTLE = 32  # loop turns the clock lets pass before it jumps: every task that is ready runs first


class FakeClock:
    """Virtual time. `sleep` waits until the clock reaches its deadline; the clock jumps to the earliest
    deadline once the tasks that are ready have run (a few turns of the loop: the fakes do no I/O), so
    sleepers wake in deadline order and no real time passes."""

    def __init__(self, *, start: float = 0.0, wall: float = WALL) -> None:
        self._now = start
        self._wall_offset = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.slept: list[float] = []  # every sleep asked for, in order

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def set_wall(self, wall: float) -> None:
        self._wall_offset = wall - self._now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), woken))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        await woken

    async def _drive(self) -> None:
        while True:
            for _ in range(_SETTLE):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                return
            at, _, woken = heapq.heappop(self._sleepers)
            self._now = max(self._now, at)
            woken.set_result(None)


class FakeInterfaces:
    """The interface has `address` (IPv4; None: IPv6 only) and the IPv6 addresses `ipv6`; it is up once `clock`
    reaches `up_at` (never, with up_at=None)."""

    def __init__(self, address: str | None = "10.0.0.50", *, clock: FakeClock | None = None,
                 up_at: float | None = 0.0, ipv6: tuple[str, ...] = ()) -> None:
        self.address = address
        self.ipv6 = tuple(Ipv6Address(a, 64, a.startswith("fe80:")) for a in ipv6)
        self.clock = clock
        self.up_at = up_at
        self.checks = 0

    def is_up(self, interface: str) -> bool:
        self.checks += 1
        if self.up_at is None:
            return False
        return self.clock is None or self.clock.monotonic() >= self.up_at

    def ipv4_address(self, interface: str) -> str | None:
        return self.address if self.is_up(interface) else None

    def ipv6_addresses(self, interface: str) -> tuple[Ipv6Address, ...]:
        return self.ipv6 if self.is_up(interface) else ()

    def index(self, interface: str) -> int:
        return 2


class FakeDhcp6:
    """Answers every Information-Request with `answer` after `delay` s on `clock`, or raises `error`."""

    def __init__(self, answer: Dhcp6Answer | None = None, *, detail: str | None = None,
                 error: DhcpUnavailable | None = None, delay: float = 0.0, clock: FakeClock | None = None) -> None:
        self.answer = answer
        self.detail = detail or ("Reply from fe80::1 after 1 tries" if answer else "no Reply after 3 tries")
        self.error = error
        self.delay = delay
        self.clock = clock
        self.informs: list[dict[str, object]] = []

    async def inform(self, *, interface: str, index: int, link_local: str, mac: str, vendor_class: str,
                     enterprise: int, first_wait: float) -> tuple[Dhcp6Answer | None, str]:
        self.informs.append({"interface": interface, "index": index, "link_local": link_local, "mac": mac,
                             "vendor_class": vendor_class, "enterprise": enterprise, "first_wait": first_wait})
        if self.delay and self.clock is not None:
            await self.clock.sleep(self.delay)
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.answer, self.detail


class FakeDhcp:
    """Answers every DHCPINFORM (and a lease file read) with `answer`, after `delay` s on `clock`, or raises
    `error`."""

    def __init__(self, answer: DhcpAnswer | None = None, *, detail: str | None = None,
                 error: DhcpUnavailable | None = None, delay: float = 0.0, clock: FakeClock | None = None) -> None:
        self.delay = delay
        self.clock = clock
        self.answer = answer
        self.detail = detail or ("DHCPACK from 10.0.0.1 after 1 tries" if answer else "no DHCPACK after 3 tries")
        self.error = error
        self.informs: list[dict[str, object]] = []
        self.leases: list[str] = []

    async def inform(self, *, interface: str, address: str, mac: str, vendor_class: str, first_wait: float,
                     ) -> tuple[DhcpAnswer | None, str]:
        self.informs.append({"interface": interface, "address": address, "mac": mac, "vendor_class": vendor_class,
                             "first_wait": first_wait})
        if self.delay and self.clock is not None:
            await self.clock.sleep(self.delay)
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.answer, self.detail

    def read_lease(self, path: str) -> tuple[DhcpAnswer | None, str]:
        self.leases.append(path)
        if self.error is not None:
            raise self.error
        return self.answer, f"lease file {path}" + ("" if self.answer else ": no lease in it")


def good_sample(server: str, *, offset: float = 0.01) -> NtpSample:
    return NtpSample(server=server, mode=4, leap=0, stratum=2, tx_time=WALL, offset=offset)


class FakeNtp:
    """Each server answers from `answers` (a sample, or NtpUnavailable to raise); others per `default`: a
    good sample when True, no answer when False."""

    def __init__(self, answers: dict[str, NtpSample | NtpUnavailable] | None = None, *,
                 default: bool = True) -> None:
        self.answers = answers or {}
        self.default = default
        self.queries: list[str] = []

    async def query(self, server: str, *, timeout: float) -> NtpSample:
        self.queries.append(server)
        await asyncio.sleep(0)
        answer = self.answers.get(server)
        if answer is None:
            answer = good_sample(server) if self.default else NtpUnavailable(f"{server}: no answer")
        if isinstance(answer, NtpUnavailable):
            raise answer
        return answer


class FakeMulticast:
    """The SIP multicast lookup: answers `url` (None: nothing heard in the window) after `delay` seconds on
    `clock`, or once `gate` is set; or raises `error` (a socket that cannot be set up)."""

    def __init__(self, url: str | None = None, *, clock: FakeClock | None = None, delay: float = 0.0,
                 gate: asyncio.Event | None = None, error: MulticastUnavailable | None = None,
                 family: Family = Family.IPV4) -> None:
        self.url = url
        self.family = family  # the family the NOTIFY "came in on"
        self.clock = clock
        self.delay = delay
        self.gate = gate
        self.error = error
        self.lookups: list[dict[str, object]] = []
        self.cancelled = False

    async def lookup(self, *, local_ip: str, mac: str, local_port: int, group: str, port: int, window_s: float,
                     vendor: str, model: str, firmware: str, user_agent: str, local_ip6: str = "", index: int = 0,
                     group6: str = "") -> PnpOutcome:
        self.lookups.append({"local_ip": local_ip, "mac": mac, "group": group, "port": port, "model": model,
                             "local_ip6": local_ip6, "index": index, "group6": group6})
        if self.error is not None:
            raise self.error
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay and self.clock is not None:
                await self.clock.sleep(self.delay)
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.url is None:
            return PnpOutcome(None, f"no NOTIFY with a URL within {window_s:g} s")
        if self.family is Family.IPV6:
            return PnpOutcome(self.url, "NOTIFY with a URL from [2001:db8::1]:5060", ["[2001:db8::1]:5060: a URL"],
                              Family.IPV6)
        return PnpOutcome(self.url, "NOTIFY with a URL from 10.0.0.1:5060", ["10.0.0.1:5060: a URL"], Family.IPV4)


@dataclass
class Answer:
    """What the fake server answers for one URL: `status` (200 with `body`, or an error status), `etag`
    (a conditional GET with it gets a 304), `error` to raise instead; after `delay` seconds on the web's
    clock, or once `gate` is set."""

    body: bytes = b""
    status: int = 200
    etag: str | None = None
    error: FetchError | None = None
    delay: float = 0.0
    gate: asyncio.Event | None = None


Route = bytes | str | int | FetchError | Answer


@dataclass
class Request:
    url: str
    validators: Validators | None


@dataclass
class FakeWeb:
    """The HTTP servers of a test: `routes` maps a URL (markers replaced) to what it answers; any other URL
    is a 404. `client` is the port's factory (Ports.http)."""

    routes: dict[str, Route] = field(default_factory=dict)
    clock: FakeClock | None = None
    requests: list[Request] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # requests cancelled while waiting for their answer
    settings: list[HttpOptions] = field(default_factory=list)  # one per client made

    def client(self, settings: HttpOptions) -> FakeHttpClient:
        self.settings.append(settings)
        return FakeHttpClient(self, settings)


class FakeHttpClient:
    """Like provd.transport.http.HttpClient: the URL is checked first, the caps hold, errors are provd's
    FetchError subclasses."""

    def __init__(self, web: FakeWeb, settings: HttpOptions) -> None:
        self._web = web
        self._settings = settings
        self.entered = False
        self.closed = False

    async def __aenter__(self) -> FakeHttpClient:
        self.entered = True
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.closed = True

    async def post_json(self, url: str, body: bytes, *, timeout_s: float) -> int:
        """Result reports are not part of the fake web: runs never POST."""
        raise AssertionError(f"unexpected POST to {redact(url)}")

    async def get(self, url: str, *, validators: Validators | None, budget: RunBudget) -> HttpResponse:
        assert self.entered and not self.closed, "get outside `async with`"
        shown = redact(url)
        check_url(url)
        self._web.requests.append(Request(url, validators))
        route = self._web.routes.get(url, 404)
        answer = route if isinstance(route, Answer) else \
            Answer(error=route) if isinstance(route, FetchError) else \
            Answer(status=route) if isinstance(route, int) else \
            Answer(body=route.encode() if isinstance(route, str) else route)
        try:
            if answer.gate is not None:
                await answer.gate.wait()
            if answer.delay and self._web.clock is not None:
                await self._web.clock.sleep(answer.delay)
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._web.cancelled.append(url)
            raise
        if answer.error is not None:
            raise answer.error
        if answer.status != 200:
            raise FetchStatusError(f"HTTP {answer.status}", url=shown, status=answer.status)
        if validators is not None and answer.etag is not None and validators.etag == answer.etag:
            return HttpResponse(url, 304, b"", answer.etag, None)
        cap = self._settings.max_file_bytes
        if len(answer.body) > cap:
            raise FetchTooLarge(f"file is {len(answer.body)} bytes, over http.max_file_bytes ({cap})", url=shown)
        budget.take(len(answer.body), url=shown)
        return HttpResponse(url, 200, answer.body, answer.etag, None)


@dataclass
class World:
    """One test's outside world; `ports()` hands it to a run."""

    clock: FakeClock = field(default_factory=FakeClock)
    interfaces: FakeInterfaces = field(default_factory=FakeInterfaces)
    dhcp: FakeDhcp = field(default_factory=FakeDhcp)
    dhcp6: FakeDhcp6 = field(default_factory=FakeDhcp6)
    ntp: FakeNtp = field(default_factory=FakeNtp)
    multicast: FakeMulticast = field(default_factory=FakeMulticast)
    web: FakeWeb = field(default_factory=FakeWeb)

    def __post_init__(self) -> None:  # the fakes that wait on the clock wait on this one
        self.interfaces.clock = self.interfaces.clock or self.clock
        self.multicast.clock = self.multicast.clock or self.clock
        self.dhcp6.clock = self.dhcp6.clock or self.clock
        self.dhcp.clock = self.dhcp.clock or self.clock
        self.web.clock = self.web.clock or self.clock

    def ports(self) -> Ports:
        return Ports(clock=self.clock, interfaces=self.interfaces, dhcp=self.dhcp, dhcp6=self.dhcp6, ntp=self.ntp,
                     multicast=self.multicast, http=self.web.client)


# --- the daemon's ports: the run it calls, the service manager it tells -----------------------------------

@dataclass(frozen=True)
class Call:
    trigger: Trigger
    url: str | None
    restore: bytes | None
    dry_run: bool
    reboot: bool


@dataclass
class FakeRun:
    """provision.run as the daemon calls it. Each call reports `outcomes` in turn (then APPLIED); with `hold`
    set, a call waits for `release()` before it reports."""

    outcomes: list[Outcome] = field(default_factory=list)
    hold: bool = False
    calls: list[Call] = field(default_factory=list)
    entered: asyncio.Queue[Call] = field(default_factory=asyncio.Queue)
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, phone: PhoneSettings, *, trigger: Trigger, url: str | None = None,
                       restore: bytes | None = None, dry_run: bool = False, reboot: bool = False,
                       force: bool = False, progress: Progress = quiet) -> RunReport:
        call = Call(trigger, url, restore, dry_run, reboot)
        self.calls.append(call)
        progress(f"fetch {url}")
        self.entered.put_nowait(call)
        if self.hold:
            await self._gate.wait()
            self._gate.clear()
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.APPLIED
        return RunReport(trigger=trigger, started=now_iso(), outcome=outcome, url=url, finished=now_iso())

    def release(self) -> None:
        self._gate.set()

    async def next_call(self) -> Call:
        return await asyncio.wait_for(self.entered.get(), 5.0)


@dataclass
class FakeNotifier:
    """The service manager: what the daemon told it, and an event per message it waits for."""

    sent: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, *fields: str) -> None:
        self.sent += fields
        if "READY=1" in fields:
            self.ready.set()


class FixedDraw(random.Random):
    """The daemon's random draws (retry jitter, schedule delay), all one value."""

    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


if TYPE_CHECKING:  # each fake is the port it stands for (mypy --strict checks these assignments)
    from provd import ports
    from provd.service.runner import Notifier, RunFunction

    _clock: ports.Clock = FakeClock()
    _run: RunFunction = FakeRun()
    _notifier: Notifier = FakeNotifier()
    _interfaces: ports.Interfaces = FakeInterfaces()
    _dhcp: ports.DhcpAsker = FakeDhcp()
    _dhcp6: ports.Dhcp6Asker = FakeDhcp6()
    _ntp: ports.NtpQuerier = FakeNtp()
    _multicast: ports.MulticastLookup = FakeMulticast()
    _http: ports.HttpClient = FakeHttpClient(FakeWeb(), HttpOptions(1.0, 1, 1, "t"))
    _factory: ports.HttpClientFactory = FakeWeb().client
