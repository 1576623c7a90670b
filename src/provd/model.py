"""Values shared across layers: enums for kinds and outcomes, frozen dataclasses for results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ChangeAction(Enum):
    MERGED = "merged"
    REPLACED = "replaced"
    OPERATIONS = "operations"
    REJECTED = "rejected"


class Outcome(Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    WAITING = "waiting"


class Trigger(Enum):
    CLI = "cli"
    BOOT = "boot"
    SCHEDULE = "schedule"
    CHECK_SYNC = "check-sync"
    SIGHUP = "sighup"
    RETRY = "retry"
    APPLY = "apply"  # provd apply FILE: manual restore
    ROLLBACK = "rollback"
    FACTORY = "factory"  # the store's first generation: factory defaults


@dataclass
class SectionChange:
    """What one file did to one section; `errors` non-empty exactly when `action` is REJECTED."""

    section: str
    action: ChangeAction
    source: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    migrated: list[str] = field(default_factory=list)  # the migration steps that changed something

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"section": self.section, "action": self.action.value, "source": self.source}
        if self.migrated:
            out["migrated"] = self.migrated
        if self.warnings:
            out["warnings"] = self.warnings
        if self.errors:
            out["errors"] = self.errors
        return out


@dataclass
class RunReport:
    """One provisioning run, in the shape of docs/design.md §8 (stored, printed with --json, shown by status)."""

    trigger: str
    started: str
    dry_run: bool = False
    outcome: Outcome = Outcome.FAILED
    finished: str | None = None
    run: int | None = None
    source: str | None = None
    url: str | None = None
    attempts: list[dict[str, object]] = field(default_factory=list)
    files: list[dict[str, object]] = field(default_factory=list)
    sections_changed: list[str] = field(default_factory=list)
    generation: int | None = None
    changes: list[dict[str, object]] = field(default_factory=list)
    diff: list[dict[str, object]] = field(default_factory=list)  # dry runs: what would change
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retryable: bool | None = None  # failed runs: may the same run succeed later?
    retry_after_s: float | None = None  # a server's Retry-After (HTTP 429/503)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "run": self.run, "trigger": self.trigger, "dry_run": self.dry_run, "outcome": self.outcome.value,
            "started": self.started, "finished": self.finished, "source": self.source, "url": self.url,
            "attempts": self.attempts, "files": self.files, "sections_changed": self.sections_changed,
            "generation": self.generation, "changes": self.changes, "warnings": self.warnings,
            "errors": self.errors,
        }
        if self.dry_run:
            out["diff"] = self.diff
        if self.outcome is Outcome.FAILED:
            out["retryable"] = self.retryable
            out["retry_after_s"] = self.retry_after_s
        return out


@dataclass(frozen=True)
class Switches:
    """The `provisioning` section's say over discovery (read afresh for every run)."""

    dhcp: bool
    redirect: bool
    pbx: bool
    url: str


@dataclass(frozen=True)
class Device:
    """What the phone image knows of itself; the values markers are replaced with."""

    type: str  # D100 … D600
    serial: str
    mac: str  # upper case, no separators
    firmware: str


@dataclass(frozen=True)
class Generation:
    """One committed generation of the store."""

    number: int
    time: str
    trigger: str
    source: str
    sections: tuple[str, ...]
