"""Values shared across layers: enums for kinds, sources and outcomes, frozen records for what a run did.

The report's parts (`Attempt`, `FileRecord`, `SectionChange`, `SectionDiff`) are typed here and become JSON
only at the edge (`to_json` for the store, `--json` and the control socket; `from_json` for a report read
back). No I/O and no heavy imports: `provd status` and `provd start` load this module on their way to the
daemon, so the records are NamedTuples and RunReport a slotted class; dataclasses would cost those commands
~40 ms of imports and class creation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import NamedTuple

# A run's progress lines, for a person watching (`provd start` prints them, the daemon streams them).
Progress = Callable[[str], None]


def quiet(_line: str) -> None:
    """The Progress of nobody watching."""


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
    QUARANTINED = "quarantined"  # the same documents as a rolled-back run: not applied again (docs/design.md §10)
    RUNNING = "running"  # the store's placeholder while a run is under way (docs/design.md §3)
    INTERRUPTED = "interrupted"  # a run whose process ended before it finished (killed, crashed)


class Trigger(Enum):
    CLI = "cli"
    BOOT = "boot"
    SCHEDULE = "schedule"
    CHECK_SYNC = "check-sync"
    SIGHUP = "sighup"
    RETRY = "retry"
    APPLY = "apply"  # provd apply FILE: manual restore
    ROLLBACK = "rollback"
    AUTO_ROLLBACK = "auto-rollback"  # the health gate's own rollback (docs/design.md §10)
    FACTORY = "factory"  # the store's first generation: factory defaults


class Source(Enum):
    """Where a run's URL came from: a discovery source, or given (`--url`, check-sync, `provd apply`)."""

    DHCP = "dhcp"
    REDIRECT = "redirect"
    MULTICAST = "multicast"
    CONFIGURED = "configured"  # provisioning/url
    EXPLICIT = "explicit"


class Family(Enum):
    """The IP family a source answered on (docs/design.md §11: the report says which)."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"


class AttemptResult(Enum):
    FOUND = "found"
    NONE = "none"
    FAILED = "failed"
    SKIPPED = "skipped"


class DocumentKind(Enum):
    PATCH = "patch"
    REFERENCE = "reference"
    OPERATIONS = "operations"


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Attempt(NamedTuple):
    """One discovery source tried (docs/design.md §6, §8 `attempts[]`). `url` is the URL found as it may be
    shown (password redacted by the source); `candidates` are the URLs to fetch, credentials and all.
    `error` is the ProvdError behind a `failed` result when there was one (its class and `retryable`); the
    report keeps only `detail`."""

    source: Source
    result: AttemptResult
    detail: str
    url: str | None = None
    candidates: tuple[str, ...] = ()
    error: Exception | None = None
    family: Family | None = None  # which IP family answered, where a source asks on both (DHCP, multicast)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"source": self.source.value, "result": self.result.value, "detail": self.detail}
        if self.url:
            out["url"] = self.url
        if self.family is not None:
            out["family"] = self.family.value  # docs/design.md §8: fields may be added
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Attempt:
        family = data.get("family")
        return cls(Source(data["source"]), AttemptResult(data["result"]), str(data.get("detail", "")),
                   _opt_str(data.get("url")), family=Family(family) if family in ("ipv4", "ipv6") else None)


class FileRecord(NamedTuple):
    """One file a run touched (docs/design.md §8 `files[]`): `url` after redirects with the password
    redacted, `kind` None when it failed before it was parsed."""

    url: str
    kind: DocumentKind | None
    status: int | None  # 200, 304 (cached), None for file:// or failure
    size: int
    cached: bool
    requested: str | None = None  # the URL asked for, when redirects led elsewhere
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"url": self.url, "type": self.kind.value if self.kind else None,
                                  "status": self.status, "bytes": self.size, "cached": self.cached}
        if self.requested is not None:
            out["requested"] = self.requested  # docs/design.md §8: fields may be added, `url` keeps its meaning
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FileRecord:
        kind = data.get("type")
        return cls(str(data.get("url", "")), DocumentKind(kind) if kind is not None else None,
                   _opt_int(data.get("status")), _opt_int(data.get("bytes")) or 0, data.get("cached") is True,
                   _opt_str(data.get("requested")), _opt_str(data.get("error")))


class SectionChange(NamedTuple):
    """What one file did to one section; `errors` non-empty exactly when `action` is REJECTED."""

    section: str
    action: ChangeAction
    source: str
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    migrated: tuple[str, ...] = ()  # the migration steps that changed something

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"section": self.section, "action": self.action.value, "source": self.source}
        if self.migrated:
            out["migrated"] = list(self.migrated)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.errors:
            out["errors"] = list(self.errors)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SectionChange:
        return cls(str(data["section"]), ChangeAction(data["action"]), str(data.get("source", "")),
                   _strings(data.get("warnings")), _strings(data.get("errors")), _strings(data.get("migrated")))


class SectionDiff(NamedTuple):
    """What a dry run would change in one section, as XPaths that name list entries by their key."""

    section: str
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"section": self.section, "added": list(self.added), "changed": list(self.changed),
                "removed": list(self.removed)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SectionDiff:
        return cls(str(data["section"]), _strings(data.get("added")), _strings(data.get("changed")),
                   _strings(data.get("removed")))


def _records(value: object) -> list[Mapping[str, object]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


class RunReport:
    """One provisioning run, in the shape of docs/design.md §8 (stored, printed with --json, shown by status).

    Not frozen, and honestly so: the run fills it in step by step (its number when the store begins it,
    attempts, files, changes, the outcome last). Its parts are frozen records. `trigger` is None only for
    a report read back that lacks one (the daemon's record of a run that failed before it began).
    """

    __slots__ = ("attempts", "changes", "diff", "dry_run", "errors", "files", "finished", "generation", "outcome",
                 "retry_after_s", "retryable", "rolled_back", "run", "sections_changed", "source", "started", "trigger",
                 "url", "warnings")

    def __init__(self, *, trigger: Trigger | None, started: str, dry_run: bool = False,
                 outcome: Outcome = Outcome.FAILED, finished: str | None = None, run: int | None = None,
                 source: Source | None = None, url: str | None = None, attempts: list[Attempt] | None = None,
                 files: list[FileRecord] | None = None, sections_changed: list[str] | None = None,
                 generation: int | None = None, changes: list[SectionChange] | None = None,
                 diff: list[SectionDiff] | None = None, warnings: list[str] | None = None,
                 errors: list[str] | None = None, retryable: bool | None = None,
                 retry_after_s: float | None = None, rolled_back: RolledBack | None = None) -> None:
        self.trigger = trigger
        self.started = started
        self.dry_run = dry_run
        self.outcome = outcome
        self.finished = finished
        self.run = run
        self.source = source
        self.url = url
        self.attempts: list[Attempt] = attempts if attempts is not None else []
        self.files: list[FileRecord] = files if files is not None else []
        self.sections_changed: list[str] = sections_changed if sections_changed is not None else []
        self.generation = generation
        self.changes: list[SectionChange] = changes if changes is not None else []
        self.diff: list[SectionDiff] = diff if diff is not None else []  # dry runs: what would change
        self.warnings: list[str] = warnings if warnings is not None else []
        self.errors: list[str] = errors if errors is not None else []
        self.retryable = retryable  # failed runs: may the same run succeed later?
        self.retry_after_s = retry_after_s  # a server's Retry-After (HTTP 429/503)
        self.rolled_back = rolled_back  # an automatic rollback: the generation that failed its health check

    def __repr__(self) -> str:
        return f"RunReport({self.to_json()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunReport) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable: not a dict key

    @property
    def family(self) -> Family | None:
        """The IP family the winning source answered on (docs/design.md §11), when it says."""
        return next((a.family for a in self.attempts if a.source is self.source and a.result is AttemptResult.FOUND),
                    None)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "run": self.run, "trigger": self.trigger.value if self.trigger else None, "dry_run": self.dry_run,
            "outcome": self.outcome.value, "started": self.started, "finished": self.finished,
            "source": self.source.value if self.source else None, "url": self.url,
            "attempts": [a.to_json() for a in self.attempts], "files": [f.to_json() for f in self.files],
            "sections_changed": self.sections_changed, "generation": self.generation,
            "changes": [c.to_json() for c in self.changes], "warnings": self.warnings, "errors": self.errors,
        }
        family = self.family
        if family is not None:
            out["family"] = family.value
        if self.dry_run:
            out["diff"] = [d.to_json() for d in self.diff]
        if self.outcome is Outcome.FAILED:
            out["retryable"] = self.retryable
            out["retry_after_s"] = self.retry_after_s
        if self.rolled_back is not None:
            out["event"] = "rolled_back"
            out["rolled_back"] = self.rolled_back.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RunReport:
        """A report as `to_json` (or the store's placeholder and interrupted marks) wrote it.

        Raises:
            ValueError: an enum value this provd does not know.
        """
        trigger, source, retry_after = data.get("trigger"), data.get("source"), data.get("retry_after_s")
        retryable, rolled_back = data.get("retryable"), data.get("rolled_back")
        return cls(
            trigger=Trigger(trigger) if trigger is not None else None, started=str(data.get("started") or ""),
            dry_run=data.get("dry_run") is True, outcome=Outcome(data.get("outcome", Outcome.FAILED.value)),
            finished=_opt_str(data.get("finished")), run=_opt_int(data.get("run")),
            source=Source(source) if source is not None else None, url=_opt_str(data.get("url")),
            attempts=[Attempt.from_json(a) for a in _records(data.get("attempts"))],
            files=[FileRecord.from_json(f) for f in _records(data.get("files"))],
            sections_changed=list(_strings(data.get("sections_changed"))), generation=_opt_int(data.get("generation")),
            changes=[SectionChange.from_json(c) for c in _records(data.get("changes"))],
            diff=[SectionDiff.from_json(d) for d in _records(data.get("diff"))],
            warnings=list(_strings(data.get("warnings"))), errors=list(_strings(data.get("errors"))),
            retryable=retryable if isinstance(retryable, bool) else None,
            retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else None,
            rolled_back=RolledBack.from_json(rolled_back) if isinstance(rolled_back, dict) else None,
        )


class RolledBack(NamedTuple):
    """What an automatic rollback's report says (docs/design.md §10): which generation failed, why, and
    where the settings went back to."""

    generation: int
    target: int
    reason: str
    checks: int

    def to_json(self) -> dict[str, object]:
        return {"generation": self.generation, "target": self.target, "reason": self.reason, "checks": self.checks}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RolledBack:
        return cls(_opt_int(data.get("generation")) or 0, _opt_int(data.get("target")) or 0,
                   str(data.get("reason") or ""), _opt_int(data.get("checks")) or 0)


class Switches(NamedTuple):
    """The `provisioning` section's say over discovery (read afresh for every run)."""

    dhcp: bool
    redirect: bool
    pbx: bool
    url: str


class Device(NamedTuple):
    """What the phone image knows of itself; the values markers are replaced with."""

    type: str  # D100 … D600
    serial: str
    mac: str  # upper case, no separators
    firmware: str


class Generation(NamedTuple):
    """One committed generation of the store."""

    number: int
    time: str
    trigger: Trigger
    source: str
    sections: tuple[str, ...]
