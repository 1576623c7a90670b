"""The health gate's timer (docs/design.md §10): runs `health.check` for the pending generation every
`health.interval_s`, confirms it when the check passes, and asks the runner for an automatic rollback when
`health.window_s` has passed without that. The decisions are core/health's; the state is the store's, so a
restart resumes where the last process stopped (and rolls back at once when the window passed meanwhile).

The check is a child process awaited with asyncio, never waited for in the loop's thread, and killed when it
takes longer than one interval: a hung check counts as a failed one and never stalls the daemon. The rollback
itself goes through the runner's queue like every other change of the store (one writer, docs/design.md §2).
What the gate writes (a failed check's count and reason, a confirmation) is compare-and-set on the pending
generation, so a commit or a `provd confirm` that came first always wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from provd import log
from provd.core import health
from provd.core.health import Pending, Step, confirmation, iso
from provd.core.triggers import RunRequest
from provd.errors import ProvdError
from provd.model import Trigger
from provd.ports import Clock, within
from provd.settings.phone import PhoneSettings

_log = log.get(__name__)

STDERR_TAIL = 200  # characters of a failed check's stderr kept as its reason


class HealthGate:
    def __init__(self, settings: PhoneSettings, *, request: Callable[[RunRequest], RunRequest],
                 reports_changed: asyncio.Event, clock: Clock) -> None:
        self.settings = settings
        self._request = request
        self._reports_changed = reports_changed
        self._clock = clock  # wall time: the window outlives the process, so it is kept in wall-clock seconds
        self._changed = asyncio.Event()
        self.next_check: float | None = None  # wall-clock seconds of the next check, for `provd status`
        self._rolling_back: int | None = None  # the generation whose rollback is queued

    def changed(self) -> None:
        """The store's pending state may have changed (a commit, a confirmation, a rollback): look again."""
        self._changed.set()

    async def serve(self) -> None:
        """A task of the daemon's TaskGroup while health.check is set."""
        step = health.at_start(self._stored(), now=self._clock.time())
        tracked = step.pending
        if step.step is Step.CHECK:
            self.next_check = step.at
            _log.info("health: generation %d is waiting on its health check until %s; checking now",
                      tracked.generation if tracked else 0, iso(tracked.deadline) if tracked else "?")
        while True:
            if step.step is Step.ROLL_BACK and step.pending is not None:
                self._roll_back(step.pending)
                tracked, self.next_check = None, None
            if tracked is None or self.next_check is None:
                await self._changed.wait()
                self._changed.clear()
                tracked, step = self._look_again(tracked)
                continue
            if not await self._wait_until(self.next_check):
                tracked, step = self._look_again(tracked)
                continue
            tracked, step = await self._check(tracked)

    def _stored(self) -> Pending | None:
        try:
            return self.settings.store.pending()
        except ProvdError as exc:
            _log.error("health: %s", exc)
            return None

    def _look_again(self, tracked: Pending | None) -> tuple[Pending | None, health.Next]:
        """After a change: a new pending generation is first checked one interval after its commit; the one
        tracked goes on as scheduled; none pending ends the checks."""
        stored = self._stored()
        now = self._clock.time()
        if stored is None:
            self.next_check = None
            return None, health.Next(Step.IDLE, None)
        if stored.generation == self._rolling_back:
            return None, health.Next(Step.IDLE, None)
        if now >= stored.deadline:
            return None, health.at_start(stored, now=now)
        if tracked is None or tracked.generation != stored.generation:
            self.next_check = min(now + self.settings.config.health.interval_s, stored.deadline)
            _log.info("health: generation %d is pending: first check at %s, rollback to %d unless confirmed by %s",
                      stored.generation, iso(self.next_check), stored.target, iso(stored.deadline))
        return stored, health.Next(Step.CHECK, stored, self.next_check)

    async def _wait_until(self, at: float) -> bool:
        """True when `at` came; False when the pending state changed first."""
        delay = max(0.0, at - self._clock.time())
        try:
            await within(self._clock, delay, self._changed.wait())
        except TimeoutError:
            return True
        self._changed.clear()
        return False

    async def _check(self, tracked: Pending) -> tuple[Pending | None, health.Next]:
        config = self.settings.config.health
        assert config.check is not None, "the gate runs only while health.check is set"
        failure = await run_check(list(config.check), timeout_s=config.interval_s, generation=tracked.generation)
        now = self._clock.time()
        stored = self._stored()
        if stored is None or stored.generation != tracked.generation:  # confirmed or replaced meanwhile
            return self._look_again(None)
        step = health.after_check(stored, passed=failure is None, failure=failure or "", now=now,
                                  interval_s=config.interval_s)
        if step.step is Step.CONFIRMED:
            if self._write(stored, None, event=confirmation(stored._replace(checks=stored.checks + 1),
                                                            by="health check", now=now), confirmed=True):
                _log.info("health: check passed: generation %d confirmed", stored.generation)
                self._reports_changed.set()
            self.next_check = None
            return None, step
        assert step.pending is not None
        if step.step is Step.ROLL_BACK:
            _log.warning("health: check %d of generation %d failed (%s): the window ended, rolling back to %d",
                         step.pending.checks, stored.generation, failure, stored.target)
            return step.pending, step
        self._write(stored, step.pending)
        self.next_check = step.at
        _log.warning("health: check %d of generation %d failed (%s); next at %s, rollback to %d at %s",
                     step.pending.checks, stored.generation, failure, iso(step.at or now), stored.target,
                     iso(stored.deadline))
        return step.pending, step

    def _write(self, stored: Pending, pending: Pending | None, *, event: dict[str, object] | None = None,
               confirmed: bool = False) -> bool:
        try:
            return self.settings.store.update_pending(stored.generation, pending, event=event, confirmed=confirmed)
        except ProvdError as exc:  # a full disk: the state stays as it was; the next check tries again
            _log.error("health: cannot record the check: %s", exc)
            return False

    def _roll_back(self, failed: Pending) -> None:
        """Queue the automatic rollback (the runner carries it out, hooks and report included)."""
        if self._rolling_back == failed.generation:
            return
        self._rolling_back = failed.generation
        self._request(RunRequest(Trigger.AUTO_ROLLBACK, auto_rollback=failed))


async def run_check(argv: list[str], *, timeout_s: float, generation: int) -> str | None:
    """None when the check exited 0 within `timeout_s`; else why not, in one line (for the log and the
    rollback's report). The check sees PROVD_GENERATION, the generation it judges."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "PROVD_GENERATION": str(generation)})
    except OSError as exc:
        return f"{argv[0]}: cannot start: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(max(timeout_s, 0.1)):
            _, stderr = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return f"{argv[0]}: killed after {timeout_s:g} s (health.interval_s)"
    if proc.returncode == 0:
        return None
    tail = " ".join(stderr.decode(errors="replace").split())[-STDERR_TAIL:]
    return f"{argv[0]}: exit {proc.returncode}" + (f": {tail}" if tail else "")
