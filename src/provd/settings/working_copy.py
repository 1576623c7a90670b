"""The settings as one run changes them (`WorkingCopy`): sections read from the store on first use and
migrated to the current version (docs/design.md §5), changed in memory, compared with the store at the end.
Writes nothing: the caller commits `changed()` in one transaction.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from provd import xmltree
from provd.core import migrate
from provd.settings.catalog import Catalog
from provd.settings.store import StoredSection
from provd.xmltree import Element

# A stored section, or None when the store has none (the factory default then).
Loader = Callable[[str], StoredSection | None]


class WorkingCopy:
    """The settings as one run changes them: sections parsed on first use, migrated to current."""

    def __init__(self, catalog: Catalog, load: Loader) -> None:
        self._catalog = catalog
        self._load = load
        self._sections: dict[str, Element] = {}
        self._defaults: set[str] = set()  # sections the store does not have: compared with the default
        self._dirty: set[str] = set()
        self.read_at: dict[str, int] = {}  # section -> generation of the row read (0: none), for the commit

    def get(self, name: str) -> Element:
        """The current state of `name`; callers copy before changing it."""
        el = self._sections.get(name)
        if el is None:
            stored = self._load(name)
            # The first read counts: the run's result for `name` is computed from that row.
            self.read_at.setdefault(name, stored.generation if stored else 0)
            if stored is None:
                el = self._catalog.default(name)
                self._defaults.add(name)
            else:
                el = xmltree.parse(stored.xml, source=f"store:{name}")
                if stored.version != self._catalog.current(name):
                    # Stored under an older firmware's version: bring it up like any patch.
                    migrate_section(self._catalog, el, stored.version, full=True)
            self._sections[name] = el
        return el

    def take(self, name: str) -> Element:
        """The current state of `name` for the caller to change and `put` back. Not putting it back
        leaves the section as it was: it is then read again from the store (or kept as a copy when this
        run already changed it)."""
        el = self.get(name)
        if name in self._dirty:
            return copy.deepcopy(el)
        del self._sections[name]
        return el

    def put(self, name: str, el: Element) -> None:
        if el.getparent() is not None or el.getroottree().getroot() is not el:
            el = copy.deepcopy(el)  # XPath and XSD treat a section as its own document
        self.get(name)
        self._sections[name] = el
        self._dirty.add(name)

    def changed(self) -> dict[str, tuple[str, xmltree.Serialized]]:
        """{section: (version, XML)} for every section whose serialised form differs from the store's.
        The XML is produced when the store writes it: keep this working copy until then."""
        out = {}
        for name in sorted(self._dirty):
            # The stored bytes are read again here rather than kept since `get`: a big section's bytes and
            # both trees would otherwise be in memory at once.
            stored = None if name in self._defaults else self._load(name)
            reference = stored.xml if stored else xmltree.to_bytes(self._catalog.default(name))
            serialized = xmltree.Serialized(self._sections[name], reference)
            if not serialized.same:
                out[name] = (self._catalog.current(name), serialized)
        return out

    def release(self) -> None:
        """Drop the parsed trees (a large contact list is tens of MB) once the changes are committed."""
        self._sections.clear()
        self._defaults.clear()
        self._dirty.clear()


def migrate_section(catalog: Catalog, el: Element, version: str, *, full: bool) -> list[str]:
    """Run the steps from `version` up to the current one on `el` in place."""
    name = str(el.tag)
    notes = []
    chain = catalog.versions(name)
    for step_from in chain[chain.index(version):-1]:
        step = catalog.migrations.get(step_from)
        if step is None:
            continue
        for line in migrate.apply_steps(el, step.steps.get(name, ()), full=full):
            notes.append(f"{step.source}→{step.target}: {line}")
    return notes
