"""`provd run`: the service. Triggers (boot, schedule, check-sync, control socket, SIGHUP, retry) feed one
runner; one run at a time, and triggers during a run coalesce into one follow-up run (docs/design.md §7).

Structured: `serve()` owns every task in one TaskGroup, so stopping cancels all of them and none is left
behind; a run cancelled midway has committed nothing or everything (the commit is one synchronous SQLite
transaction that cancellation cannot split). The runner waits on an event; the scheduler sleeps until the next
run, at most a minute at a time, so a wall clock stepped meanwhile (NTP's first sync) is noticed.

One writer (docs/design.md §2): while the daemon runs, `provd apply` and `provd rollback` come over the control socket
and are carried out here, in the same queue as the runs. One daemon: `runtime_dir/provd.lock` is held (flock)
before the socket or the SIP port is touched. One failed run never ends the service: an unexpected exception
is logged with its traceback, the run recorded as failed, and the daemon serves on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import random
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from provd import __version__, log
from provd.core import backoff, floods, schedule
from provd.core import control as protocol
from provd.core.checksync import Action, CheckSyncHandler, Decision
from provd.core.urls import redact
from provd.errors import ConfigError, ControlError, ProvdError
from provd.model import Outcome, RunReport, Trigger
from provd.run import device, hooks, provision, restore
from provd.service import control_client, sdnotify
from provd.settings.phone import PhoneSettings as Settings
from provd.settings.phone import now_iso

CHECK_SYNC_INTERVAL_S = 10.0  # at most one check-sync run started per 10 s (docs/design.md §7)
Listener = Callable[[dict[str, object]], None]
_log = log.get(__name__)


@dataclass
class RunRequest:
    trigger: Trigger
    url: str | None = None
    restore: bytes | None = None
    reboot: bool = False
    dry_run: bool = False
    reboot_only: bool = False  # notifySync <reboot/>: the reboot hook, no provisioning
    apply: protocol.Request | None = None  # `provd apply` (the file's bytes) through the daemon
    rollback: int | None = None  # `provd rollback GENERATION` through the daemon
    not_before: float = 0.0  # monotonic
    listeners: list[Listener] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    def mergeable(self) -> bool:
        return self.restore is None and not self.dry_run and not self.reboot_only and self.apply is None \
            and self.rollback is None


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


class Daemon:
    def __init__(self, settings: Settings, *, notifier: sdnotify.Notifier | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.config = settings.config
        self._notifier = notifier or sdnotify.Notifier()
        self._rng = rng or random.Random()
        self._queue: list[RunRequest] = []
        self._wake = asyncio.Event()
        self._schedule_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running: RunRequest | None = None
        self._progress: list[str] = []
        self._checksync = CheckSyncHandler(settings.catalog.sections)
        self._last_checksync_start = -CHECK_SYNC_INTERVAL_S
        self._retry_attempt = 0
        self._retry_task: asyncio.Task[None] | None = None
        self.next_scheduled: datetime | None = None
        self.last_reboot: str | None = None
        self.retry_at: datetime | None = None
        self.runs_started = 0
        self._group: asyncio.TaskGroup | None = None
        self._line_limit = protocol.max_line_bytes(self.config.http.max_file_bytes)
        self._clients: dict[asyncio.StreamWriter, bool] = {}  # open connections, oldest first: still silent?
        self._floods = floods.FloodLimiter()  # check-sync decisions: one line per second per sender
        self._flood_timer: asyncio.TimerHandle | None = None

    # --- triggers ---------------------------------------------------------------------------------------

    def request(self, request: RunRequest) -> RunRequest:
        """Queue a run; a mergeable request joins the pending follow-up instead of adding another."""
        request.triggers.append(request.trigger.value)
        if request.trigger is Trigger.CHECK_SYNC:
            request.not_before = max(request.not_before, self._last_checksync_start + CHECK_SYNC_INTERVAL_S)
        if request.mergeable():
            pending = next((r for r in self._queue if r.mergeable()), None)
            if pending is not None:
                pending.triggers.append(request.trigger.value)
                pending.url = request.url or pending.url
                pending.reboot = pending.reboot or request.reboot
                pending.not_before = max(pending.not_before, request.not_before)
                pending.listeners += request.listeners
                # A NOTIFY flood joins one run packet by packet: its decision lines are already rate-limited.
                level = log.DEBUG if request.trigger is Trigger.CHECK_SYNC else log.INFO
                _log.log(level, "trigger %s: joins the queued run (triggers %s)", request.trigger.value,
                         ", ".join(dict.fromkeys(pending.triggers)))
                return pending
        self._queue.append(request)
        self._wake.set()
        _log.info("trigger %s: %s queued%s", request.trigger.value, _what(request), _when(request))
        return request

    def stop(self) -> None:
        self._stopping.set()

    def hangup(self) -> None:
        """SIGHUP: provision now."""
        self.request(RunRequest(Trigger.SIGHUP))

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
            path = control_client.socket_path(runtime)
            try:
                path.unlink(missing_ok=True)  # left by a killed daemon: the lock says nobody serves it
                server = await asyncio.start_unix_server(self._client, path=str(path),
                                                         limit=self._line_limit)
                os.chmod(path, 0o660)
            except OSError as exc:
                raise ControlError(f"{path}: cannot listen on the control socket: {exc.strerror or exc}") from exc
            try:
                await self._serve(server)
            finally:
                path.unlink(missing_ok=True)
        finally:
            os.close(lock)

    async def _serve(self, server: asyncio.AbstractServer) -> None:
        sip_transport = None
        try:
            sip_transport = await self._open_sip_listener()
            _log.info("provd %s started: config %s, control socket %s, check-sync listener %s, pid %d", __version__,
                      self.config.path or "(none: defaults)", control_client.socket_path(self.config.paths.runtime_dir),
                      self.config.sip.listen or "off", os.getpid())
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._runner())
                group.create_task(self._scheduler())
                interval = sdnotify.watchdog_interval()
                if interval:
                    group.create_task(self._watchdog(interval))
                if self._active():
                    self.request(RunRequest(Trigger.BOOT))
                self._notifier.send("READY=1", "STATUS=idle")
                await self._stopping.wait()
                self._notifier.send("STOPPING=1")
                _log.info("stopping%s", ": the run in progress is cancelled" if self._running else "")
                raise _Stop
        except* _Stop:
            pass
        finally:
            self._group = None
            server.close()
            await server.wait_closed()
            if sip_transport is not None:
                sip_transport.close()
            self._cancel_retry()
            if self._flood_timer is not None:
                self._flood_timer.cancel()
            _log.info("provd stopped")

    def _active(self) -> bool:
        return self.settings.provisioning_active()

    def _cancel_retry(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            self._retry_task = None
            self.retry_at = None

    async def _watchdog(self, interval: float) -> None:
        while True:
            self._notifier.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _runner(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                request = self._queue[0]
                wait = request.not_before - loop.time()
                if wait > 0:  # a check-sync within 10 s of the last: it waits, later triggers join it
                    try:
                        async with asyncio.timeout(wait):
                            await self._stopping.wait()
                    except TimeoutError:
                        pass
                    continue
                self._queue.pop(0)
                await self._run(request)

    async def _run(self, request: RunRequest) -> None:
        """One request from the queue. Whatever goes wrong in it stays in it: the service goes on."""
        try:
            if request.reboot_only:  # in the queue like a run, so a reboot never cuts a run short
                done = await asyncio.to_thread(hooks.run_reboot_hook, self.config)
                self.last_reboot = done or "reboot ignored: hooks.reboot is unset"
                (_log.info if done == hooks.REBOOT_RAN else _log.warning)("check-sync reboot: %s", self.last_reboot)
            elif request.rollback is not None:
                self._rollback(request, request.rollback)
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
            report = self._record_failure(exc)
            _answer(request, {"event": "report", "report": report})
            if request.apply is None and request.rollback is None and not request.reboot_only:
                failed = RunReport(trigger=request.trigger, started=str(report.get("started") or ""),
                                   outcome=Outcome.FAILED)
                self._after(failed, request)
        finally:
            self._running = None

    def _record_failure(self, exc: Exception) -> dict[str, object]:
        """The run that raised, recorded as failed (the engine began it in the store and could not finish it);
        the report the client gets."""
        message = str(exc) if isinstance(exc, ProvdError) else f"internal error: {type(exc).__name__}: {exc!r}"
        report: dict[str, object] = {"outcome": "failed", "errors": [message], "finished": now_iso()}
        try:
            last = self.settings.store.last_run()
            if last is not None and last.get("outcome") == "running":  # ours: the daemon is the one writer
                run = last.pop("run")
                report = {**last, **report}
                self.settings.store.finish_run(int(str(run)), report)
                report["run"] = run
        except ProvdError as again:  # e.g. still a full disk: the next start marks it interrupted
            _log.error("cannot record the failed run: %s", again)
        return report

    async def _provision(self, request: RunRequest) -> None:
        loop = asyncio.get_running_loop()
        self._running = request
        self._progress = []
        self.runs_started += 1
        if Trigger.CHECK_SYNC.value in request.triggers:
            self._last_checksync_start = loop.time()
        if request.trigger is not Trigger.RETRY and request.apply is None:  # a run replaces a pending retry
            self._cancel_retry()
        self._notifier.send(f"STATUS=provisioning ({', '.join(request.triggers)})")

        def progress(line: str) -> None:
            self._progress.append(line)
            _answer(request, {"event": "progress", "line": line})

        try:
            if request.apply is not None:
                report = await self._apply(request, request.apply, progress)
                if report is None:
                    return
            else:
                report = await provision.run(self.settings, trigger=request.trigger, url=request.url,
                                          restore=request.restore, dry_run=request.dry_run, reboot=request.reboot,
                                          progress=progress)
        except asyncio.CancelledError:
            _answer(request, {"event": "report", "report": self.settings.store.last_run() or {"outcome": "failed"}})
            raise
        _answer(request, {"event": "report", "report": report.to_json()})
        self._notifier.send(f"STATUS=idle; last run {report.outcome.value}")
        self._after(report, request)

    async def _apply(self, request: RunRequest, apply: protocol.Request,
                     progress: Callable[[str], None]) -> RunReport | None:
        """`provd apply` through the daemon: the bytes came in the request; a refused file is the client's
        error (as in-process), None then."""
        try:
            report = restore.apply_data(self.settings, apply.data, name=apply.name, url=apply.url or apply.name,
                                              progress=progress)
        except ProvdError as exc:
            _answer(request, protocol.error(str(exc)))
            return None
        if report.generation is not None:
            await asyncio.to_thread(hooks.after_commit, self.config, report)
        return report

    def _rollback(self, request: RunRequest, generation: int) -> None:
        self._running = request
        try:
            gen, sections = self.settings.rollback(generation)
        except ProvdError as exc:
            _answer(request, protocol.error(str(exc)))
            return
        self._schedule_changed.set()
        _answer(request, {"event": "rollback", "generation": gen, "sections": sections})

    def _after(self, report: RunReport, request: RunRequest) -> None:
        self._schedule_changed.set()  # the provisioning section may have changed the schedule
        if request.dry_run or request.restore is not None or request.apply is not None:
            return
        if report.outcome is Outcome.FAILED:
            self._retry_attempt += 1
            delay = backoff.backoff_delay(self._retry_attempt, self._rng.random())
            if report.retry_after_s is not None:
                delay = max(delay, report.retry_after_s)
            self._cancel_retry()
            if self._group is not None:  # in the TaskGroup: stopping the daemon cancels it with the rest
                self._retry_task = self._group.create_task(self._retry(delay))
                self.retry_at = datetime.now(UTC) + timedelta(seconds=delay)
                _log.info("retry scheduled: attempt %d in %.1f s, at %s (run #%s failed%s)", self._retry_attempt,
                          delay, self.retry_at.isoformat(timespec="seconds"), report.run,
                          f"; the server asked for {report.retry_after_s:g} s" if report.retry_after_s else "")
        else:
            self._retry_attempt = 0

    async def _retry(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._retry_task = None
        self.retry_at = None
        self.request(RunRequest(Trigger.RETRY))

    async def _scheduler(self) -> None:
        """Sleep towards the next scheduled run a minute at a time; on each wake compare the wall clock with
        the monotonic one, so a step (NTP's first sync) is noticed: stepped past the run, it runs now;
        stepped elsewhere, the next run is computed afresh."""
        mac = device.device_from_config(self.config).mac
        zone = local_zone()
        fired: datetime | None = None
        while True:
            self._schedule_changed.clear()
            values = self.settings.execution_values()
            now = datetime.now(UTC)
            self.next_scheduled = None
            if self._active():  # strictly after a run already fired: a timer a hair early fires it once
                self.next_scheduled = schedule.next_run(schedule.parse_execution(values), mac=mac,
                                                        now=max(now, fired) if fired else now, zone=zone,
                                                        draw=self._rng.random())
            if self.next_scheduled is None:
                await self._schedule_changed.wait()
                continue
            stepped = False
            while True:
                wall, mono = time.time(), time.monotonic()
                wake = schedule.on_wake(self.next_scheduled, datetime.fromtimestamp(wall, UTC), stepped=stepped)
                if wake is schedule.Wake.FIRE:
                    fired = self.next_scheduled
                    self.request(RunRequest(Trigger.SCHEDULE))
                    break
                if wake is schedule.Wake.RECOMPUTE:
                    break
                pause = schedule.sleep_s(self.next_scheduled, datetime.fromtimestamp(wall, UTC))
                try:
                    async with asyncio.timeout(pause):
                        await self._schedule_changed.wait()
                    break  # the schedule changed: compute it again
                except TimeoutError:
                    pass
                stepped = schedule.clock_stepped(wall, mono, time.time(), time.monotonic())

    # --- check-sync -------------------------------------------------------------------------------------

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision:
        """Both doors (the UDP listener, `provd check-sync`) come here. Answer first, then act."""
        policy = self.settings.check_sync_policy()
        decision = self._checksync.handle(data, source=source, policy=policy, now=time.monotonic())
        self._log_decision(decision, source)
        if decision.action is Action.NONE:
            return decision
        if decision.action is Action.REBOOT:
            self.request(RunRequest(Trigger.CHECK_SYNC, reboot_only=True))
        elif decision.action is Action.RESTORE:
            self.request(RunRequest(Trigger.CHECK_SYNC, restore=decision.body, reboot=decision.reboot))
        else:
            self.request(RunRequest(Trigger.CHECK_SYNC, url=decision.url, reboot=decision.reboot))
        return decision

    def _log_decision(self, decision: Decision, source: tuple[str, int]) -> None:
        """Every decision is logged, but a flood from one sender costs at most one line a second (the rest at
        debug, and counted into a summary)."""
        answer = f"answered {decision.status}" if decision.status is not None else "not answered"
        line = f"check-sync from {source[0]}:{source[1]} (event {decision.event or '-'}): {answer}: {decision.reason}"
        admission = self._floods.admit(source[0], time.monotonic())
        if not admission.log:
            _log.debug("%s", line)
            self._arm_flood_timer()
            return
        if admission.suppressed:
            line += f" ({admission.suppressed} more NOTIFYs from {admission.sender} suppressed)"
        _log.info("%s", line)

    def _arm_flood_timer(self) -> None:
        due = self._floods.next_flush()
        if self._flood_timer is None and due is not None:
            loop = asyncio.get_running_loop()  # loop.time() is time.monotonic(), the limiter's clock
            self._flood_timer = loop.call_at(due, self._flush_floods)

    def _flush_floods(self) -> None:
        self._flood_timer = None
        for summary in self._floods.flush(time.monotonic()):
            _log.info("%d more NOTIFYs from %s suppressed", summary.suppressed, summary.sender)
        self._arm_flood_timer()

    async def _open_sip_listener(self) -> asyncio.DatagramTransport | None:
        listen = self.config.sip.listen
        if not listen:
            return None
        host, _, port = str(listen).rpartition(":")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host or "0.0.0.0", int(port)))
        except (OSError, ValueError) as exc:
            sock.close()
            raise ConfigError(f"sip.listen {listen}: cannot listen: {getattr(exc, 'strerror', None) or exc}") \
                from exc
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _SipProtocol(self), sock=sock)
        return transport

    # --- control socket ---------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: at most MAX_CLIENTS at once (the oldest still silent one makes room, else the new
        one is closed at once), IDLE_TIMEOUT_S for the request line, a bounded line, a checked request."""
        if len(self._clients) >= protocol.MAX_CLIENTS:
            silent = next((w for w, waiting in self._clients.items() if waiting), None)
            if silent is None:
                writer.close()
                return
            self._clients.pop(silent)
            silent.close()
        self._clients[writer] = True
        try:
            try:
                async with asyncio.timeout(protocol.IDLE_TIMEOUT_S):
                    line = await reader.readline()
            except TimeoutError:
                await _reply(writer, protocol.error(f"no request line within {protocol.IDLE_TIMEOUT_S:g} s"))
                return
            except ValueError:  # asyncio's LimitOverrunError, as readline() raises it
                await _reply(writer, protocol.error(f"request line over {self._line_limit} bytes"))
                return
            self._clients[writer] = False
            if not line.endswith(b"\n"):
                if line:
                    await _reply(writer, protocol.error("incomplete request line"))
                return
            try:
                request = protocol.parse_request(line, allow_file_urls=self._file_urls_allowed(writer))
            except ControlError as exc:
                await _reply(writer, protocol.error(str(exc)))
                return
            try:
                await self._command(request, writer)
            except (ConnectionError, asyncio.CancelledError, TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. an unreadable store: answered, serving on
                _log.exception("unexpected error answering %s", request.cmd)
                await _reply(writer, protocol.error(str(exc) if isinstance(exc, ProvdError) else
                                                    f"internal error: {type(exc).__name__}"))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # provd is stopping. The connection's task ends here: on Python 3.11 asyncio's stream callback
            # calls task.exception() on a cancelled handler and logs a spurious traceback.
            pass
        finally:
            self._clients.pop(writer, None)
            writer.close()

    def _file_urls_allowed(self, writer: asyncio.StreamWriter) -> bool:
        """`file:` URLs make the root daemon read a local file: only for a root peer (SO_PEERCRED), or when
        control.allow_file_urls says every member of the socket's group may."""
        if self.config.control.allow_file_urls is True:
            return True
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        creds: bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == 0)

    async def _command(self, request: protocol.Request, writer: asyncio.StreamWriter) -> None:
        def send(obj: dict[str, object]) -> None:
            if not writer.is_closing():
                writer.write(protocol.encode(obj))

        _log.debug("control socket: %s", request.cmd)
        if request.cmd == "status":
            send(self.status())
        elif request.cmd == "check-sync":
            decision = self.check_sync(request.data, (request.source, request.port))
            send({"status": decision.status, "accepted": decision.status == 200, "reason": decision.reason,
                  "response": base64.b64encode(decision.response).decode() if decision.response else None})
        else:  # queued: start, apply, rollback
            done = asyncio.Event()

            def listener(event: dict[str, object]) -> None:
                send(event)
                if event.get("event") in _FINAL_EVENTS:
                    done.set()

            if request.cmd == "start":
                queued = RunRequest(Trigger.CLI, url=request.url, dry_run=request.dry_run, listeners=[listener])
            elif request.cmd == "apply":
                queued = RunRequest(Trigger.APPLY, apply=request, listeners=[listener])
            else:
                queued = RunRequest(Trigger.ROLLBACK, rollback=request.generation, listeners=[listener])
            self.request(queued)
            send({"event": "queued", "running": self._running is not None})
            while not done.is_set():  # a heartbeat, so a client can tell a busy daemon from a stopped one
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(protocol.HEARTBEAT_S):
                        await done.wait()
                if not done.is_set():
                    send({"event": "alive"})
        async with asyncio.timeout(protocol.IDLE_TIMEOUT_S):  # a client that never reads is dropped
            await writer.drain()

    def status(self) -> dict[str, object]:
        running = self._running
        return {
            "state": "running" if running else "idle",
            "pid": os.getpid(),
            "running": {"triggers": running.triggers, "progress": self._progress[-20:]} if running else None,
            "queued": len(self._queue),
            "next_run": self.next_scheduled.isoformat() if self.next_scheduled else None,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "retry_attempt": self._retry_attempt,
            "last_report": self.settings.store.last_run(),
            "runs_started": self.runs_started,
        }


class _Stop(Exception):
    pass


_FINAL_EVENTS = ("report", "rollback", "error")


def _answer(request: RunRequest, event: dict[str, object]) -> None:
    for listener in request.listeners:
        listener(event)


async def _reply(writer: asyncio.StreamWriter, answer: dict[str, object]) -> None:
    """A refusal, sent before the connection is closed; a peer that does not read it is not waited for."""
    writer.write(protocol.encode(answer))
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1.0):
            await writer.drain()


def _take_lock(runtime: Path) -> int:
    """Hold `runtime_dir/provd.lock` (flock, released by the kernel when the process ends, however it ends);
    the descriptor. A second `provd run` on the same configuration stops here, before it touches the socket
    or the SIP port.

    Raises:
        ControlError: runtime_dir cannot be created or written, or another daemon holds the lock.
    """
    lock = control_client.lock_path(runtime)
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


def _what(request: RunRequest) -> str:
    if request.reboot_only:
        return "the reboot hook"
    if request.restore is not None:
        return "a restore of the check-sync body"
    kind = "a dry run" if request.dry_run else "a run"
    return f"{kind} from {redact(request.url)}" if request.url else kind


def _when(request: RunRequest) -> str:
    wait = request.not_before - time.monotonic()
    return f", starts in {wait:.0f} s (at most one check-sync run per 10 s)" if wait > 0.5 else ""


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a subclass of asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            decision = self._daemon.check_sync(data, (str(addr[0]), int(addr[1])))
        except Exception:  # noqa: BLE001 - one bad datagram must not deafen the listener
            _log.exception("unexpected error handling a datagram from %s", addr[0])
            return
        if decision.response is not None and self._transport is not None:
            self._transport.sendto(decision.response, addr)



