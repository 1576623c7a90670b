"""The daemon's trigger queue as tables: which requests join the pending follow-up, the check-sync spacing (the
time passed in), and what each check-sync decision queues."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from provd.core.checksync import Action, Decision
from provd.core.control import ApplyRequest
from provd.core.triggers import CHECK_SYNC_INTERVAL_S, RunRequest, TriggerQueue, check_sync_request
from provd.model import Trigger

T = Trigger


@dataclass(frozen=True)
class Entry:
    """What a queue entry looks like afterwards."""

    triggers: tuple[str, ...]
    url: str | None = None
    reboot: bool = False


def entries(queue: TriggerQueue) -> list[Entry]:
    out = []
    while queue.wait_s(1e9) is not None:
        request = queue.pop()
        out.append(Entry(tuple(request.triggers), request.url, request.reboot))
    return out


@pytest.mark.parametrize(("requests", "expected"), [
    pytest.param([RunRequest(T.SIGHUP)], [Entry(("sighup",))], id="one"),
    pytest.param([RunRequest(T.SIGHUP), RunRequest(T.CLI), RunRequest(T.SCHEDULE)],
                 [Entry(("sighup", "cli", "schedule"))], id="mergeable-join-one"),
    pytest.param([RunRequest(T.CLI, url="http://a/"), RunRequest(T.CLI, url="http://b/")],
                 [Entry(("cli", "cli"), "http://b/")], id="latest-url-wins"),
    pytest.param([RunRequest(T.CLI, url="http://a/"), RunRequest(T.SIGHUP)],
                 [Entry(("cli", "sighup"), "http://a/")], id="url-kept-by-a-plain-trigger"),
    pytest.param([RunRequest(T.CHECK_SYNC, reboot=True), RunRequest(T.SCHEDULE)],
                 [Entry(("check-sync", "schedule"), reboot=True)], id="reboot-kept"),
    pytest.param([RunRequest(T.CLI, dry_run=True), RunRequest(T.SIGHUP), RunRequest(T.CLI, dry_run=True)],
                 [Entry(("cli",)), Entry(("sighup",)), Entry(("cli",))], id="dry-runs-apart"),
    pytest.param([RunRequest(T.CHECK_SYNC, restore=b"<keys/>"), RunRequest(T.SIGHUP)],
                 [Entry(("check-sync",)), Entry(("sighup",))], id="restore-apart"),
    pytest.param([RunRequest(T.CHECK_SYNC, reboot_only=True), RunRequest(T.SIGHUP)],
                 [Entry(("check-sync",)), Entry(("sighup",))], id="reboot-hook-apart"),
    pytest.param([RunRequest(T.APPLY, apply=ApplyRequest(b"<keys/>", "a.xml")), RunRequest(T.ROLLBACK, rollback=2),
                  RunRequest(T.SIGHUP), RunRequest(T.CLI)],
                 [Entry(("apply",)), Entry(("rollback",)), Entry(("sighup", "cli"))], id="apply-rollback-in-order"),
    pytest.param([RunRequest(T.SIGHUP), RunRequest(T.CLI, dry_run=True), RunRequest(T.RETRY)],
                 [Entry(("sighup", "retry")), Entry(("cli",))], id="joins-past-a-dry-run"),
])
def test_coalescing(requests: list[RunRequest], expected: list[Entry]) -> None:
    queue = TriggerQueue()
    for request in requests:
        queue.add(request)
    assert entries(queue) == expected


def test_joined_request_hands_over_its_listeners() -> None:
    queue = TriggerQueue()
    heard: list[object] = []
    first = queue.add(RunRequest(T.SIGHUP))
    second = queue.add(RunRequest(T.CLI, listeners=[heard.append]))
    assert (first.joined, second.joined, second.request is first.request) == (False, True, True)
    assert first.request.listeners == [heard.append]


@pytest.mark.parametrize(("started", "requests", "now", "wait"), [
    pytest.param(None, [T.CHECK_SYNC], 5.0, 0.0, id="first-check-sync-at-once"),
    pytest.param(100.0, [T.CHECK_SYNC], 103.0, 7.0, id="within-10s-waits"),
    pytest.param(100.0, [T.CHECK_SYNC], 110.0, 0.0, id="after-10s-at-once"),
    pytest.param(100.0, [T.SIGHUP], 103.0, 0.0, id="other-triggers-not-spaced"),
    pytest.param(100.0, [T.CHECK_SYNC, T.SIGHUP], 103.0, 7.0, id="a-joining-trigger-waits-with-it"),
    pytest.param(100.0, [T.SIGHUP, T.CHECK_SYNC], 103.0, 7.0, id="a-joining-check-sync-delays-the-run"),
])
def test_check_sync_spacing(started: float | None, requests: list[Trigger], now: float, wait: float) -> None:
    queue = TriggerQueue()
    if started is not None:
        earlier = RunRequest(T.CHECK_SYNC)
        earlier.triggers.append("check-sync")
        queue.started(earlier, started)
    for trigger in requests:
        queue.add(RunRequest(trigger))
    assert queue.wait_s(now) == wait
    assert len(queue) == 1


def test_only_a_run_with_a_check_sync_trigger_spaces() -> None:
    queue = TriggerQueue()
    queue.started(RunRequest(T.SIGHUP, triggers=["sighup"]), 100.0)
    queue.add(RunRequest(T.CHECK_SYNC))
    assert queue.wait_s(100.0) == 0.0
    assert CHECK_SYNC_INTERVAL_S == 10.0


def test_empty_queue_has_nothing_to_wait_for() -> None:
    assert TriggerQueue().wait_s(0.0) is None


@pytest.mark.parametrize(("request_", "now", "text"), [
    pytest.param(RunRequest(T.SIGHUP), 0.0, "a run", id="run"),
    pytest.param(RunRequest(T.CLI, dry_run=True, url="http://u:pw@a/x.xml"), 0.0, "a dry run from http://u:***@a/x.xml",
                 id="dry-run-redacted"),
    pytest.param(RunRequest(T.CHECK_SYNC, reboot_only=True), 0.0, "the reboot hook", id="reboot"),
    pytest.param(RunRequest(T.CHECK_SYNC, restore=b"<keys/>", not_before=7.0), 0.0,
                 "a restore of the check-sync body, starts in 7 s (at most one check-sync run per 10 s)",
                 id="restore-waiting"),
    pytest.param(RunRequest(T.CHECK_SYNC, not_before=7.4), 7.0, "a run", id="half-a-second-is-now"),
])
def test_log_words(request_: RunRequest, now: float, text: str) -> None:
    assert request_.what() + request_.when(now) == text


def decision(action: Action, *, url: str | None = None, body: bytes | None = None, reboot: bool = False) -> Decision:
    return Decision(200, action, "why", b"SIP/2.0 200 OK\r\n\r\n", url=url, body=body, reboot=reboot)


@pytest.mark.parametrize(("given", "expected"), [
    pytest.param(decision(Action.NONE), None, id="none"),
    pytest.param(Decision(403, Action.NONE, "refused"), None, id="refused"),
    pytest.param(decision(Action.RUN), RunRequest(T.CHECK_SYNC), id="run"),
    pytest.param(decision(Action.RUN, reboot=True), RunRequest(T.CHECK_SYNC, reboot=True), id="run-then-reboot"),
    pytest.param(decision(Action.RUN_URL, url="http://a/x.xml"), RunRequest(T.CHECK_SYNC, url="http://a/x.xml"),
                 id="run-url"),
    pytest.param(decision(Action.RESTORE, body=b"<keys/>", reboot=True),
                 RunRequest(T.CHECK_SYNC, restore=b"<keys/>", reboot=True), id="restore"),
    pytest.param(decision(Action.REBOOT, reboot=True), RunRequest(T.CHECK_SYNC, reboot_only=True), id="reboot-only"),
])
def test_check_sync_dispatch(given: Decision, expected: RunRequest | None) -> None:
    assert check_sync_request(given) == expected
