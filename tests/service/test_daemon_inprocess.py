"""The daemon in-process, with typed fakes of its ports: the run (provision.run's signature), the service
manager's notifier and the random draw. The queue's coalescing, the retry timer, the control socket's typed
messages and a clean stop are checked in milliseconds, by waiting on events (with timeouts), not by sleeping.
The end-to-end tests (test_daemon.py) run the real daemon as systemd does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import provd
from provd import config as config_mod
from provd.core import control
from provd.core.triggers import RunRequest
from provd.model import Outcome, Trigger
from provd.run import restore
from provd.service import control_client
from provd.service.daemon import Daemon
from provd.settings.phone import PhoneSettings
from tests.support.fakes import Call, FakeClock, FakeNotifier, FakeRun, FixedDraw

PACKAGE = str(Path(provd.__file__).parent) + "/"  # where provd's own code runs from
WAIT_S = 5.0  # the longest any event here may take: a hang fails fast (as FakeRun.next_call waits)


@pytest.fixture
def settings(tmp_path: Path) -> PhoneSettings:
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": "00:09:52:00:00:0E", "interface": "lo"},
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"}}))
    settings = PhoneSettings(config_mod.load(str(cfg)))
    # No boot run and no schedule (provisioning/active); check-sync from loopback allowed.
    restore.apply_data(settings, b"<provisioning><active>false</active><sip><active>true</active><allowlist>"
                       b"<allowlistEntry>127.0.0.1</allowlistEntry></allowlist></sip></provisioning>",
                       name="set-up.xml", url="set-up.xml")
    return settings


@asynccontextmanager
async def serving(daemon: Daemon, notifier: FakeNotifier) -> AsyncIterator[Daemon]:
    """The daemon serving until the block ends; then stopped, and nothing of it left running."""
    task = asyncio.create_task(daemon.serve())
    ready = asyncio.create_task(notifier.ready.wait())
    await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # the daemon could not start: its error
    assert notifier.ready.is_set()
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, WAIT_S)
        assert [t for t in asyncio.all_tasks() if _ours(t)] == []  # none of the daemon's tasks left behind
        assert notifier.sent[-1] == "STOPPING=1"


def test_triggers_during_a_run_coalesce_into_one_follow_up(settings: PhoneSettings) -> None:
    async def scenario() -> None:
        run, notifier = FakeRun(hold=True), FakeNotifier()
        async with serving(Daemon(settings, notifier=notifier, run=run), notifier) as daemon:
            daemon.hangup()
            assert (await run.next_call()).trigger is Trigger.SIGHUP
            for trigger, url in ((Trigger.CLI, None), (Trigger.SCHEDULE, None), (Trigger.CLI, "http://b/x.xml"),
                                 (Trigger.SIGHUP, None)):
                daemon.request(_request(trigger, url))
            status = daemon.status()
            assert (status.state, status.queued, status.runs_started) == ("running", 1, 1)
            assert status.running is not None and status.running.triggers == ["sighup"]
            run.release()
            follow_up = await run.next_call()
            assert follow_up == Call(Trigger.CLI, "http://b/x.xml", None, False, False)
            running = daemon.status().running
            assert running is not None and running.triggers == ["cli", "schedule", "cli", "sighup"]
            run.release()
            await _until(lambda: daemon.status().state == "idle")
        assert len(run.calls) == 2

    asyncio.run(scenario())


def test_failed_run_retries_and_a_success_resets(settings: PhoneSettings) -> None:
    async def scenario() -> None:
        run, notifier = FakeRun(outcomes=[Outcome.FAILED, Outcome.FAILED]), FakeNotifier()
        daemon = Daemon(settings, notifier=notifier, run=run, rng=FixedDraw(0.0))  # no jitter: at once
        async with serving(daemon, notifier):
            daemon.hangup()
            assert [(await run.next_call()).trigger for _ in range(3)] == [Trigger.SIGHUP, Trigger.RETRY,
                                                                             Trigger.RETRY]
            await _until(lambda: daemon.status().state == "idle")
            status = daemon.status()
            assert (status.retry_attempt, status.retry_at, status.runs_started) == (0, None, 3)

    asyncio.run(scenario())


def test_stop_with_a_retry_pending_and_a_run_in_progress(settings: PhoneSettings) -> None:
    """Stopping cancels the run, the retry timer and the waiting client's connection: serve() returns
    promptly and no task of the daemon is left (checked by `serving`)."""
    async def scenario() -> None:
        run, notifier = FakeRun(outcomes=[Outcome.FAILED], hold=True), FakeNotifier()
        daemon = Daemon(settings, notifier=notifier, run=run, rng=FixedDraw(0.5))
        runtime = settings.config.paths.runtime_dir
        async with serving(daemon, notifier):
            daemon.hangup()
            await run.next_call()
            run.release()
            await _until(lambda: daemon.status().retry_at is not None)
            assert daemon.status().retry_attempt == 1
            reader, writer = await asyncio.open_unix_connection(str(control.socket_path(runtime)))
            writer.write(control.encode(control.StartRequest(None, False)))
            assert _event(await reader.readline()) == control.QueuedEvent(False)
            await run.next_call()  # the client's run holds: the daemon is stopped in the middle of it
        tail = await asyncio.wait_for(reader.read(), WAIT_S)
        events = [_event(line + b"\n") for line in tail.splitlines()]
        assert isinstance(events[-1], control.ReportEvent)  # the client hears the end (the store's last run)
        writer.close()
        assert not control.socket_path(runtime).exists()

    asyncio.run(scenario())


def test_control_socket_speaks_the_typed_protocol(settings: PhoneSettings) -> None:
    """The real client (in a thread) and the daemon in this loop: status, a queued start's events."""
    async def scenario() -> None:
        run, notifier = FakeRun(), FakeNotifier()
        runtime = settings.config.paths.runtime_dir
        async with serving(Daemon(settings, notifier=notifier, run=run), notifier):
            status = await asyncio.to_thread(control_client.status, runtime)
            assert (status.state, status.running, status.queued, status.runs_started) == ("idle", None, 0, 0)
            events = await asyncio.to_thread(lambda: list(control_client.events(
                runtime, control.StartRequest("http://a/x.xml", True))))
            assert events[:2] == [control.QueuedEvent(False), control.ProgressEvent("fetch http://a/x.xml")]
            assert isinstance(events[-1], control.ReportEvent) and events[-1].report["outcome"] == "applied"
            assert run.calls == [Call(Trigger.CLI, "http://a/x.xml", None, True, False)]
            answer = await asyncio.to_thread(control_client.check_sync, runtime,
                                             control.CheckSyncRequest("127.0.0.1", 5060, b"SIP/2.0 200 OK\r\n\r\n"))
            assert answer == control.CheckSyncAnswer(None, "a response (200) is never answered", None)

    asyncio.run(scenario())


NOTIFY = (b"NOTIFY sip:201@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch}\r\n"
          b"From: <sip:pbx@127.0.0.1>;tag=1\r\nTo: <sip:201@127.0.0.1>\r\nCall-ID: {branch}@127.0.0.1\r\n"
          b"CSeq: 1 NOTIFY\r\nEvent: check-sync\r\nContent-Length: {length}\r\n\r\n{body}")


def notify(branch: str, body: bytes = b"") -> bytes:
    return NOTIFY.replace(b"{branch}", branch.encode()).replace(b"{length}", str(len(body)).encode()) \
        .replace(b"{body}", body)


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(b"", Call(Trigger.CHECK_SYNC, None, None, False, False), id="plain"),
    pytest.param(b"<notifySync><checkSync><url>http://c/x.xml</url></checkSync></notifySync>",
                 Call(Trigger.CHECK_SYNC, "http://c/x.xml", None, False, False), id="url"),
    pytest.param(b"<keys/>", Call(Trigger.CHECK_SYNC, None, b"<keys/>", False, False), id="restore"),
])
def test_check_sync_queues_what_the_decision_says(settings: PhoneSettings, body: bytes, expected: Call) -> None:
    async def scenario() -> None:
        run, notifier = FakeRun(), FakeNotifier()
        async with serving(Daemon(settings, notifier=notifier, run=run), notifier) as daemon:
            decision = daemon.check_sync(notify("a1", body), ("127.0.0.1", 5070))
            assert decision.status == 200
            assert await run.next_call() == expected
            again = daemon.check_sync(notify("a1", body), ("127.0.0.1", 5070))  # a retransmission
            assert (again.status, again.retransmission) == (200, True)
            await _until(lambda: daemon.status().state == "idle")
            assert daemon.status().queued == 0 and len(run.calls) == 1

    asyncio.run(scenario())


def test_check_sync_runs_are_spaced_10_s_apart(settings: PhoneSettings) -> None:
    """A second accepted NOTIFY right after a check-sync run starts waits out the 10 s (on a virtual clock);
    triggers meanwhile join it."""
    async def scenario() -> None:
        run, notifier, clock = FakeRun(), FakeNotifier(), FakeClock(start=1000.0)
        async with serving(Daemon(settings, notifier=notifier, run=run, clock=clock), notifier) as daemon:
            assert daemon.check_sync(notify("b1"), ("127.0.0.1", 5070)).status == 200
            await run.next_call()
            await _until(lambda: daemon.status().state == "idle")
            assert daemon.check_sync(notify("b2"), ("127.0.0.1", 5070)).status == 200
            daemon.hangup()  # joins the waiting check-sync run
            assert (await run.next_call()).trigger is Trigger.CHECK_SYNC
            assert clock.monotonic() == 1010.0 and clock.slept == [10.0]
            await _until(lambda: daemon.status().state == "idle")
            assert len(run.calls) == 2

    asyncio.run(scenario())


def _ours(task: asyncio.Task[object]) -> bool:
    """A task running provd's code (the test's own fakes aside: they live outside the package)."""
    code = getattr(task.get_coro(), "cr_code", None)
    return task is not asyncio.current_task() and code is not None and code.co_filename.startswith(PACKAGE)


def _request(trigger: Trigger, url: str | None) -> RunRequest:
    return RunRequest(trigger, url=url)


def _event(line: bytes) -> control.Event | None:
    return control.decode_event(control.decode_answer(line))


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`, yielding to the loop between checks (no wall-clock sleep orders anything)."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0)
