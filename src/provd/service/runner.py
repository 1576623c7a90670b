"""The daemon's runner (docs/design.md §7): takes requests into the trigger queue (core/triggers) and carries
them out one at a time: provisioning runs, the reboot hook, applies and rollbacks through the daemon.

Whatever goes wrong in one request stays in it: an unexpected exception is logged with its traceback, the
run recorded as failed, the client answered, and the runner goes on. The run itself is a port (`RunFunction`,
provision.run in service) and so is its clock, so the queue can be driven in-process by fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from provd import log
from provd.core.control import ConfirmEvent, ErrorEvent, Event, ProgressEvent, ReportEvent, RollbackEvent
from provd.core.health import Pending
from provd.core.triggers import RunRequest, TriggerQueue
from provd.errors import ProvdError, UnknownGeneration
from provd.model import Outcome, Progress, RolledBack, RunReport, Source, Trigger
from provd.ports import Clock
from provd.run import hooks, restore
from provd.run.confirm import confirm_pending
from provd.service.retry_timer import RetryTimer
from provd.settings.phone import PhoneSettings, now_iso

_log = log.get(__name__)


class RunFunction(Protocol):
    """One provisioning run (the signature of provd.run.provision.run that the daemon uses)."""

    async def __call__(self, phone: PhoneSettings, *, trigger: Trigger, url: str | None = None,
                       restore: bytes | None = None, dry_run: bool = False, reboot: bool = False,
                       force: bool = False, progress: Progress = ...) -> RunReport: ...


class Notifier(Protocol):
    def send(self, *fields: str) -> None: ...


class Runner:
    def __init__(self, settings: PhoneSettings, *, run: RunFunction, notifier: Notifier, retry: RetryTimer,
                 schedule_changed: asyncio.Event, clock: Clock, reports_changed: asyncio.Event | None = None,
                 health_changed: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.queue = TriggerQueue()
        self.running: RunRequest | None = None
        self.progress: list[str] = []  # the running request's progress lines
        self.runs_started = 0
        self.last_reboot: str | None = None
        self._run_function = run
        self._notifier = notifier
        self._retry = retry
        self._schedule_changed = schedule_changed  # set after anything that may have changed the schedule
        self._reports_changed = reports_changed or asyncio.Event()  # set after each request: it may have queued one
        self._health_changed = health_changed  # called after each request: it may have changed what is pending
        self._wake = asyncio.Event()
        self._clock = clock  # monotonic: the check-sync spacing

    def request(self, request: RunRequest) -> RunRequest:
        """Queue a request; the entry it lives in (a mergeable one joins the pending follow-up)."""
        queued = self.queue.add(request)
        if queued.joined:
            # A NOTIFY flood joins one run packet by packet: its decision lines are already rate-limited.
            level = log.DEBUG if request.trigger is Trigger.CHECK_SYNC else log.INFO
            _log.log(level, "trigger %s: joins the queued run (triggers %s)", request.trigger.value,
                     ", ".join(dict.fromkeys(queued.request.triggers)))
            return queued.request
        self._wake.set()
        _log.info("trigger %s: %s queued%s", request.trigger.value, request.what(),
                  request.when(self._clock.monotonic()))
        return request

    async def serve(self) -> None:
        """The queue's one consumer (a task of the daemon's TaskGroup)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (wait := self.queue.wait_s(self._clock.monotonic())) is not None:
                if wait > 0:  # a check-sync within 10 s of the last: it waits, later triggers join it
                    await self._clock.sleep(wait)
                    continue
                await self.execute(self.queue.pop())

    async def execute(self, request: RunRequest) -> None:
        """One request from the queue. Whatever goes wrong in it stays in it: the service goes on."""
        try:
            if request.reboot_only:  # in the queue like a run, so a reboot never cuts a run short
                done = await asyncio.to_thread(hooks.run_reboot_hook, self.settings.config)
                self.last_reboot = done or "reboot ignored: hooks.reboot is unset"
                (_log.info if done == hooks.REBOOT_RAN else _log.warning)("check-sync reboot: %s", self.last_reboot)
            elif request.rollback is not None:
                await self._rollback(request, request.rollback)
            elif request.auto_rollback is not None:
                await self._auto_rollback(request, request.auto_rollback)
            elif request.confirm:
                self._confirm(request)
            else:
                await self._provision(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the service's boundary: a bug in one run must not end the daemon
            if isinstance(exc, ProvdError):  # e.g. the store could not record the run (a full disk): said
                _log.error("run (%s) failed: %s", ", ".join(request.triggers), exc)
            else:
                _log.exception("unexpected error in a run (%s); the daemon keeps serving",
                               ", ".join(request.triggers))
            report = self._record_failure(request, exc)
            _answer(request, ReportEvent(report.to_json()))
            if request.apply is None and request.rollback is None and not request.reboot_only:
                self._after(report, request)
        finally:
            self.running = None
            self._reports_changed.set()
            self._health_changed()

    def _record_failure(self, request: RunRequest, exc: Exception) -> RunReport:
        """The run that raised, recorded as failed (the run began it in the store and could not finish it):
        its placeholder completed with the error; the report the client gets."""
        message = str(exc) if isinstance(exc, ProvdError) else f"internal error: {type(exc).__name__}: {exc!r}"
        report = RunReport(trigger=request.trigger, started=now_iso())
        try:
            last = self.settings.store.last_run()
            if last is not None and last.get("outcome") == Outcome.RUNNING.value:  # ours: the one writer
                report = RunReport.from_json(last)
        except (ProvdError, ValueError) as again:  # e.g. a full disk: the next start marks it interrupted
            _log.error("cannot read the failed run: %s", again)
        report.outcome, report.errors, report.finished = Outcome.FAILED, [*report.errors, message], now_iso()
        if report.run is not None:
            try:
                self.settings.store.finish_run(report.run, report.to_json())
            except ProvdError as again:
                _log.error("cannot record the failed run: %s", again)
        return report

    async def _provision(self, request: RunRequest) -> None:
        self.running = request
        self.progress = []
        self.runs_started += 1
        self.queue.started(request, self._clock.monotonic())
        if request.trigger is not Trigger.RETRY and request.apply is None:  # a run replaces a pending retry
            self._retry.cancel()
        self._notifier.send(f"STATUS=provisioning ({', '.join(request.triggers)})")

        def progress(line: str) -> None:
            self.progress.append(line)
            _answer(request, ProgressEvent(line))

        try:
            if request.apply is not None:
                report = await self._apply(request, progress)
                if report is None:
                    return
            else:
                report = await self._run_function(self.settings, trigger=request.trigger, url=request.url,
                                                  restore=request.restore, dry_run=request.dry_run,
                                                  reboot=request.reboot, force=request.force, progress=progress)
        except asyncio.CancelledError:
            _answer(request, ReportEvent(self.settings.store.last_run() or {"outcome": "failed"}))
            raise
        _answer(request, ReportEvent(report.to_json()))
        self._notifier.send(f"STATUS=idle; last run {report.outcome.value}")
        self._after(report, request)

    async def _apply(self, request: RunRequest, progress: Callable[[str], None]) -> RunReport | None:
        """`provd apply` through the daemon: the bytes came in the request; a refused file is the client's
        error (as in-process), None then."""
        apply = request.apply
        assert apply is not None
        try:
            report = restore.apply_data(self.settings, apply.data, name=apply.name, url=apply.url or apply.name,
                                        progress=progress)
        except ProvdError as exc:
            _answer(request, ErrorEvent(str(exc)))
            return None
        await asyncio.to_thread(hooks.after_commit, self.settings.config, report)
        return report

    async def _rollback(self, request: RunRequest, generation: int) -> None:
        """`provd rollback` through the daemon; the change hooks follow its commit like any other's."""
        self.running = request
        try:
            gen, sections = self.settings.rollback(generation)
        except ProvdError as exc:
            _answer(request, ErrorEvent(str(exc)))
            return
        self._schedule_changed.set()
        _answer(request, RollbackEvent(gen, sections))
        if gen is not None:
            _log.info("rollback to generation %d: generation %d, sections %s", generation, gen, ", ".join(sections))
            for warning in await asyncio.to_thread(hooks.run_changed_hooks, self.settings.config, sections):
                _log.warning("rollback: %s", warning)

    async def _auto_rollback(self, request: RunRequest, failed: Pending) -> None:
        """The health gate failed `failed` (docs/design.md §10): back to its target as a run of trigger
        auto-rollback, recorded and reported like a run, its documents quarantined, the change hooks run."""
        store = self.settings.store
        pending = store.pending()
        if pending is None or pending.generation != failed.generation:  # confirmed or replaced meanwhile
            _log.info("health: rollback of generation %d not needed any more: it is no longer pending",
                      failed.generation)
            return
        report = RunReport(trigger=Trigger.AUTO_ROLLBACK, started=now_iso(), source=Source.EXPLICIT,
                           url=f"generation {failed.target}")
        report.rolled_back = RolledBack(failed.generation, failed.target, failed.last_failure, failed.checks)
        report.run = store.begin_run(Trigger.AUTO_ROLLBACK, report.started)
        self.running = request
        try:
            gen, sections = self.settings.rollback(failed.target, failed=failed, run=report.run,
                                                   report=report.to_json())
        except UnknownGeneration as exc:  # pruned meanwhile: nowhere to go back to; the probation ends
            store.update_pending(failed.generation, None)
            report.outcome, report.finished = Outcome.FAILED, now_iso()
            report.errors.append(f"generation {failed.generation} failed its health check, but {exc}")
            store.finish_run(report.run, report.to_json())
            _log.error("health: cannot roll back generation %d: %s", failed.generation, exc)
            return
        report.generation, report.sections_changed = gen, sections
        report.outcome = Outcome.APPLIED if gen is not None else Outcome.UNCHANGED
        report.warnings.append(f"generation {failed.generation} failed its health check ({failed.last_failure}); "
                               f"rolled back to generation {failed.target}; its documents are quarantined")
        if gen is not None:
            report.warnings += await asyncio.to_thread(hooks.run_changed_hooks, self.settings.config, sections)
        report.finished = now_iso()
        store.finish_run(report.run, report.to_json())
        self._schedule_changed.set()
        _log.warning("run #%s auto-rollback: generation %d failed its health check (%s); rolled back to %d as "
                     "generation %s, sections %s", report.run, failed.generation, failed.last_failure, failed.target,
                     gen if gen is not None else "(none: already equal)", ", ".join(sections) or "-")

    def _confirm(self, request: RunRequest) -> None:
        """`provd confirm` through the daemon: the pending generation confirmed by hand."""
        self.running = request
        try:
            generation = confirm_pending(self.settings, by="provd confirm")
        except ProvdError as exc:
            _answer(request, ErrorEvent(str(exc)))
            return
        _answer(request, ConfirmEvent(generation))

    def _after(self, report: RunReport, request: RunRequest) -> None:
        self._schedule_changed.set()  # the provisioning section may have changed the schedule
        if request.is_provisioning():  # dry runs, restores and applies neither retry nor clear a retry
            self._retry.after(report)


def _answer(request: RunRequest, event: Event) -> None:
    for listener in request.listeners:
        listener(event)
