"""The scheduler in-process on a virtual clock (tests/support/fakes.py FakeClock): a scheduled run fires at
its minute, a wall clock stepped past it (NTP's first sync) fires it at the next wake, and a schedule that
changes is computed afresh. No real time passes; the end-to-end test (test_daemon.py) runs the real daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from provd import config as config_mod
from provd.core import schedule
from provd.core.triggers import RunRequest
from provd.model import Trigger
from provd.run import restore
from provd.service.scheduler import Scheduler
from provd.settings.phone import PhoneSettings
from tests.support.fakes import WALL, FakeClock, FixedDraw

# WALL is 2027-01-15 08:00:00 UTC; the phone's zone is UTC here.
AT = "08:05"
AT_S = 300.0


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PhoneSettings:
    monkeypatch.setenv("TZ", "UTC")
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps({"paths": {"state_dir": str(tmp_path / "state")},
                               "device": {"mac": "00:09:52:00:00:0E"}}))
    settings = PhoneSettings(config_mod.load(str(cfg)))
    restore.apply_data(settings, f"<provisioning><active>true</active><execution><time>{AT}</time></execution>"
                       "</provisioning>".encode(), name="schedule.xml", url="schedule.xml")
    return settings


async def _first_request(scheduler: Scheduler, requested: asyncio.Queue[RunRequest]) -> RunRequest:
    task = asyncio.create_task(scheduler.serve())
    try:
        return await asyncio.wait_for(requested.get(), 5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_scheduled_run_fires_at_its_minute(settings: PhoneSettings) -> None:
    clock = FakeClock()

    async def main() -> RunRequest:
        requested: asyncio.Queue[RunRequest] = asyncio.Queue()
        scheduler = Scheduler(settings, request=requested.put_nowait, rng=FixedDraw(0.0), changed=asyncio.Event(),
                              clock=clock)
        return await _first_request(scheduler, requested)

    request = asyncio.run(main())
    assert request.trigger is Trigger.SCHEDULE
    assert clock.monotonic() == AT_S  # virtual seconds: at the minute, not a second early or late
    assert max(clock.slept) <= schedule.MAX_SLEEP_S  # it woke at least once a minute to compare its clocks


def test_a_wall_clock_stepped_past_the_run_fires_it_at_the_next_wake(settings: PhoneSettings) -> None:
    clock = FakeClock()

    async def main() -> RunRequest:
        requested: asyncio.Queue[RunRequest] = asyncio.Queue()
        scheduler = Scheduler(settings, request=requested.put_nowait, rng=FixedDraw(0.0), changed=asyncio.Event(),
                              clock=clock)
        task = asyncio.create_task(_first_request(scheduler, requested))
        for _ in range(1000):  # until it has planned 08:05 and sleeps towards it
            if scheduler.next_scheduled is not None:
                break
            await asyncio.sleep(0)
        assert scheduler.next_scheduled is not None
        clock.set_wall(WALL + AT_S + 30)  # NTP's first sync moves the wall clock 5.5 minutes on, at once
        return await task

    request = asyncio.run(main())
    assert request.trigger is Trigger.SCHEDULE
    assert clock.monotonic() <= schedule.MAX_SLEEP_S  # at the first wake, not after the 300 s it planned
