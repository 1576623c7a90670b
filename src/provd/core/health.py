"""The health gate's state (docs/design.md §10), as values and decisions. Pure: time is a parameter.

A generation committed by a run (any trigger but `rollback` and `auto-rollback`) is *pending* while
`health.check` is set: the check runs every `health.interval_s` until it passes (confirmed) or
`health.window_s` has passed since the commit (rolled back to the last confirmed generation). Only one
generation is pending at a time: a commit while one is pending replaces it and keeps its rollback target,
so a chain of bad pushes still falls back to the last generation that proved healthy. The state is stored
(`Pending.to_json`), so a restart inside the window resumes the checks and one after it rolls back at once.

The daemon owns the timer and runs the check; this module only says what comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import NamedTuple

from provd.model import Trigger

UNGATED = frozenset({Trigger.ROLLBACK, Trigger.AUTO_ROLLBACK})  # a way back is never itself on probation


class Pending(NamedTuple):
    """A generation on probation: `target` is where a failed gate rolls back to."""

    generation: int
    target: int
    committed_at: float  # wall-clock seconds of the commit
    deadline: float  # committed_at + health.window_s
    checks: int = 0  # checks run so far
    last_failure: str = ""  # why the last check failed, for the rollback's report
    fingerprint: tuple[str, ...] = ()  # the run's documents (core.quarantine), quarantined by a rollback

    def to_json(self) -> dict[str, object]:
        return {"generation": self.generation, "target": self.target, "committed_at": self.committed_at,
                "deadline": self.deadline, "checks": self.checks, "last_failure": self.last_failure,
                "fingerprint": list(self.fingerprint)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Pending:
        """Raises: ValueError (a field missing or of the wrong type: the stored state is not ours)."""
        def number(key: str) -> float:
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"pending health state: {key} is not a number")
            return float(value)

        generation, target = int(number("generation")), int(number("target"))
        digests = data.get("fingerprint") or []
        if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
            raise ValueError("pending health state: fingerprint is not a list of digests")
        return cls(generation, target, number("committed_at"), number("deadline"), int(number("checks")),
                   str(data.get("last_failure") or ""), tuple(digests))


class Step(Enum):
    CHECK = "check"  # run the check at `Next.at`
    CONFIRMED = "confirmed"  # the pending generation is confirmed: nothing is pending any more
    ROLL_BACK = "roll-back"  # roll back to `Next.pending.target` now
    IDLE = "idle"  # nothing is pending


class Next(NamedTuple):
    step: Step
    pending: Pending | None  # the state to store from now on (None: nothing pending), or the one to roll back
    at: float | None = None  # for CHECK: when


def after_commit(pending: Pending | None, *, trigger: Trigger, generation: int, previous: int, now: float,
                 window_s: float, interval_s: float, gated: bool, fingerprint: tuple[str, ...] = ()) -> Next:
    """A run committed `generation` (the one before it was `previous`) from the documents `fingerprint`.
    `gated`: health.check is set."""
    if not gated or trigger in UNGATED:
        return Next(Step.IDLE, None)  # a rollback ends any probation: its target is known good or chosen
    target = pending.target if pending is not None else previous
    fresh = Pending(generation, target, now, now + window_s, fingerprint=fingerprint)
    return Next(Step.CHECK, fresh, min(now + interval_s, fresh.deadline))


def after_check(pending: Pending, *, passed: bool, failure: str, now: float, interval_s: float) -> Next:
    """The check ran at `now`: confirmed, another check, or (the window has passed) a rollback."""
    if passed:
        return Next(Step.CONFIRMED, None)
    failed = pending._replace(checks=pending.checks + 1, last_failure=failure)
    if now >= failed.deadline:
        return Next(Step.ROLL_BACK, failed)
    return Next(Step.CHECK, failed, min(now + interval_s, failed.deadline))


def at_start(pending: Pending | None, *, now: float) -> Next:
    """The daemon starts with `pending` stored: resume the checks inside the window, roll back after it. A
    state whose commit lies in the future (the clock was set back) is checked at once, never waited for."""
    if pending is None:
        return Next(Step.IDLE, None)
    if now >= pending.deadline:
        reason = pending.last_failure or "not confirmed before the health window ended (provd was not running)"
        return Next(Step.ROLL_BACK, pending._replace(last_failure=reason))
    return Next(Step.CHECK, pending, now)


def confirm(pending: Pending | None) -> Next:
    """`provd confirm`: the pending generation is confirmed by hand; IDLE when nothing was pending."""
    return Next(Step.IDLE if pending is None else Step.CONFIRMED, None)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def confirmation(pending: Pending, *, by: str, now: float) -> dict[str, object]:
    """The `confirmed` event queued for report.url (docs/design.md §10)."""
    return {"event": "confirmed", "generation": pending.generation, "time": iso(now), "checks": pending.checks,
            "by": by}


def status_of(pending: Pending | None, next_check: float | None = None) -> dict[str, object] | None:
    """What `provd status` shows of the pending generation: which, until when, how it went so far."""
    if pending is None:
        return None
    return {"pending": pending.generation, "rollback_to": pending.target, "committed": iso(pending.committed_at),
            "deadline": iso(pending.deadline), "checks": pending.checks, "last_failure": pending.last_failure or None,
            "next_check": iso(next_check) if next_check is not None else None}
