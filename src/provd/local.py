"""The offline side of provd: read a file, apply it through the settings engine, commit; backup, show,
history, rollback. One `Settings` object per command ties the catalog, the store and the engine together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provd import xmltree
from provd.config import Config
from provd.core import diff
from provd.core.documents import Document, DocumentKind, parse_document
from provd.errors import ProvdError, RefusedDocument, UnknownSection
from provd.files import read_capped
from provd.model import Outcome, RunReport, SectionChange, Switches, Trigger
from provd.schemas import Catalog
from provd.settings import WorkingCopy, apply_document, check_document
from provd.store import BytesPayload, Payload, Store
from provd.xmltree import Element

if TYPE_CHECKING:
    from provd.core.checksync import Policy

Progress = Callable[[str], None]


def _flag(section: Element, path: str) -> bool:
    return (section.findtext(path) or "").strip() in ("true", "1")  # xs:boolean


def _quiet(_line: str) -> None:
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Settings:
    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or Catalog()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            factory: dict[str, tuple[str, Payload]] = {
                name: (self.catalog.current(name), xmltree.Serialized(self.catalog.default(name)))
                       for name in sorted(self.catalog.sections)}
            self._store = Store.open(self.config.state_dir / "settings.db", factory)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def parse(self, path: Path) -> Document:
        data = read_capped(path, self.config.max_file_bytes)
        return parse_document(data, source=str(path), max_bytes=self.config.max_file_bytes,
                              sections=self.catalog.sections)

    def validate(self, path: Path) -> tuple[Document, list[SectionChange]]:
        doc = self.parse(path)
        return doc, check_document(self.catalog, doc)

    def apply(self, path: Path, *, progress: Progress = _quiet) -> RunReport:
        """`provd apply`: manual provisioning ("restore backup"), which refuses reference files. Failures
        are raised (the CLI prints them); the run is recorded either way.

        Raises:
            RefusedDocument, DocumentError, StoreError.
        """
        return self.apply_data(None, name=str(path), url=path.resolve().as_uri(), path=path, progress=progress)

    def apply_data(self, data: bytes | None, *, name: str, url: str, path: Path | None = None,
                   progress: Progress = _quiet) -> RunReport:
        """`apply` of a file's bytes read elsewhere (the daemon gets them from `provd apply` over the control
        socket and never opens a client's path), or of `path` read here when `data` is None.

        Raises:
            RefusedDocument, DocumentError, StoreError.
        """
        report = RunReport(trigger=Trigger.APPLY.value, started=now_iso(), source="explicit", url=url)
        report.run = self.store.begin_run(report.trigger, report.started)
        try:
            if data is None:
                assert path is not None
                data = read_capped(path, self.config.max_file_bytes)
            doc = parse_document(data, source=name, max_bytes=self.config.max_file_bytes,
                                 sections=self.catalog.sections)
            report.files = [{"url": url, "type": doc.kind.value, "status": None, "bytes": len(data),
                             "cached": False}]
            if doc.kind is DocumentKind.REFERENCE:
                raise RefusedDocument("a reference file cannot be applied manually (restore backup refuses "
                                      "the reference type); nothing was changed", source=name)
            self.apply_documents([doc], report, progress=progress)
        except ProvdError as exc:
            report.outcome = Outcome.FAILED
            report.errors.append(str(exc))
            raise
        finally:
            report.finished = now_iso()
            self.store.finish_run(report.run, report.to_json())
        return report

    def apply_documents(self, documents: list[Document], report: RunReport, *,
                        progress: Progress = _quiet) -> None:
        """Apply `documents` in order to one working copy and commit it as one generation (unless the
        report is a dry run, which gets the per-section diff instead).

        Raises:
            DocumentError: a document as a whole was unusable; nothing is committed.
        """
        store = self.store
        wc = WorkingCopy(self.catalog, store.section)
        for doc in documents:
            report.warnings += doc.warnings
            for change in apply_document(self.catalog, wc, doc):
                report.changes.append(change.to_json())
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
                report.diff.append(diff.diff(before, serialized.element).to_json())
        elif changed:
            report.generation = store.commit(changed, trigger=report.trigger, source=report.url or "",
                                             report=report.to_json())
        wc.release()

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

    def rollback(self, generation: int) -> tuple[int | None, list[str]]:
        """Restore the state of `generation` as a new generation; (None, []) when it equals the current."""
        store = self.store
        store.check_generation(generation)
        target = store.state(generation)
        now = store.state()
        changed: dict[str, tuple[str, Payload]] = {
            name: (row.version, BytesPayload(row.xml)) for name, row in target.items() if now.get(name) != row}
        if not changed:
            return None, []
        report = {"trigger": Trigger.ROLLBACK.value, "rollback_to": generation, "sections_changed": sorted(changed)}
        gen = store.commit(changed, trigger=Trigger.ROLLBACK.value, source=f"generation {generation}",
                           report=report)
        return gen, sorted(changed)
