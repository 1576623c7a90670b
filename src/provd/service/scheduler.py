"""The scheduled runs (docs/design.md §7, `provisioning/execution`): the phone's time zone, and the task that
sleeps towards the next run a minute at a time, so a wall clock stepped meanwhile (NTP's first sync) is
noticed. Every decision is core/schedule's; this module reads the clocks (the injected `Clock`: tests pass
a virtual one) and sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from provd.core import schedule
from provd.core.triggers import RunRequest
from provd.model import Trigger
from provd.ports import Clock, within
from provd.run import device
from provd.settings.phone import PhoneSettings

_POSIX_FIXED = re.compile(r"^(?:<[^>]+>|[A-Za-z]{3,})([+-]?)(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?$")


def local_zone() -> ZoneInfo | timezone:
    """The phone's time zone: `$TZ` (a zone name, or a POSIX fixed offset such as `CET-1`), else
    /etc/localtime, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        with contextlib.suppress(ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            return ZoneInfo(tz)
        match = _POSIX_FIXED.match(tz)
        if match:  # POSIX counts west of Greenwich as positive: "XXX-2" is two hours east
            sign = 1 if match.group(1) == "-" else -1
            seconds = int(match.group(2)) * 3600 + int(match.group(3) or 0) * 60 + int(match.group(4) or 0)
            return timezone(sign * timedelta(seconds=seconds))
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh)
    except (OSError, ValueError):
        return UTC


class Scheduler:
    def __init__(self, settings: PhoneSettings, *, request: Callable[[RunRequest], object], rng: random.Random,
                 changed: asyncio.Event, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self.next_scheduled: datetime | None = None
        self._request = request
        self._rng = rng
        self._changed = changed  # set when the schedule may have changed (a run, a rollback)

    async def serve(self) -> None:
        """Sleep towards the next scheduled run a minute at a time; on each wake compare the wall clock with
        the monotonic one, so a step (NTP's first sync) is noticed: stepped past the run, it runs now;
        stepped elsewhere, the next run is computed afresh."""
        mac = device.device_from_config(self.settings.config).mac
        zone = local_zone()
        fired: datetime | None = None
        while True:
            self._changed.clear()
            values = self.settings.execution_values()
            now = datetime.fromtimestamp(self._clock.time(), UTC)
            self.next_scheduled = None
            if self.settings.provisioning_active():
                # Strictly after a run already fired: a timer a hair early fires it once.
                self.next_scheduled = schedule.next_run(schedule.parse_execution(values), mac=mac,
                                                        now=max(now, fired) if fired else now, zone=zone,
                                                        draw=self._rng.random())
            if self.next_scheduled is None:
                await self._changed.wait()
                continue
            stepped = False
            while True:
                wall, mono = self._clock.time(), self._clock.monotonic()
                wake = schedule.on_wake(self.next_scheduled, datetime.fromtimestamp(wall, UTC), stepped=stepped)
                if wake is schedule.Wake.FIRE:
                    fired = self.next_scheduled
                    self._request(RunRequest(Trigger.SCHEDULE))
                    break
                if wake is schedule.Wake.RECOMPUTE:
                    break
                pause = schedule.sleep_s(self.next_scheduled, datetime.fromtimestamp(wall, UTC))
                if await self._changed_within(pause):
                    break  # the schedule changed: compute it again
                stepped = schedule.clock_stepped(wall, mono, self._clock.time(), self._clock.monotonic())

    async def _changed_within(self, seconds: float) -> bool:
        """Sleep `seconds` on the clock, or less when the schedule changes; whether it changed."""
        try:
            await within(self._clock, seconds, self._changed.wait())
        except TimeoutError:
            return False
        return True
