"""The daemon's trigger queue (docs/design.md §7): one run at a time; a mergeable request joins the pending
follow-up instead of adding another; at most one check-sync run started per CHECK_SYNC_INTERVAL_S; and which
check-sync decision queues what. Pure: the monotonic time is a parameter (`now`); the daemon waits and logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from provd.core.checksync import Action, Decision
from provd.core.control import ApplyRequest, Event
from provd.core.health import Pending
from provd.core.urls import redact
from provd.model import Trigger

CHECK_SYNC_INTERVAL_S = 10.0  # at most one check-sync run started per 10 s (docs/design.md §7)
Listener = Callable[[Event], None]


@dataclass
class RunRequest:
    """One entry of the queue: a run, the reboot hook, an apply or a rollback, and who waits for its events."""

    trigger: Trigger
    url: str | None = None
    restore: bytes | None = None
    reboot: bool = False
    dry_run: bool = False
    reboot_only: bool = False  # notifySync <reboot/>: the reboot hook, no provisioning
    apply: ApplyRequest | None = None  # `provd apply` (the file's bytes) through the daemon
    rollback: int | None = None  # `provd rollback GENERATION` through the daemon
    force: bool = False  # `provd start --force`: documents in quarantine are applied (docs/design.md §10)
    confirm: bool = False  # `provd confirm` through the daemon
    auto_rollback: Pending | None = None  # the health gate failed this pending generation: roll it back
    not_before: float = 0.0  # monotonic
    listeners: list[Listener] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    def is_provisioning(self) -> bool:
        """A run of the normal kind (no dry run, restore, apply, rollback or reboot alone): only such runs
        join a pending follow-up, and only their failure schedules a retry, their success clears one."""
        return not self.dry_run and self.restore is None and self.apply is None and self.rollback is None \
            and not self.reboot_only and not self.confirm and self.auto_rollback is None

    def what(self) -> str:
        """For the log line: what was queued."""
        if self.reboot_only:
            return "the reboot hook"
        if self.confirm:
            return "a confirmation of the pending generation"
        if self.auto_rollback is not None:
            return f"a rollback of generation {self.auto_rollback.generation} to {self.auto_rollback.target}"
        if self.rollback is not None:
            return f"a rollback to generation {self.rollback}"
        if self.restore is not None:
            return "a restore of the check-sync body"
        kind = "a dry run" if self.dry_run else "a run"
        return f"{kind} from {redact(self.url)}" if self.url else kind

    def when(self, now: float) -> str:
        """For the log line: when it starts, if it must wait."""
        wait = self.not_before - now
        return f", starts in {wait:.0f} s (at most one check-sync run per 10 s)" if wait > 0.5 else ""


@dataclass(frozen=True)
class Queued:
    """Where a request went: `request` is the entry it lives in (itself, or the pending run it joined)."""

    request: RunRequest
    joined: bool


class TriggerQueue:
    def __init__(self, *, check_sync_interval: float = CHECK_SYNC_INTERVAL_S) -> None:
        self._interval = check_sync_interval
        self._pending: list[RunRequest] = []
        self._last_check_sync_start = -check_sync_interval

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request: RunRequest) -> Queued:
        """Queue `request`; a mergeable one joins the pending mergeable run (its URL wins, a reboot is kept,
        the later start time holds, its listeners hear that run)."""
        request.triggers.append(request.trigger.value)
        if request.trigger is Trigger.CHECK_SYNC:
            request.not_before = max(request.not_before, self._last_check_sync_start + self._interval)
        if request.is_provisioning():
            pending = next((r for r in self._pending if r.is_provisioning()), None)
            if pending is not None:
                pending.triggers.append(request.trigger.value)
                pending.url = request.url or pending.url
                pending.reboot = pending.reboot or request.reboot
                pending.force = pending.force or request.force
                pending.not_before = max(pending.not_before, request.not_before)
                pending.listeners += request.listeners
                return Queued(pending, joined=True)
        self._pending.append(request)
        return Queued(request, joined=False)

    def wait_s(self, now: float) -> float | None:
        """Seconds until the head of the queue may start (0: now); None when the queue is empty."""
        if not self._pending:
            return None
        return max(0.0, self._pending[0].not_before - now)

    def pop(self) -> RunRequest:
        """The head of the queue, taken out (call when `wait_s` is 0).

        Raises:
            IndexError: the queue is empty.
        """
        return self._pending.pop(0)

    def started(self, request: RunRequest, now: float) -> None:
        """A provisioning run began: one carrying a check-sync trigger spaces the next check-sync run."""
        if Trigger.CHECK_SYNC.value in request.triggers:
            self._last_check_sync_start = now


def check_sync_request(decision: Decision) -> RunRequest | None:
    """What an accepted check-sync queues (both doors, docs/design.md §6): the reboot hook alone, a restore of
    the body, or a run (from the decision's URL, else the normal sources); None for no action."""
    if decision.action is Action.NONE:
        return None
    if decision.action is Action.REBOOT:
        return RunRequest(Trigger.CHECK_SYNC, reboot_only=True)
    if decision.action is Action.RESTORE:
        return RunRequest(Trigger.CHECK_SYNC, restore=decision.body, reboot=decision.reboot)
    return RunRequest(Trigger.CHECK_SYNC, url=decision.url, reboot=decision.reboot)
