"""Preconditions (docs/design.md §1 step 1, §6, §11): the interface up with an IPv4 address, or (with
`dhcp6.mode: inform`) a global IPv6 address; then the DHCP step: a DHCPINFORM where the link has IPv4 and a
DHCPv6 Information-Request where it has IPv6 and dhcp6 is on, at the same time (the first answer that
carries a URL wins, the other is cancelled; on an IPv6-only link DHCPv4 is not tried). Their NTP servers
(option 42, options 56/31) come first in the clock check that follows. Until they hold the run waits (1 s
doubling to 15 s) on the injected clock; with a deadline it gives up as PreconditionsNotMet. What they
learn (the addresses, the DHCP answers) goes into discovery's Context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, date, datetime

from provd import BUILD_DATE, log
from provd.core import clock, markers, netaddr
from provd.errors import PreconditionsNotMet, SourceUnavailable
from provd.model import Family
from provd.sources.discovery import Context, DhcpResult, dhcp_candidates

_log = log.get(__name__)


def build_time() -> float:
    return datetime.combine(date.fromisoformat(BUILD_DATE), datetime.min.time(), UTC).timestamp()


async def wait_for_preconditions(ctx: Context, *, deadline: float | None = None, ask_dhcp: bool = True) -> None:
    """Interface up with an address, the DHCP step (unless the URL is known already: discovery is skipped
    then, and NTP uses `ntp.servers`), then a valid clock; waits (1 s doubling to 15 s).

    Raises:
        PreconditionsNotMet: only when `deadline` (monotonic seconds) passes.
    """
    interface = ctx.config.device.interface
    inform6 = ctx.config.dhcp6.mode == "inform"
    wanted = "an IPv4 or a global IPv6 address" if inform6 else "an IPv4 address"
    attempt = 0
    while True:
        if _read_addresses(ctx, inform6):
            break
        attempt = await _wait(ctx, f"interface {interface} is not up with {wanted}", attempt, deadline)
    if ask_dhcp:
        await _ask_dhcp(ctx)
    required = ctx.config.ntp.required
    attempt = 0
    while required:
        verdict = await _check_clock(ctx)
        if verdict.valid:
            _log.debug("time valid: %s", verdict.reason)
            ctx.progress(f"time valid: {verdict.reason}")
            return
        attempt = await _wait(ctx, f"time not valid: {verdict.reason}", attempt, deadline)


def _read_addresses(ctx: Context, inform6: bool) -> bool:
    """Fill in the Context's addresses; True when the interface is usable. Its IPv6 addresses are read
    whatever dhcp6.mode says (the multicast SUBSCRIBE uses them); only the precondition depends on it."""
    ports, interface = ctx.ports.interfaces, ctx.config.device.interface
    if not ports.is_up(interface):
        return False
    ctx.address = ports.ipv4_address(interface) or ""
    addresses = ports.ipv6_addresses(interface)
    ctx.address6 = netaddr.global_address(addresses) or ""
    ctx.link_local = netaddr.link_local_address(addresses) or ""
    ctx.index = ports.index(interface) if addresses else 0
    return bool(ctx.address) or (inform6 and bool(ctx.address6))


async def _wait(ctx: Context, why: str, attempt: int, deadline: float | None) -> int:
    attempt += 1
    delay = clock.precondition_delay(attempt)
    if deadline is not None and ctx.ports.clock.monotonic() + delay > deadline:
        raise PreconditionsNotMet(f"waiting: {why}")
    # What the run waits for, once at info; while it keeps waiting (up to every 15 s) only at debug.
    _log.log(log.INFO if attempt == 1 else log.DEBUG, "waiting %g s: %s", delay, why)
    ctx.progress(f"waiting {delay:g} s: {why}")
    await ctx.ports.clock.sleep(delay)
    return attempt


async def _ask_dhcp(ctx: Context) -> None:
    """Both families at once; the first answer with a URL ends the step (the other is cancelled and
    reported as such); otherwise both run to their end. `ctx.dhcp` keeps the order they finished in."""
    asks: dict[Family, Coroutine[None, None, DhcpResult]] = {}
    if ctx.address or ctx.config.dhcp.mode.startswith("lease:") or ctx.config.dhcp.mode == "off":
        asks[Family.IPV4] = _ask_dhcp4(ctx)
    else:
        ctx.dhcp.append(DhcpResult(Family.IPV4, None, f"not tried: {ctx.config.device.interface} has no IPv4 "
                                   "address (IPv6-only link)", skipped=True))
    if ctx.config.dhcp6.mode == "inform":
        if ctx.link_local:
            asks[Family.IPV6] = _ask_dhcp6(ctx)
        else:
            ctx.dhcp.append(DhcpResult(Family.IPV6, None, f"not tried: {ctx.config.device.interface} has no "
                                       "link-local IPv6 address", skipped=True))
    tasks = {asyncio.ensure_future(coro): family for family, coro in asks.items()}
    pending = set(tasks)
    try:
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(finished, key=lambda t: tasks[t].value):  # same turn: IPv4 first
                ctx.dhcp.append(task.result())
            if any(_has_url(ctx, r) for r in ctx.dhcp):
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    winner = next((r.family for r in ctx.dhcp if _has_url(ctx, r)), None)
    for task in pending:
        label = "DHCPv6" if winner is Family.IPV6 else "DHCPv4"
        ctx.dhcp.append(DhcpResult(tasks[task], None, f"cancelled: {label} answered first with a URL",
                                   skipped=True))
    for result in ctx.dhcp:
        _log.debug("dhcp (%s): %s", result.family.value, result.detail)
        ctx.progress(f"dhcp ({result.family.value}): {result.detail}")


def _has_url(ctx: Context, result: DhcpResult) -> bool:
    return bool(dhcp_candidates(result, enterprise=ctx.config.dhcp6.enterprise).candidates)


async def _ask_dhcp4(ctx: Context) -> DhcpResult:
    mode = ctx.config.dhcp.mode
    if mode == "off":
        return DhcpResult(Family.IPV4, None, "dhcp.mode is off")
    try:
        if mode.startswith("lease:"):
            answer, detail = ctx.ports.dhcp.read_lease(mode.removeprefix("lease:"))
        else:
            vendor_class = markers.replace_markers(ctx.config.dhcp.vendor_class, ctx.device)
            answer, detail = await ctx.ports.dhcp.inform(
                interface=ctx.config.device.interface, address=ctx.address, mac=ctx.device.mac,
                vendor_class=vendor_class, first_wait=ctx.config.dhcp.timeout_s)
    except SourceUnavailable as exc:
        return DhcpResult(Family.IPV4, None, str(exc), error=exc)
    return DhcpResult(Family.IPV4, answer, detail)


async def _ask_dhcp6(ctx: Context) -> DhcpResult:
    cfg = ctx.config
    try:
        answer, detail = await ctx.ports.dhcp6.inform(
            interface=cfg.device.interface, index=ctx.index, link_local=ctx.link_local, mac=ctx.device.mac,
            vendor_class=markers.replace_markers(cfg.dhcp.vendor_class, ctx.device),
            enterprise=cfg.dhcp6.enterprise, first_wait=cfg.dhcp6.timeout_s)
    except SourceUnavailable as exc:
        return DhcpResult(Family.IPV6, None, str(exc), error=exc)
    return DhcpResult(Family.IPV6, answer, detail)


async def _check_clock(ctx: Context) -> clock.ClockVerdict:
    # The DHCP answers' servers (option 42; options 56/31) in the order they answered, then ntp.servers.
    servers = [s for r in ctx.dhcp if r.answer is not None for s in r.answer.ntp_servers]
    servers += ctx.config.ntp.servers
    samples = []
    unavailable = []
    for server in dict.fromkeys(servers):  # each once
        try:
            sample = await ctx.ports.ntp.query(server, timeout=ctx.config.ntp.timeout_s)
        except SourceUnavailable as exc:
            unavailable.append(str(exc))
            continue
        samples.append(sample)
        if clock.sample_problem(sample) is None and abs(sample.offset) <= ctx.config.ntp.max_offset_s:
            break
    verdict = clock.judge(samples, max_offset_s=ctx.config.ntp.max_offset_s, now=ctx.ports.clock.time(),
                          build_time=build_time())
    if not verdict.valid and unavailable:
        return clock.ClockVerdict(False, "; ".join([verdict.reason, *unavailable]))
    return verdict
