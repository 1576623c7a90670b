"""The schema catalog: sections, supported versions, XSDs, shapes, factory defaults and migration steps.

Reads the `schemas/` tree shipped inside the package (importlib.resources), lazily and once per item: a
command that touches one section compiles one XSD. Knows nothing about merging or storing.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable

from provd import xmltree
from provd.core import migrate, shape, versions
from provd.xmltree import Element


class Catalog:
    def __init__(self, root: Traversable | None = None) -> None:
        self._root = root if root is not None else resources.files("provd") / "schemas"
        settings = self._root / "settings"
        self._versions: dict[str, list[str]] = {}
        for section_dir in settings.iterdir():
            if section_dir.is_dir():
                names = [f.name.removesuffix(".xsd") for f in section_dir.iterdir() if f.name.endswith(".xsd")]
                self._versions[section_dir.name] = versions.sort_versions(names)
        self.sections = frozenset(self._versions)

    def versions(self, section: str) -> list[str]:
        """Oldest first."""
        return self._versions[section]

    def current(self, section: str) -> str:
        return self._versions[section][-1]

    def _parse(self, *parts: str) -> Element:
        item = self._root.joinpath(*parts)
        return xmltree.parse(item.read_bytes(), source="/".join(("schemas", *parts)))

    @functools.cache  # noqa: B019 - one catalog per process; compiled XSDs are meant to live as long
    def schema(self, section: str, version: str) -> xmltree.Schema:
        return xmltree.Schema(self._parse("settings", section, f"{version}.xsd"),
                              name=f"schemas/settings/{section}/{version}.xsd")

    @functools.cache  # noqa: B019
    def shape(self, section: str, version: str) -> shape.Shape:
        return shape.section_shape(self._parse("settings", section, f"{version}.xsd"))[1]

    @functools.cache  # noqa: B019
    def file_schema(self, name: str) -> xmltree.Schema:
        """`provisioning_references` or `operations`."""
        return xmltree.Schema(self._parse(f"{name}.xsd"), name=f"schemas/{name}.xsd")

    def default(self, section: str) -> Element:
        """A fresh copy of the factory default of `section` at the current version."""
        return self._parse("defaults", f"{section}.xml")

    @functools.cached_property
    def migrations(self) -> dict[str, migrate.Migration]:
        """Keyed by source version."""
        found = {}
        for item in (self._root / "migrations").iterdir():
            if item.name.endswith(".xml"):
                m = migrate.parse_migration(self._parse("migrations", item.name),
                                            source=f"schemas/migrations/{item.name}")
                found[m.source] = m
        return found
