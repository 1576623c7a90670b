"""`provd run`: the service (docs/design.md §7). Wires the jobs, each in its own module: the runner and its trigger
queue (service/runner, core/triggers), the retry timer, the scheduler, the check-sync door and its UDP
listener, the control socket; holds the lock and builds the status.

Structured: `serve()` owns every task in one TaskGroup (runner, scheduler, watchdog, retry timer, each control
connection), so stopping cancels all of them (the run first: its client still hears the report) and none is
left behind; a run cancelled midway has committed nothing or everything (the commit is one synchronous SQLite
transaction that cancellation cannot split).
One writer (docs/design.md §2): while the daemon runs, `provd apply` and `provd rollback` come over the
control socket and are carried out here, in the same queue as the runs. One daemon: the lock file in runtime_dir
(core/control.lock_path) is held (flock) before the socket or the SIP port is touched.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
from pathlib import Path

from provd import __version__, log
from provd.core import control as protocol
from provd.core.checksync import Decision
from provd.core.health import status_of
from provd.core.triggers import RunRequest
from provd.errors import ControlError, ProvdError
from provd.model import Trigger
from provd.ports import Clock, SystemClock
from provd.run import provision
from provd.service import sdnotify
from provd.service.control_server import ControlServer
from provd.service.health_gate import HealthGate
from provd.service.report_sender import ReportSender
from provd.service.retry_timer import RetryTimer
from provd.service.runner import Notifier, RunFunction, Runner
from provd.service.scheduler import Scheduler
from provd.service.sip_listener import CheckSyncDoor, open_listener
from provd.settings.phone import PhoneSettings

_log = log.get(__name__)


class Daemon:
    def __init__(self, settings: PhoneSettings, *, notifier: Notifier | None = None, rng: random.Random | None = None,
                 run: RunFunction = provision.run, clock: Clock | None = None) -> None:
        self.settings = settings
        self.config = settings.config
        self._notifier = notifier or sdnotify.Notifier()
        rng = rng or random.Random()
        clock = clock or SystemClock()
        self._stopping = asyncio.Event()
        schedule_changed = asyncio.Event()
        self.reports_changed = asyncio.Event()  # the outbox may hold a new report (docs/design.md §10)
        self.retry = RetryTimer(self.request, rng, clock)
        self.gate = HealthGate(settings, request=self.request, reports_changed=self.reports_changed, clock=clock) \
            if self.config.health.check else None
        self.runner = Runner(settings, run=run, notifier=self._notifier, retry=self.retry,
                             schedule_changed=schedule_changed, clock=clock, reports_changed=self.reports_changed,
                             health_changed=self.gate.changed if self.gate else lambda: None)
        self.scheduler = Scheduler(settings, request=self.request, rng=rng, changed=schedule_changed, clock=clock)
        self.door = CheckSyncDoor(settings, self.request)
        self.sender = ReportSender(settings, self.reports_changed, clock, rng)  # docs/design.md §10
        self.control = ControlServer(self, max_file_bytes=self.config.http.max_file_bytes,
                                     allow_file_urls=self.config.control.allow_file_urls is True)

    # --- triggers ---------------------------------------------------------------------------------------

    def request(self, request: RunRequest) -> RunRequest:
        """Queue a run; a mergeable request joins the pending follow-up instead of adding another."""
        return self.runner.request(request)

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision:
        """Both doors (the UDP listener, `provd check-sync`) come here. Answer first, then act."""
        return self.door.check_sync(data, source)

    def stop(self) -> None:
        self._stopping.set()

    def hangup(self) -> None:
        """SIGHUP: provision now."""
        self.request(RunRequest(Trigger.SIGHUP))

    def busy(self) -> bool:
        return self.runner.running is not None

    # --- the service ------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Take the lock, mark what a killed daemon left running, listen, serve until stopped.

        Raises:
            ControlError: another daemon holds the lock, or runtime_dir cannot be used.
            ConfigError: sip.listen cannot be bound.
            StoreError: the store cannot be opened.
        """
        runtime = self.config.paths.runtime_dir
        lock = _take_lock(runtime)  # before anything is touched: a second daemon stops here
        try:
            marked = self.settings.store.mark_interrupted()  # runs a killed provd left "running" (docs/design.md §3)
            if marked:
                _log.warning("run %s was left running by an earlier provd: marked interrupted",
                             ", ".join(f"#{n}" for n in marked))
            path = protocol.socket_path(runtime)
            await self.control.listen(path)
            try:
                await self._serve(path)
            finally:
                path.unlink(missing_ok=True)
        finally:
            os.close(lock)

    async def _serve(self, path: Path) -> None:
        sip_transport = None
        try:
            listen = self.config.sip.listen
            if listen:
                sip_transport = await open_listener(str(listen), self.door)
            _log.info("provd %s started: config %s, control socket %s, check-sync listener %s, pid %d", __version__,
                      self.config.path or "(none: defaults)", path, listen or "off", os.getpid())
            if listen:
                self.door.review_allowlist()  # an entry that matches nobody is said at start, not at the first NOTIFY
            async with asyncio.TaskGroup() as group:
                self.control.start(group)
                self.retry.start(group)
                runner = group.create_task(self.runner.serve())
                group.create_task(self.scheduler.serve())
                if self.gate is not None:
                    group.create_task(self.gate.serve())
                if self.config.report.url is not None:
                    self.reports_changed.set()  # a backlog from before a restart is sent now
                    group.create_task(self.sender.serve())
                interval = sdnotify.watchdog_interval()
                if interval:
                    group.create_task(self._watchdog(interval))
                if self.settings.provisioning_active():
                    self.request(RunRequest(Trigger.BOOT))
                self._notifier.send("READY=1", "STATUS=idle")
                await self._stopping.wait()
                self._notifier.send("STOPPING=1")
                _log.info("stopping%s", ": the run in progress is cancelled" if self.busy() else "")
                # The run first, so its client still hears the final report; then every other task.
                runner.cancel()
                await asyncio.wait([runner])
                raise _Stop
        except* _Stop:
            pass
        finally:
            self.retry.stop()
            await self.control.close()
            if sip_transport is not None:
                sip_transport.close()
            self.door.close()
            _log.info("provd stopped")

    async def _watchdog(self, interval: float) -> None:
        while True:
            self._notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    def status(self) -> protocol.Status:
        running = self.runner.running
        next_run, retry_at = self.scheduler.next_scheduled, self.retry.retry_at
        return protocol.Status(
            state="running" if running else "idle",
            pid=os.getpid(),
            running=protocol.RunningStatus(running.triggers, self.runner.progress[-20:]) if running else None,
            queued=len(self.runner.queue),
            next_run=next_run.isoformat() if next_run else None,
            retry_at=retry_at.isoformat() if retry_at else None,
            retry_attempt=self.retry.state.attempt,
            last_report=self.settings.store.last_run(),
            runs_started=self.runner.runs_started,
            health=self._health(),
        )

    def _health(self) -> dict[str, object] | None:
        try:
            pending = self.settings.store.pending()
        except ProvdError as exc:
            return {"error": str(exc)}
        return status_of(pending, self.gate.next_check if self.gate else None)


class _Stop(Exception):
    pass


def _take_lock(runtime: Path) -> int:
    """Hold the lock file in runtime_dir (flock, released by the kernel when the process ends, however it ends);
    the descriptor. A second `provd run` on the same configuration stops here, before it touches the socket
    or the SIP port.

    Raises:
        ControlError: runtime_dir cannot be created or written, or another daemon holds the lock.
    """
    lock = protocol.lock_path(runtime)
    try:
        runtime.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ControlError(f"{runtime}: runtime_dir cannot be used: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ControlError(f"{lock}: another provd run (pid {holder}) serves this configuration") from None
    except OSError as exc:
        os.close(fd)
        raise ControlError(f"{lock}: cannot lock: {exc.strerror or exc}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
