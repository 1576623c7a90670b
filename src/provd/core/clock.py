"""Whether the phone's clock may be trusted (docs/design.md §1 step 1, §6; docs/protocols.md §4.2). Pure: the NTP
samples, the local time and the build date are parameters.

provd never provisions with an unknown time: certificate checks depend on it, and a phone whose RTC reset
to 1970 or 2000 must not take a file whose validity it cannot judge.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NtpSample:
    server: str
    mode: int
    leap: int
    stratum: int
    tx_time: float
    offset: float  # server time - local time, seconds


@dataclass(frozen=True)
class ClockVerdict:
    valid: bool
    reason: str


def sample_problem(sample: NtpSample) -> str | None:
    """Why a reply does not count (None when it does): mode 4, leap ≠ 3, stratum 1 to 15, a transmit time."""
    if sample.mode != 4:
        return f"{sample.server}: mode {sample.mode}, not a server reply"
    if sample.leap == 3:
        return f"{sample.server}: not synchronised (leap indicator 3)"
    if not 1 <= sample.stratum <= 15:
        return f"{sample.server}: stratum {sample.stratum}"
    if sample.tx_time == 0:
        return f"{sample.server}: no transmit time"
    return None


def judge(samples: list[NtpSample], *, max_offset_s: float, now: float, build_time: float) -> ClockVerdict:
    """Valid when the clock is not before the build date and one counting server agrees within the bound."""
    if now < build_time:
        return ClockVerdict(False, "the clock is before provd's build date")
    problems = []
    for sample in samples:
        problem = sample_problem(sample)
        if problem is not None:
            problems.append(problem)
            continue
        if abs(sample.offset) <= max_offset_s:
            return ClockVerdict(True, f"{sample.server}: offset {sample.offset:+.3f} s")
        problems.append(f"{sample.server}: offset {sample.offset:+.1f} s exceeds ntp.max_offset_s ({max_offset_s:g})")
    return ClockVerdict(False, "; ".join(problems) or "no NTP server answered")


def precondition_delay(attempt: int) -> float:
    """Seconds before re-checking the preconditions: 1 s doubling up to 15 s (docs/design.md §1)."""
    return float(min(15, 2 ** max(0, attempt - 1)))
