"""The phone's settings as one facade (`PhoneSettings`): the catalog and the store opened together; parse and
validate a file, apply documents to a working copy and commit them as one generation, render them for `show`
and `backup`, roll back, and read the `provisioning` section's own switches. Every run commits through it,
the daemon's and the CLI's alike; recording a run is the run's business (`provd.run`), not this one's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from provd import xmltree
from provd.config import Config
from provd.core import diff
from provd.core.documents import Document
from provd.core.health import Pending, after_commit
from provd.core.quarantine import Fingerprint
from provd.errors import StoreConflict, UnknownSection
from provd.model import Outcome, Progress, RunReport, Switches, Trigger, quiet
from provd.settings.apply import apply_document
from provd.settings.catalog import Catalog
from provd.settings.store import BytesPayload, Gate, Payload, Store
from provd.settings.working_copy import WorkingCopy
from provd.xmltree import Element

if TYPE_CHECKING:
    from provd.core.checksync import Policy


def _flag(section: Element, path: str) -> bool:
    return (section.findtext(path) or "").strip() in ("true", "1")  # xs:boolean


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class PhoneSettings:
    """The settings of this phone: one per command (or per daemon), closed when it is done."""

    def __init__(self, config: Config, catalog: Catalog | None = None, *, read_only: bool = False) -> None:
        """`read_only`: the store is opened for reading only (`show`, `backup`, `history`, `status`), so
        these work on a full or read-only disk."""
        self.config = config
        self.catalog = catalog or Catalog()
        self.read_only = read_only
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            factory: dict[str, tuple[str, Payload]] = {
                name: (self.catalog.current(name), xmltree.Serialized(self.catalog.default(name)))
                       for name in sorted(self.catalog.sections)}
            opener = Store.open_reader if self.read_only else Store.open
            report = self.config.report
            self._store = opener(self.config.paths.state_dir / "settings.db", factory,
                                 outbox=report.max_pending if report.url else None)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def apply_documents(self, documents: list[Document], report: RunReport, *,
                        progress: Progress = quiet, again: Callable[[], list[Document]] | None = None,
                        fingerprint: Fingerprint = ()) -> None:
        """Apply `documents` in order to one working copy and commit it as one generation (unless the
        report is a dry run, which gets the per-section diff instead). The commit is health-gated
        (docs/design.md §10) when `health.check` is set: pending, with `fingerprint` (the run's documents) to
        quarantine should it be rolled back; and the run's report is queued with it (`Store.commit`).

        One writer without a daemon (docs/design.md §2): the commit checks that no section it writes was committed
        by another process since this run read it. On such a conflict the run is applied once more on the
        fresh state, from `again()` (the same documents unconsumed: applying consumes them); a second
        conflict, or none to re-apply, fails the run with StoreConflict and nothing committed.

        Raises:
            DocumentError: a document as a whole was unusable; nothing is committed.
            StoreConflict: see above. StoreError: the commit failed.
        """
        marks = (len(report.changes), len(report.warnings), len(report.errors))
        try:
            self._apply_once(documents, report, progress, fingerprint)
        except StoreConflict as exc:
            if again is None:
                raise
            del report.changes[marks[0]:], report.warnings[marks[1]:], report.errors[marks[2]:]
            progress(f"  conflict: {exc}; applying again on the fresh state")
            self._apply_once(again(), report, progress, fingerprint)
            report.warnings.append(f"another writer committed meanwhile; applied again on its result ({exc})")

    def _apply_once(self, documents: list[Document], report: RunReport, progress: Progress,
                    fingerprint: Fingerprint) -> None:
        store = self.store
        wc = WorkingCopy(self.catalog, store.section)
        for doc in documents:
            report.warnings += doc.warnings
            for change in apply_document(self.catalog, wc, doc):
                report.changes.append(change)
                report.warnings += change.warnings
                report.errors += change.errors
                progress(f"  {change.section}: {change.action.value}")
                for line in change.migrated:
                    progress(f"    migrated {line}")
        changed = wc.changed()
        report.sections_changed = sorted(changed)
        report.outcome = Outcome.APPLIED if changed else Outcome.UNCHANGED
        if report.dry_run:
            for name, (_version, serialized) in changed.items():
                before = WorkingCopy(self.catalog, store.section).get(name)
                report.diff.append(diff.diff(before, serialized.element))
        elif changed:
            assert report.trigger is not None, "a run being applied has its trigger"
            report.generation = store.commit(changed, trigger=report.trigger, source=report.url or "",
                                             report=report.to_json(), read_at=wc.read_at, run=report.run,
                                             gate=self._gate(report.trigger, fingerprint))
        wc.release()

    def _gate(self, trigger: Trigger, fingerprint: Fingerprint) -> Gate:
        """What a commit by `trigger` leaves pending (core.health.after_commit), decided inside the commit's
        transaction on the state stored there: a commit while health.check is unset, or a rollback, ends any
        probation."""
        health = self.config.health

        def gate(stored: Pending | None, generation: int, previous: int) -> Pending | None:
            return after_commit(stored, trigger=trigger, generation=generation, previous=previous, now=time.time(),
                                window_s=health.window_s, interval_s=health.interval_s,
                                gated=health.check is not None, fingerprint=fingerprint).pending

        return gate

    def section_xml(self, name: str, generation: int | None = None) -> str:
        if name not in self.catalog.sections:
            raise UnknownSection(f"unknown section {name!r}; known: {', '.join(sorted(self.catalog.sections))}")
        wc = WorkingCopy(self.catalog, lambda n: self.store.section(n, generation))
        return xmltree.serialize(wc.get(name))

    def _provisioning(self) -> Element:
        """The current `provisioning` section. Read afresh on every call: how provisioning behaves is
        itself provisioned, and a change applies at once."""
        return WorkingCopy(self.catalog, self.store.section).get("provisioning")

    def discovery_switches(self) -> Switches:
        section = self._provisioning()
        return Switches(dhcp=_flag(section, "dhcp"), redirect=_flag(section, "redirect"), pbx=_flag(section, "pbx"),
                        url=(section.findtext("url") or "").strip())

    def provisioning_active(self) -> bool:
        """provisioning/active: boot and scheduled runs happen only while it is true."""
        return _flag(self._provisioning(), "active")

    def execution_values(self) -> dict[str, str]:
        """The leaves of provisioning/execution, as text."""
        execution = self._provisioning().find("execution")
        if execution is None:
            return {}
        return {str(child.tag): (child.text or "").strip() for child in execution if isinstance(child.tag, str)}

    def check_sync_policy(self) -> Policy:
        """provisioning/sip/active and the allowlist, read afresh for every NOTIFY."""
        from provd.core.checksync import Policy  # the SIP codec pulls in OpenSSL (secrets): not for apply

        section = self._provisioning()
        entries = tuple((e.text or "").strip() for e in section.iterfind("sip/allowlist/allowlistEntry"))
        return Policy(active=_flag(section, "sip/active"), allowlist=tuple(e for e in entries if e))

    def configuration_xml(self, *, backup: bool) -> str:
        """All sections under one `<configuration>`; a backup replaces everything when uploaded again."""
        root = xmltree.new_element("configuration")
        if backup:
            root.set("patchDefault", "false")
        wc = WorkingCopy(self.catalog, self.store.section)
        for name in sorted(self.catalog.sections):
            root.append(wc.get(name))
        return '<?xml version="1.0" encoding="utf-8"?>\n' + xmltree.serialize(root)

    def rollback(self, generation: int, *, failed: Pending | None = None,
                 report: Mapping[str, object] | None = None, run: int | None = None) -> tuple[int | None, list[str]]:
        """Restore the state of `generation` as a new generation; (None, []) when it equals the current.

        A manual rollback ends any probation (docs/design.md §10). `failed`: an automatic one, of that pending
        generation, which must still be the pending one (else StoreConflict): in the same transaction it
        is no longer pending and its documents are quarantined; `report` and `run` are the rollback's own
        run, queued with it. A failed pending generation equal to its target still ends the probation.

        The sections to restore are found by comparing with the current state, and the commit checks that
        none of them was committed since (docs/design.md §2): a rollback never silently undoes a change that landed
        while it ran. On such a conflict it is not re-applied (it would undo a change nobody has seen):
        it fails with StoreConflict, nothing changed, and can be given again after `provd history`.

        Raises:
            UnknownGeneration, StoreConflict, StoreError.
        """
        store = self.store
        store.check_generation(generation)
        target = store.state(generation)
        now = store.state()
        changed: dict[str, tuple[str, Payload]] = {
            name: (row.version, BytesPayload(row.xml)) for name, row in target.items()
            if name not in now or (now[name].version, now[name].xml) != (row.version, row.xml)}
        trigger = Trigger.ROLLBACK if failed is None else Trigger.AUTO_ROLLBACK
        if not changed:
            if failed is not None:
                store.update_pending(failed.generation, None, quarantine=failed.fingerprint)
            return None, []
        record = {"trigger": trigger.value, "rollback_to": generation, "sections_changed": sorted(changed),
                  **(report or {})}
        read_at = {name: now[name].generation if name in now else 0 for name in changed}
        if failed is None:
            gen = store.commit(changed, trigger=trigger, source=f"generation {generation}", report=record,
                               read_at=read_at, gate=self._gate(trigger, ()))
        else:
            gen = store.commit(changed, trigger=trigger, source=f"generation {generation}", report=record,
                               read_at=read_at, run=run, ends_pending=failed.generation,
                               quarantine=failed.fingerprint)
        return gen, sorted(changed)
