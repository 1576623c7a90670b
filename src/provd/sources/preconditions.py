"""Preconditions (docs/design.md §1 step 1, §6): the interface up with an IPv4 address, one DHCPINFORM (its
option 42 names NTP servers; its 66/67/43 are discovery's DHCP source), then a valid time (NTP). Until they
hold the run waits (1 s doubling to 15 s) on the injected clock; with a deadline it gives up as
PreconditionsNotMet. What they learn (the address, the DHCP answer) goes into discovery's Context.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from provd import BUILD_DATE, log
from provd.core import clock, markers
from provd.errors import PreconditionsNotMet, SourceUnavailable
from provd.sources.discovery import Context

_log = log.get(__name__)


def build_time() -> float:
    return datetime.combine(date.fromisoformat(BUILD_DATE), datetime.min.time(), UTC).timestamp()


async def wait_for_preconditions(ctx: Context, *, deadline: float | None = None, ask_dhcp: bool = True) -> None:
    """Interface up with an address, a DHCPINFORM (unless the URL is known already: discovery is skipped
    then, and NTP uses `ntp.servers`), then a valid clock; waits (1 s doubling to 15 s).

    Raises:
        PreconditionsNotMet: only when `deadline` (monotonic seconds) passes.
    """
    interface = ctx.config.device.interface
    attempt = 0
    while True:
        address = ctx.ports.interfaces.ipv4_address(interface) if ctx.ports.interfaces.is_up(interface) else None
        if address:
            ctx.address = address
            break
        attempt = await _wait(ctx, f"interface {interface} is not up with an IPv4 address", attempt, deadline)
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
    mode = ctx.config.dhcp.mode
    if mode == "off":
        ctx.dhcp_detail = "dhcp.mode is off"
        return
    try:
        if mode.startswith("lease:"):
            ctx.dhcp_answer, ctx.dhcp_detail = ctx.ports.dhcp.read_lease(mode.removeprefix("lease:"))
        else:
            vendor_class = markers.replace_markers(ctx.config.dhcp.vendor_class, ctx.device)
            ctx.dhcp_answer, ctx.dhcp_detail = await ctx.ports.dhcp.inform(
                interface=ctx.config.device.interface, address=ctx.address, mac=ctx.device.mac,
                vendor_class=vendor_class, first_wait=ctx.config.dhcp.timeout_s)
    except SourceUnavailable as exc:
        ctx.dhcp_error = exc
        ctx.dhcp_detail = str(exc)
    _log.debug("dhcp: %s", ctx.dhcp_detail)
    ctx.progress(f"dhcp: {ctx.dhcp_detail}")


async def _check_clock(ctx: Context) -> clock.ClockVerdict:
    servers = list(ctx.dhcp_answer.ntp_servers if ctx.dhcp_answer else ()) + list(ctx.config.ntp.servers)
    samples = []
    unavailable = []
    for server in dict.fromkeys(servers):  # option 42 first, then ntp.servers, each once
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
