"""The retry timer (docs/design.md §7): after a failed run, one RETRY trigger after the backoff delay that
core/retry decides. The timer is a task in the daemon's TaskGroup, so stopping the daemon cancels it; a new
run cancels a pending one. It waits on the injected clock, as the runner and the scheduler do."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from provd import log
from provd.core.retry import RetryState
from provd.core.triggers import RunRequest
from provd.model import Outcome, RunReport, Trigger
from provd.ports import Clock

_log = log.get(__name__)


class RetryTimer:
    def __init__(self, request: Callable[[RunRequest], object], rng: random.Random, clock: Clock) -> None:
        self.state = RetryState()
        self._clock = clock
        self.retry_at: datetime | None = None  # when the pending retry fires (status)
        self._request = request
        self._rng = rng
        self._task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None

    def start(self, group: asyncio.TaskGroup) -> None:
        """From now on a retry is a task of `group`."""
        self._group = group

    def stop(self) -> None:
        self.cancel()
        self._group = None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.retry_at = None

    def after(self, report: RunReport) -> None:
        """A provisioning run ended: a failure schedules the next attempt, anything else resets the count."""
        if report.outcome is not Outcome.FAILED:
            self.state.succeeded()
            return
        delay = self.state.failed(draw=self._rng.random(), retry_after_s=report.retry_after_s)
        self.cancel()
        if self._group is None:  # not serving (a run driven alone): nothing to fire it
            return
        self._task = self._group.create_task(self._fire(delay))
        self.retry_at = datetime.fromtimestamp(self._clock.time(), UTC) + timedelta(seconds=delay)
        _log.info("retry scheduled: attempt %d in %.1f s, at %s (run #%s failed%s)", self.state.attempt,
                  delay, self.retry_at.isoformat(timespec="seconds"), report.run,
                  f"; the server asked for {report.retry_after_s:g} s" if report.retry_after_s else "")

    async def _fire(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._task = None
        self.retry_at = None
        self._request(RunRequest(Trigger.RETRY))
