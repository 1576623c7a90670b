"""`provd run`: the service. Triggers (boot, schedule, check-sync, control socket, SIGHUP, retry) feed one
runner; one run at a time, and triggers during a run coalesce into one follow-up run (DESIGN §7).

Structured: `serve()` owns every task in one TaskGroup, so stopping cancels all of them and none is left
behind; a run cancelled midway has committed nothing or everything (the commit is one synchronous SQLite
transaction that cancellation cannot split). No polling: the scheduler sleeps until the next run (at most
an hour at a time, so a changed wall clock is noticed), the runner waits on an event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from provd import device, engine, hooks, sdnotify
from provd.core import backoff, schedule
from provd.core.checksync import Action, CheckSyncHandler, Decision
from provd.local import Settings
from provd.model import Outcome, RunReport, Trigger

CHECK_SYNC_INTERVAL_S = 10.0  # at most one check-sync run started per 10 s (DESIGN §7)
Listener = Callable[[dict[str, object]], None]


@dataclass
class RunRequest:
    trigger: Trigger
    url: str | None = None
    restore: bytes | None = None
    reboot: bool = False
    dry_run: bool = False
    reboot_only: bool = False  # notifySync <reboot/>: the reboot hook, no provisioning
    not_before: float = 0.0  # monotonic
    listeners: list[Listener] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    def mergeable(self) -> bool:
        return self.restore is None and not self.dry_run and not self.reboot_only


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
                return pending
        self._queue.append(request)
        self._wake.set()
        return request

    def stop(self) -> None:
        self._stopping.set()

    def hangup(self) -> None:
        """SIGHUP: provision now."""
        self.request(RunRequest(Trigger.SIGHUP))

    # --- the service ------------------------------------------------------------------------------------

    async def serve(self) -> None:
        self.settings.store.mark_interrupted()  # runs a killed provd left "running" (DESIGN §3)
        runtime = self.config.runtime_dir
        runtime.mkdir(parents=True, exist_ok=True)
        path = runtime / "provd.sock"
        path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._client, path=str(path))
        os.chmod(path, 0o660)
        sip_transport = await self._open_sip_listener()
        try:
            async with asyncio.TaskGroup() as group:
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
                raise _Stop
        except* _Stop:
            pass
        finally:
            server.close()
            await server.wait_closed()
            if sip_transport is not None:
                sip_transport.close()
            path.unlink(missing_ok=True)
            self._cancel_retry()

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
        if request.reboot_only:  # in the queue like a run, so a reboot never cuts a run short
            self.last_reboot = await asyncio.to_thread(hooks.run_reboot_hook, self.config) \
                or "reboot ignored: hooks.reboot is unset"
            return
        loop = asyncio.get_running_loop()
        self._running = request
        self._progress = []
        self.runs_started += 1
        if Trigger.CHECK_SYNC.value in request.triggers:
            self._last_checksync_start = loop.time()
        if request.trigger is not Trigger.RETRY:  # any other run replaces a pending retry
            self._cancel_retry()
        self._notifier.send(f"STATUS=provisioning ({', '.join(request.triggers)})")

        def progress(line: str) -> None:
            self._progress.append(line)
            for listener in request.listeners:
                listener({"event": "progress", "line": line})

        try:
            report = await engine.run(self.settings, trigger=request.trigger.value, url=request.url,
                                      restore=request.restore, dry_run=request.dry_run, reboot=request.reboot,
                                      progress=progress)
        except asyncio.CancelledError:
            for listener in request.listeners:
                listener({"event": "report", "report": self.settings.store.last_run() or {"outcome": "failed"}})
            raise
        finally:
            self._running = None
        for listener in request.listeners:
            listener({"event": "report", "report": report.to_json()})
        self._notifier.send(f"STATUS=idle; last run {report.outcome.value}")
        self._after(report, request)

    def _after(self, report: RunReport, request: RunRequest) -> None:
        self._schedule_changed.set()  # the provisioning section may have changed the schedule
        if request.dry_run or request.restore is not None:
            return
        if report.outcome is Outcome.FAILED:
            self._retry_attempt += 1
            delay = backoff.backoff_delay(self._retry_attempt, self._rng.random())
            if report.retry_after_s is not None:
                delay = max(delay, report.retry_after_s)
            self._retry_task = asyncio.get_running_loop().create_task(self._retry(delay))
            self.retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        else:
            self._retry_attempt = 0

    async def _retry(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._retry_task = None
        self.retry_at = None
        self.request(RunRequest(Trigger.RETRY))

    async def _scheduler(self) -> None:
        mac = device.device_from_config(self.config).mac
        zone = local_zone()
        fired: datetime | None = None
        while True:
            self._schedule_changed.clear()
            values = self.settings.execution_values()
            self.next_scheduled = None
            if self._active():
                self.next_scheduled = schedule.next_run(schedule.parse_execution(values), mac=mac,
                                                        now=datetime.now(UTC), zone=zone, draw=self._rng.random())
            if self.next_scheduled is None:
                await self._schedule_changed.wait()
                continue
            remaining = (self.next_scheduled - datetime.now(UTC)).total_seconds()
            try:
                # At most an hour at a time: a wall clock set by NTP meanwhile is noticed.
                async with asyncio.timeout(max(0.0, min(remaining, 3600.0))):
                    await self._schedule_changed.wait()
                continue  # the schedule changed: compute it again
            except TimeoutError:
                pass
            due = datetime.now(UTC) >= self.next_scheduled - timedelta(seconds=1)
            if due and self.next_scheduled != fired:  # a timer a hair early must not fire the same run twice
                fired = self.next_scheduled
                self.request(RunRequest(Trigger.SCHEDULE))

    # --- check-sync -------------------------------------------------------------------------------------

    def check_sync(self, data: bytes, source: tuple[str, int]) -> Decision:
        """Both doors (the UDP listener, `provd check-sync`) come here. Answer first, then act."""
        policy = self.settings.check_sync_policy()
        decision = self._checksync.handle(data, source=source, policy=policy, now=time.monotonic())
        if decision.action is Action.NONE:
            return decision
        if decision.action is Action.REBOOT:
            self.request(RunRequest(Trigger.CHECK_SYNC, reboot_only=True))
        elif decision.action is Action.RESTORE:
            self.request(RunRequest(Trigger.CHECK_SYNC, restore=decision.body, reboot=decision.reboot))
        else:
            self.request(RunRequest(Trigger.CHECK_SYNC, url=decision.url, reboot=decision.reboot))
        return decision

    async def _open_sip_listener(self) -> asyncio.DatagramTransport | None:
        listen = self.config.get("sip.listen")
        if not listen:
            return None
        host, _, port = str(listen).rpartition(":")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or "0.0.0.0", int(port)))
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _SipProtocol(self), sock=sock)
        return transport

    # --- control socket ---------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                message = json.loads(line or b"{}")
            except ValueError:
                message = {}
            await self._command(message if isinstance(message, dict) else {}, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # provd is stopping. The connection's task ends here: on Python 3.11 asyncio's stream callback
            # calls task.exception() on a cancelled handler and logs a spurious traceback.
            pass
        finally:
            writer.close()

    async def _command(self, message: dict[str, object], writer: asyncio.StreamWriter) -> None:
        def send(obj: dict[str, object]) -> None:
            if not writer.is_closing():
                writer.write(json.dumps(obj).encode() + b"\n")

        command = message.get("cmd")
        if command == "status":
            send(self.status())
        elif command == "start":
            done = asyncio.Event()

            def listener(event: dict[str, object]) -> None:
                send(event)
                if event.get("event") == "report":
                    done.set()

            url = message.get("url")
            self.request(RunRequest(Trigger.CLI, url=url if isinstance(url, str) else None,
                                    dry_run=bool(message.get("dry_run")), listeners=[listener]))
            send({"event": "queued", "running": self._running is not None})
            await done.wait()
        elif command == "check-sync":
            data = base64.b64decode(str(message.get("data", "")))
            source = (str(message.get("source", "127.0.0.1")), int(str(message.get("port", 5060))))
            decision = self.check_sync(data, source)
            send({"status": decision.status, "accepted": decision.status == 200, "reason": decision.reason,
                  "response": base64.b64encode(decision.response).decode() if decision.response else None})
        else:
            send({"error": f"unknown command {command!r}"})
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


class _SipProtocol(asyncio.DatagramProtocol):
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython's selector datagram transport is not a subclass of asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        decision = self._daemon.check_sync(data, (str(addr[0]), int(addr[1])))
        if decision.response is not None and self._transport is not None:
            self._transport.sendto(decision.response, addr)


def socket_path(settings: Settings) -> Path:
    return settings.config.runtime_dir / "provd.sock"

