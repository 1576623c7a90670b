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


@dataclass(frozen=True)
class Generation:
    """One committed generation of the store."""

    number: int
    time: str
    trigger: str
    source: str
    sections: tuple[str, ...]
