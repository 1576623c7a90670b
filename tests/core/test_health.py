"""The health gate's decisions (docs/design.md §10) as tables: after a commit, after a check, at start, and
`provd confirm`. Time is a parameter; nothing waits."""

from __future__ import annotations

import pytest

from provd.core.health import Next, Pending, Step, after_check, after_commit, at_start, confirm
from provd.model import Trigger

WINDOW, INTERVAL = 300.0, 15.0


def committed(generation: int = 8, previous: int = 7, *, now: float = 1000.0, pending: Pending | None = None,
              trigger: Trigger = Trigger.SCHEDULE, gated: bool = True) -> Next:
    return after_commit(pending, trigger=trigger, generation=generation, previous=previous, now=now,
                        window_s=WINDOW, interval_s=INTERVAL, gated=gated)


def test_a_commit_is_pending_with_the_previous_generation_as_its_target() -> None:
    step = committed()
    assert step == Next(Step.CHECK, Pending(8, 7, 1000.0, 1300.0), 1015.0)


@pytest.mark.parametrize(("trigger", "gated"), [
    pytest.param(Trigger.SCHEDULE, False, id="no-health-check-configured"),
    pytest.param(Trigger.ROLLBACK, True, id="manual-rollback"),
    pytest.param(Trigger.AUTO_ROLLBACK, True, id="auto-rollback"),
])
def test_ungated_commits_leave_nothing_pending(trigger: Trigger, gated: bool) -> None:
    assert committed(trigger=trigger, gated=gated, pending=Pending(8, 7, 0.0, 300.0)) == Next(Step.IDLE, None)


def test_a_commit_while_one_is_pending_replaces_it_and_keeps_the_last_confirmed_target() -> None:
    first = committed(8, 7, now=1000.0).pending
    second = committed(9, 8, now=1100.0, pending=first)
    assert second.pending == Pending(9, 7, 1100.0, 1400.0)  # not 8: 8 was never confirmed


def test_the_first_check_never_lies_beyond_the_window() -> None:
    step = after_commit(None, trigger=Trigger.CLI, generation=2, previous=1, now=0.0, window_s=10.0, interval_s=15.0,
                        gated=True)
    assert step.at == 10.0


def test_a_passing_check_confirms() -> None:
    assert after_check(Pending(8, 7, 0.0, 300.0), passed=True, failure="", now=15.0, interval_s=INTERVAL) == \
        Next(Step.CONFIRMED, None)


def test_a_failing_check_inside_the_window_checks_again_and_remembers_why() -> None:
    step = after_check(Pending(8, 7, 0.0, 300.0), passed=False, failure="exit 1", now=15.0, interval_s=INTERVAL)
    assert step == Next(Step.CHECK, Pending(8, 7, 0.0, 300.0, 1, "exit 1"), 30.0)


def test_the_last_check_before_the_deadline_is_at_the_deadline() -> None:
    step = after_check(Pending(8, 7, 0.0, 300.0, 19), passed=False, failure="exit 1", now=290.0, interval_s=15.0)
    assert (step.step, step.at) == (Step.CHECK, 300.0)


def test_a_failing_check_at_the_deadline_rolls_back_to_the_target() -> None:
    step = after_check(Pending(8, 7, 0.0, 300.0, 19), passed=False, failure="timed out after 10 s", now=300.0,
                       interval_s=INTERVAL)
    assert step == Next(Step.ROLL_BACK, Pending(8, 7, 0.0, 300.0, 20, "timed out after 10 s"))


@pytest.mark.parametrize(("stored", "now", "expected"), [
    pytest.param(None, 50.0, Next(Step.IDLE, None), id="nothing-stored"),
    pytest.param(Pending(8, 7, 0.0, 300.0, 3, "exit 1"), 120.0, Next(Step.CHECK, Pending(8, 7, 0.0, 300.0, 3, "exit 1"),
                                                                     120.0), id="inside-the-window-resumes-at-once"),
    pytest.param(Pending(8, 7, 0.0, 300.0, 3, "exit 1"), 900.0,
                 Next(Step.ROLL_BACK, Pending(8, 7, 0.0, 300.0, 3, "exit 1")), id="after-the-window-rolls-back"),
    pytest.param(Pending(8, 7, 0.0, 300.0), 300.0,
                 Next(Step.ROLL_BACK, Pending(8, 7, 0.0, 300.0, 0, "not confirmed before the health window ended "
                                                                   "(provd was not running)")),
                 id="never-checked-says-why"),
    pytest.param(Pending(8, 7, 5000.0, 5300.0), 100.0, Next(Step.CHECK, Pending(8, 7, 5000.0, 5300.0), 100.0),
                 id="clock-set-back-checks-at-once"),
])
def test_at_start(stored: Pending | None, now: float, expected: Next) -> None:
    assert at_start(stored, now=now) == expected


def test_confirm_by_hand() -> None:
    assert confirm(Pending(8, 7, 0.0, 300.0)) == Next(Step.CONFIRMED, None)
    assert confirm(None) == Next(Step.IDLE, None)


def test_the_stored_state_round_trips_and_refuses_what_is_not_ours() -> None:
    state = Pending(8, 7, 1000.5, 1300.5, 2, "exit 3")
    assert Pending.from_json(state.to_json()) == state
    for broken in ({}, {**state.to_json(), "deadline": "soon"}, {**state.to_json(), "generation": True}):
        with pytest.raises(ValueError, match="pending health state"):
            Pending.from_json(broken)
