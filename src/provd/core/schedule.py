"""When the next scheduled run is (docs/design.md §7, `provisioning/execution`). Pure: `now` and the random draw
are parameters.

Weekdays and an `HH:MM` time in the phone's local time zone; an empty time means a per-device time in
00:00 to 05:55 derived from the MAC, so a fleet of 10,000 phones does not hit the server in the same minute;
with `useRandomDelay` a delay drawn between the minimal and maximal delay is added. Wall-clock times across
DST changes: a time that does not exist that day (spring forward) moves on by the gap, an ambiguous one
(fall back) is taken at its first occurrence.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

WEEKDAYS = ("mondays", "tuesdays", "wednesdays", "thursdays", "fridays", "saturdays", "sundays")
_TIME = re.compile(r"^(2[0-3]|[01]?[0-9]):([0-5][0-9])$")
_SPREAD_MINUTES = 6 * 60 - 4  # 00:00 … 05:55 inclusive (356 minutes)
MAX_SLEEP_S = 60.0  # the scheduler wakes at least this often, to compare its two clocks
STEP_TOLERANCE_S = 2.0  # wall and monotonic time that drift apart by more than this: the wall clock stepped
EARLY_S = 1.0  # a timer that fires this much early still counts as on time


@dataclass(frozen=True)
class Execution:
    days: frozenset[int]  # 0 = Monday
    time: str  # "HH:MM" or ""
    use_random_delay: bool
    min_delay_s: int
    max_delay_s: int


def mac_time(mac: str) -> time:
    """A stable time in 00:00 to 05:55 for this MAC (a hash, not the raw bytes: MACs of one batch are close)."""
    minute = int.from_bytes(hashlib.sha256(mac.upper().encode()).digest()[:4], "big") % _SPREAD_MINUTES
    return time(minute // 60, minute % 60)


def run_time(execution: Execution, mac: str) -> time:
    match = _TIME.match(execution.time.strip())
    if match is None:
        return mac_time(mac)
    return time(int(match.group(1)), int(match.group(2)))


def next_run(execution: Execution, *, mac: str, now: datetime, zone: ZoneInfo | timezone,
             draw: float) -> datetime | None:
    """The next scheduled run strictly after `now` (aware), with its random delay; None when no weekday is on.

    `draw` is a uniform random number in [0, 1) for the delay.
    """
    if not execution.days:
        return None
    at = run_time(execution, mac)
    local_now = now.astimezone(zone)
    for offset in range(0, 8):
        day = (local_now + timedelta(days=offset)).date()
        if day.weekday() not in execution.days:
            continue
        candidate = _local(datetime.combine(day, at), zone)
        if candidate > now:
            return candidate + timedelta(seconds=delay(execution, draw))
    return None


def delay(execution: Execution, draw: float) -> float:
    if not execution.use_random_delay:
        return 0.0
    low, high = sorted((max(0, execution.min_delay_s), max(0, execution.max_delay_s)))
    return low + draw * (high - low)


def _local(naive: datetime, zone: ZoneInfo | timezone) -> datetime:
    """`naive` wall-clock time in `zone`: a non-existent time moves on by the gap, an ambiguous one is
    taken at its first occurrence (fold=0)."""
    aware = naive.replace(tzinfo=zone, fold=0)
    # In a spring-forward gap fold=0 carries the offset from before the change, so the round trip through
    # UTC lands the same distance past the gap (02:30 in a 02:00→03:00 gap becomes 03:30).
    return aware.astimezone(UTC).astimezone(zone)


def parse_execution(values: dict[str, str]) -> Execution:
    """From the `execution` leaves (text values as stored)."""
    def flag(name: str) -> bool:
        return values.get(name, "").strip() in ("true", "1")

    def number(name: str, default: int) -> int:
        text = values.get(name, "").strip()
        return int(text) if text.isascii() and text.isdigit() else default  # "①".isdigit(), int("①") fails

    days = frozenset(i for i, name in enumerate(WEEKDAYS) if flag(name))
    return Execution(days, values.get("time", "").strip(), flag("useRandomDelay"),
                     number("minimalRandomDelay", 60), number("maximalRandomDelay", 3600))


class Wake(enum.Enum):
    """What the scheduler does when it wakes."""

    FIRE = "fire"  # the scheduled run is due (or the clock stepped past it): run it
    RECOMPUTE = "recompute"  # the wall clock stepped, the run is not due: compute the next run afresh
    SLEEP = "sleep"  # nothing changed: sleep on towards it


def on_wake(next_run: datetime, now: datetime, *, stepped: bool) -> Wake:
    """Due first: a clock stepped forward past the run still runs it (a phone's clock steps when NTP first
    syncs, and the run it stepped over is owed); a step that leaves it ahead (backwards, or forwards but short
    of it) has the next run computed again from the new time, so `next_run` is never left in the past or
    years ahead."""
    if now >= next_run - timedelta(seconds=EARLY_S):
        return Wake.FIRE
    return Wake.RECOMPUTE if stepped else Wake.SLEEP


def sleep_s(next_run: datetime, now: datetime) -> float:
    """How long to sleep towards `next_run`: until it, at most MAX_SLEEP_S (a step is noticed within that)."""
    return min(max(0.0, (next_run - now).total_seconds()), MAX_SLEEP_S)


def clock_stepped(wall_before: float, mono_before: float, wall_after: float, mono_after: float) -> bool:
    """Whether the wall clock stepped between two readings of both clocks (seconds): the monotonic clock
    never steps, so a difference in elapsed time is the step."""
    return abs((wall_after - wall_before) - (mono_after - mono_before)) > STEP_TOLERANCE_S
