"""The offline side of provd: read a file, apply it through the settings engine, commit; backup, show,
history, rollback. One `Settings` object per command ties the catalog, the store and the engine together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provd import xmltree
from provd.config import Config
from provd.core.documents import Document, DocumentKind, parse_document
from provd.errors import DocumentTooLarge, MalformedDocument, RefusedDocument, UnknownSection
from provd.model import ChangeAction, Outcome, SectionChange, Trigger
from provd.schemas import Catalog
from provd.settings import WorkingCopy, apply_document, check_document
from provd.store import Store


def read_file(path: Path, max_bytes: int) -> bytes:
    """Read at most `max_bytes` (+1 to detect more): the cap holds for local files too (DESIGN §4).

    Raises:
        DocumentTooLarge, MalformedDocument (unreadable file).
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise MalformedDocument(f"cannot read file: {exc.strerror}", source=str(path)) from exc
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"file is over the limit of {max_bytes} bytes", source=str(path))
    return data


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class ApplyResult:
    outcome: Outcome
    changes: list[SectionChange]
    generation: int | None
    sections_changed: list[str]
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> list[SectionChange]:
        return [c for c in self.changes if c.action is ChangeAction.REJECTED]


class Settings:
    def __init__(self, config: Config, catalog: Catalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or Catalog()
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            factory = {name: (self.catalog.current(name), xmltree.to_bytes(self.catalog.default(name)))
                       for name in sorted(self.catalog.sections)}
            self._store = Store.open(self.config.state_dir / "settings.db", factory)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def parse(self, path: Path) -> Document:
        data = read_file(path, self.config.max_file_bytes)
        return parse_document(data, source=str(path), max_bytes=self.config.max_file_bytes,
                              sections=self.catalog.sections)

    def validate(self, path: Path) -> tuple[Document, list[SectionChange]]:
        doc = self.parse(path)
        return doc, check_document(self.catalog, doc)

    def apply(self, path: Path) -> ApplyResult:
        """`provd apply`: manual provisioning ("restore backup"), which refuses reference files.

        Raises:
            RefusedDocument, DocumentError, StoreError.
        """
        started = now_iso()
        doc = self.parse(path)
        if doc.kind is DocumentKind.REFERENCE:
            raise RefusedDocument("a reference file cannot be applied manually (restore backup refuses the "
                                  "reference type); nothing was changed", source=str(path))
        wc = WorkingCopy(self.catalog, self.store.section)
        changes = apply_document(self.catalog, wc, doc)
        changed = wc.changed()
        wc.release()
        warnings = doc.warnings + [w for c in changes for w in c.warnings]
        errors = [e for c in changes for e in c.errors]
        outcome = Outcome.APPLIED if changed else Outcome.UNCHANGED
        url = path.resolve().as_uri()
        report: dict[str, Any] = {
            "run": None, "trigger": Trigger.APPLY.value, "dry_run": False, "outcome": outcome.value,
            "started": started, "source": "explicit", "url": url, "attempts": [],
            "files": [{"url": url, "type": doc.kind.value, "status": None, "bytes": path.stat().st_size,
                       "cached": False}],
            "sections_changed": sorted(changed), "generation": None,
            "changes": [c.to_json() for c in changes], "warnings": warnings, "errors": errors,
        }
        generation = None
        if changed:
            report["finished"] = now_iso()
            generation = self.store.commit(changed, trigger=Trigger.APPLY.value, source=url, report=report)
            report["generation"] = report["run"] = generation
        report["finished"] = now_iso()
        return ApplyResult(outcome, changes, generation, sorted(changed), warnings, errors, report)

    def section_xml(self, name: str, generation: int | None = None) -> str:
        if name not in self.catalog.sections:
            raise UnknownSection(f"unknown section {name!r}; known: {', '.join(sorted(self.catalog.sections))}")
        wc = WorkingCopy(self.catalog, lambda n: self.store.section(n, generation))
        return xmltree.serialize(wc.get(name))

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
        changed = {name: row for name, row in target.items() if now.get(name) != row}
        if not changed:
            return None, []
        report = {"trigger": Trigger.ROLLBACK.value, "rollback_to": generation, "sections_changed": sorted(changed)}
        gen = store.commit(changed, trigger=Trigger.ROLLBACK.value, source=f"generation {generation}",
                           report=report)
        return gen, sorted(changed)
