"""Preconditions and discovery (docs/design.md §1 steps 1 and 2, §6): wait for the network and a valid time, then find
the provisioning URL in a fixed sequence, reporting every source tried.

    interface up with an IPv4 address
    → one DHCPINFORM (its option 42 names NTP servers; its 66/67/43 are the DHCP source)
    → valid time (NTP)
    → SEQUENCE: DHCP; then Redirect Service ‖ SIP multicast (first URL wins, the other is cancelled);
      then the configured provisioning/url.

Each source obeys its switch in the `provisioning` section. The sequence is data; each source is one
function returning an `Attempt`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from provd import BUILD_DATE, __version__, log
from provd.config import Config
from provd.core import clock, dhcp, markers
from provd.core.urls import redact
from provd.errors import FetchError, PreconditionsNotMet
from provd.model import Device, Switches
from provd.ports import HttpClient, Ports
from provd.sources import dhcp_inform, ntp, redirect

Progress = Callable[[str], None]
_log = log.get(__name__)

# The fixed order (docs/design.md §1): a stage's sources run concurrently, the first URL found ends discovery.
SEQUENCE: tuple[tuple[str, ...], ...] = (("dhcp",), ("redirect", "multicast"), ("configured",))


@dataclass
class Attempt:
    source: str
    result: str  # found | none | failed | skipped
    detail: str
    url: str | None = None
    candidates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"source": self.source, "result": self.result, "detail": self.detail}
        if self.url:
            out["url"] = redact(self.url)
        return out


@dataclass
class Discovery:
    source: str | None
    candidates: tuple[str, ...]  # to fetch in order (https before http for a scheme-less DHCP result)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def url(self) -> str | None:
        return self.candidates[0] if self.candidates else None


@dataclass
class Context:
    config: Config
    device: Device
    switches: Switches
    client: HttpClient
    progress: Progress
    address: str = ""
    dhcp_answer: dhcp.DhcpAnswer | None = None
    dhcp_detail: str = ""
    dhcp_failed: bool = False
    ports: Ports = field(default_factory=Ports.real)


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
    except dhcp_inform.DhcpUnavailable as exc:
        ctx.dhcp_failed = True
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
        except ntp.NtpUnavailable as exc:
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


# --- the sources ------------------------------------------------------------------------------------------

async def _source_dhcp(ctx: Context) -> Attempt:
    if not ctx.switches.dhcp:
        return Attempt("dhcp", "skipped", "provisioning/dhcp is false")
    if ctx.dhcp_failed:
        return Attempt("dhcp", "failed", ctx.dhcp_detail)
    if ctx.dhcp_answer is None:
        return Attempt("dhcp", "none", ctx.dhcp_detail or "no answer")
    found = dhcp.url_from_answer(ctx.dhcp_answer)
    if not found.candidates:
        return Attempt("dhcp", "none", "; ".join([ctx.dhcp_detail, *found.notes,
                                                   "no usable option 43/66/67 or BOOTP sname/file"]))
    candidates = tuple(markers.replace_markers(c, ctx.device) for c in found.candidates)
    detail = "; ".join([ctx.dhcp_detail, *found.notes])
    return Attempt("dhcp", "found", detail, candidates[0], candidates)


async def _source_redirect(ctx: Context) -> Attempt:
    if not ctx.switches.redirect:
        return Attempt("redirect", "skipped", "provisioning/redirect is false")
    url = markers.replace_markers(ctx.config.redirect.url, ctx.device)
    try:
        async with asyncio.timeout(ctx.config.redirect.timeout_s):
            outcome = await redirect.ask(ctx.client, url, max_bytes=ctx.config.http.max_file_bytes)
    except TimeoutError:
        return Attempt("redirect", "failed", f"{redact(url)}: no answer within the timeout")
    except FetchError as exc:
        return Attempt("redirect", "failed", str(exc))
    if outcome.url is None:
        return Attempt("redirect", "none", f"{redact(url)}: {outcome.detail}")
    return Attempt("redirect", "found", f"{redact(url)}: {outcome.detail}", outcome.url, (outcome.url,))


async def _source_multicast(ctx: Context) -> Attempt:
    if not ctx.switches.pbx:
        return Attempt("multicast", "skipped", "provisioning/pbx is false")
    cfg = ctx.config
    try:
        outcome = await ctx.ports.multicast.lookup(
            local_ip=ctx.address, mac=ctx.device.mac, local_port=cfg.multicast.local_port,
            group=cfg.multicast.group, port=cfg.multicast.port,
            window_s=cfg.multicast.timeout_s, vendor=cfg.multicast.vendor,
            model=ctx.device.type, firmware=ctx.device.firmware,
            user_agent=f"{cfg.multicast.vendor} {ctx.device.type} {ctx.device.firmware} provd/{__version__}")
    except OSError as exc:
        return Attempt("multicast", "failed", f"cannot use UDP {ctx.address}:{cfg.multicast.local_port}: {exc}")
    seen = f" (seen: {'; '.join(outcome.seen)})" if outcome.seen and outcome.url is None else ""
    if outcome.url is None:
        return Attempt("multicast", "none", outcome.detail + seen)
    return Attempt("multicast", "found", outcome.detail, outcome.url, (outcome.url,))


async def _source_configured(ctx: Context) -> Attempt:
    url = ctx.switches.url.strip()
    if not url:
        return Attempt("configured", "none", "provisioning/url is empty")
    replaced = markers.replace_markers(url, ctx.device)
    return Attempt("configured", "found", "provisioning/url", replaced, (replaced,))


SOURCES: dict[str, Callable[[Context], Coroutine[None, None, Attempt]]] = {
    "dhcp": _source_dhcp, "redirect": _source_redirect, "multicast": _source_multicast,
    "configured": _source_configured,
}


Source = Callable[[Context], Coroutine[None, None, Attempt]]


async def discover(ctx: Context, *, sources: dict[str, Source] | None = None,
                   sequence: tuple[tuple[str, ...], ...] = SEQUENCE) -> Discovery:
    """Run the sequence; the first URL wins, later stages are not tried (they are reported as skipped)."""
    sources = sources or SOURCES
    result = Discovery(None, ())
    for stage in sequence:
        if result.source is not None:
            skipped = [Attempt(s, "skipped", f"{result.source} found a URL first") for s in stage]
            result.attempts += skipped
            for attempt in skipped:
                _log_attempt(attempt)
            continue
        for attempt in await _run_stage(ctx, stage, sources):
            result.attempts.append(attempt)
            _log_attempt(attempt)
            ctx.progress(f"{attempt.source}: {attempt.result}: {attempt.detail}")
            if attempt.result == "found" and result.source is None:
                result.source, result.candidates = attempt.source, attempt.candidates
    return result


def _log_attempt(attempt: Attempt) -> None:
    url = f" ({redact(attempt.url)})" if attempt.url else ""
    _log.info("discovery: %s %s: %s%s", attempt.source, attempt.result, attempt.detail, url)


async def _run_stage(ctx: Context, stage: tuple[str, ...], sources: dict[str, Source]) -> list[Attempt]:
    """Run a stage's sources concurrently; once one finds a URL the others are cancelled."""
    tasks: dict[asyncio.Task[Attempt], str] = {asyncio.create_task(sources[name](ctx)): name for name in stage}
    done: dict[str, Attempt] = {}
    try:
        pending = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                done[tasks[task]] = task.result()
            if any(a.result == "found" for a in done.values()):
                break
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    winner = next((a.source for a in done.values() if a.result == "found"), None)
    return [done.get(name) or Attempt(name, "skipped", f"cancelled: {winner} answered first") for name in stage]
