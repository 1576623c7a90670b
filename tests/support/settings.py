"""Helpers for engine tests: apply XML text to an in-memory working copy (no store, no files)."""

from __future__ import annotations

from typing import Any, cast

from provd import xmltree
from provd.core.documents import parse_document
from provd.model import SectionChange
from provd.settings.apply import apply_document
from provd.settings.catalog import Catalog
from provd.settings.store import StoredSection
from provd.settings.working_copy import WorkingCopy


def apply_text(catalog: Catalog, text: str, stored: dict[str, str] | None = None,
               ) -> tuple[list[SectionChange], WorkingCopy]:
    """Apply `text` to the factory settings overlaid with `stored` ({section: xml})."""
    rows = {name: StoredSection(catalog.current(name), xml.encode()) for name, xml in (stored or {}).items()}
    wc = WorkingCopy(catalog, rows.get)
    doc = parse_document(text.encode(), source="t.xml", max_bytes=1 << 22, sections=catalog.sections)
    return apply_document(catalog, wc, doc), wc


def section(wc: WorkingCopy, name: str) -> str:
    return xmltree.serialize(wc.get(name))


def values(wc: WorkingCopy, name: str, expression: str) -> list[str]:
    return [str(v) for v in xpath(wc.get(name), expression)]


def xpath(el: object, expression: str) -> list[Any]:
    """lxml-stubs type XPath results as a wide union; tests only need the list."""
    result = cast(Any, el).xpath(expression)
    assert isinstance(result, list)
    return result
