"""Discovery (docs/design.md §1 step 2, §6): find the provisioning URL in a fixed sequence, reporting every
source tried, once the preconditions (sources/preconditions.py) hold and have filled in the Context:

    SEQUENCE: DHCP (the answers the preconditions' DHCPINFORM and DHCPv6 Information-Request got); then
    Redirect Service ‖ SIP multicast (first URL wins, the other is cancelled); then the configured
    provisioning/url.

Each source obeys its switch in the `provisioning` section. The sequence is data; each source is one
function returning an `Attempt` (model.py), or one per IP family (DHCP); a source that cannot be asked at
all raises a SourceUnavailable, which becomes its `failed` attempt (the error kept on the attempt, its
message in the report).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from provd import __version__, log
from provd.config import Config
from provd.core import dhcp, dhcp6, markers
from provd.core.urls import redact
from provd.errors import FetchError, SourceUnavailable
from provd.model import Attempt, AttemptResult, Device, Family, Progress, Source, Switches
from provd.ports import HttpClient, Ports, within
from provd.sources import redirect

_log = log.get(__name__)

# The fixed order (docs/design.md §1): a stage's sources run concurrently, the first URL found ends discovery.
SEQUENCE: tuple[tuple[Source, ...], ...] = ((Source.DHCP,), (Source.REDIRECT, Source.MULTICAST), (Source.CONFIGURED,))

FOUND, NONE, FAILED, SKIPPED = AttemptResult.FOUND, AttemptResult.NONE, AttemptResult.FAILED, AttemptResult.SKIPPED


@dataclass(frozen=True)
class Discovery:
    """What discovery found: the winning source and its candidates, and every attempt in sequence order."""

    source: Source | None
    candidates: tuple[str, ...]  # to fetch in order (https before http for a scheme-less DHCP result)
    attempts: tuple[Attempt, ...] = ()

    @property
    def url(self) -> str | None:
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class DhcpResult:
    """What one family's DHCP exchange gave: the answer (None: no server answered, or not asked), a detail
    line for the report, the error when it could not be asked, `skipped` when it was not tried at all."""

    family: Family
    answer: dhcp.DhcpAnswer | dhcp6.Dhcp6Answer | None
    detail: str
    error: SourceUnavailable | None = None
    skipped: bool = False


def dhcp_candidates(result: DhcpResult, *, enterprise: int) -> dhcp.DhcpUrl:
    """The URL candidates in one family's answer (markers not yet replaced), with the notes on how they were
    read: the decoder's (malformed options ignored) first. `enterprise`: dhcp6.enterprise."""
    if isinstance(result.answer, dhcp.DhcpAnswer):
        return dhcp.url_from_answer(result.answer)
    if isinstance(result.answer, dhcp6.Dhcp6Answer):
        return dhcp6.url_from_answer(result.answer, enterprise=enterprise)  # its notes include the decoder's
    return dhcp.DhcpUrl(())


@dataclass
class Context:
    """What the sources need for one run. The preconditions fill in the address and the DHCP answer."""

    config: Config
    device: Device
    switches: Switches
    client: HttpClient
    progress: Progress
    ports: Ports  # the outside world: provd.run.wiring.real_ports(), or fakes in tests
    address: str = ""  # IPv4; empty on an IPv6-only link
    address6: str = ""  # a global IPv6 address; empty without one (or with dhcp6.mode off)
    link_local: str = ""  # the interface's fe80:: address: DHCPv6's source
    index: int = 0  # the interface index: the scope of link-local addresses, the multicast interface
    dhcp: list[DhcpResult] = field(default_factory=list)  # per family, in the order they answered


# --- the sources ------------------------------------------------------------------------------------------

async def _source_dhcp(ctx: Context) -> tuple[Attempt, ...]:
    """One attempt per family the DHCP step asked (or skipped), in the order they answered."""
    if not ctx.switches.dhcp:
        return (Attempt(Source.DHCP, SKIPPED, "provisioning/dhcp is false"),)
    results = ctx.dhcp or [DhcpResult(Family.IPV4, None, "no answer")]
    return tuple(_dhcp_attempt(ctx, r) for r in results)


_NOTHING_USABLE = {Family.IPV4: "no usable option 43/66/67 or BOOTP sname/file",
                   Family.IPV6: "no usable option 17 (0x42/0x43) or 59"}


def _dhcp_attempt(ctx: Context, result: DhcpResult) -> Attempt:
    def attempt(outcome: AttemptResult, detail: str, candidates: tuple[str, ...] = ()) -> Attempt:
        return Attempt(Source.DHCP, outcome, detail, redact(candidates[0]) if candidates else None, candidates,
                       error=result.error if outcome is FAILED else None, family=result.family)

    if result.skipped:
        return attempt(SKIPPED, result.detail)
    if result.error is not None:
        return attempt(FAILED, result.detail)
    if result.answer is None:
        return attempt(NONE, result.detail or "no answer")
    found = dhcp_candidates(result, enterprise=ctx.config.dhcp6.enterprise)
    if not found.candidates:
        return attempt(NONE, "; ".join([result.detail, *found.notes, _NOTHING_USABLE[result.family]]))
    candidates = tuple(markers.replace_markers(c, ctx.device) for c in found.candidates)
    return attempt(FOUND, "; ".join([result.detail, *found.notes]), candidates)


async def _source_redirect(ctx: Context) -> Attempt:
    if not ctx.switches.redirect:
        return Attempt(Source.REDIRECT, SKIPPED, "provisioning/redirect is false")
    url = markers.replace_markers(ctx.config.redirect.url, ctx.device)
    try:
        outcome = await within(ctx.ports.clock, ctx.config.redirect.timeout_s,
                                redirect.ask(ctx.client, url, max_bytes=ctx.config.http.max_file_bytes))
    except TimeoutError:
        return Attempt(Source.REDIRECT, FAILED, f"{redact(url)}: no answer within the timeout")
    except FetchError as exc:
        return Attempt(Source.REDIRECT, FAILED, str(exc), error=exc)
    if outcome.url is None:
        return Attempt(Source.REDIRECT, NONE, f"{redact(url)}: {outcome.detail}")
    return Attempt(Source.REDIRECT, FOUND, f"{redact(url)}: {outcome.detail}", redact(outcome.url), (outcome.url,))


async def _source_multicast(ctx: Context) -> Attempt:
    if not ctx.switches.pbx:
        return Attempt(Source.MULTICAST, SKIPPED, "provisioning/pbx is false")
    cfg = ctx.config
    try:
        outcome = await ctx.ports.multicast.lookup(
            local_ip=ctx.address, mac=ctx.device.mac, local_port=cfg.multicast.local_port,
            group=cfg.multicast.group, port=cfg.multicast.port,
            window_s=cfg.multicast.timeout_s, vendor=cfg.multicast.vendor,
            model=ctx.device.type, firmware=ctx.device.firmware,
            user_agent=f"{cfg.multicast.vendor} {ctx.device.type} {ctx.device.firmware} provd/{__version__}",
            local_ip6=ctx.address6 or ctx.link_local, index=ctx.index, group6=cfg.multicast.group6)
    except SourceUnavailable as exc:
        return Attempt(Source.MULTICAST, FAILED, str(exc), error=exc)
    seen = f" (seen: {'; '.join(outcome.seen)})" if outcome.seen and outcome.url is None else ""
    if outcome.url is None:
        return Attempt(Source.MULTICAST, NONE, outcome.detail + seen)
    return Attempt(Source.MULTICAST, FOUND, outcome.detail, redact(outcome.url), (outcome.url,),
                   family=outcome.family)


async def _source_configured(ctx: Context) -> Attempt:
    url = ctx.switches.url.strip()
    if not url:
        return Attempt(Source.CONFIGURED, NONE, "provisioning/url is empty")
    replaced = markers.replace_markers(url, ctx.device)
    return Attempt(Source.CONFIGURED, FOUND, "provisioning/url", redact(replaced), (replaced,))


# One function per source found by discovery (Source.EXPLICIT has none: its URL is given, not found).
SourceProbe = Callable[[Context], Coroutine[None, None, Attempt | tuple[Attempt, ...]]]

SOURCES: dict[Source, SourceProbe] = {
    Source.DHCP: _source_dhcp, Source.REDIRECT: _source_redirect, Source.MULTICAST: _source_multicast,
    Source.CONFIGURED: _source_configured,
}


async def discover(ctx: Context, *, sources: dict[Source, SourceProbe] | None = None,
                   sequence: tuple[tuple[Source, ...], ...] = SEQUENCE) -> Discovery:
    """Run the sequence; the first URL wins, later stages are not tried (they are reported as skipped)."""
    sources = sources or SOURCES
    winner: Source | None = None
    candidates: tuple[str, ...] = ()
    attempts: list[Attempt] = []
    for stage in sequence:
        if winner is not None:
            skipped = [Attempt(s, SKIPPED, f"{winner.value} found a URL first") for s in stage]
            attempts += skipped
            for attempt in skipped:
                _log_attempt(attempt)
            continue
        for attempt in await _run_stage(ctx, stage, sources):
            attempts.append(attempt)
            _log_attempt(attempt)
            ctx.progress(f"{attempt.source.value}: {attempt.result.value}: {attempt.detail}")
            if attempt.result is FOUND and winner is None:
                winner, candidates = attempt.source, attempt.candidates
    return Discovery(winner, candidates, tuple(attempts))


def _log_attempt(attempt: Attempt) -> None:
    url = f" ({attempt.url})" if attempt.url else ""
    _log.info("discovery: %s %s: %s%s", attempt.source.value, attempt.result.value, attempt.detail, url)


async def _run_stage(ctx: Context, stage: tuple[Source, ...], sources: dict[Source, SourceProbe]) -> list[Attempt]:
    """Run a stage's sources concurrently; once one finds a URL the others are cancelled."""
    tasks = {asyncio.create_task(sources[name](ctx)): name for name in stage}
    done: dict[Source, tuple[Attempt, ...]] = {}
    try:
        pending = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                result = task.result()
                done[tasks[task]] = (result,) if isinstance(result, Attempt) else result
            if any(a.result is FOUND for attempts in done.values() for a in attempts):
                break
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    winner = next((a.source.value for attempts in done.values() for a in attempts if a.result is FOUND), None)
    cancelled = (Attempt(name, SKIPPED, f"cancelled: {winner} answered first") for name in stage)
    return [a for name, skip in zip(stage, cancelled, strict=True) for a in done.get(name, (skip,))]
