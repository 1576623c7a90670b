"""Settings-patch semantics (docs/design.md §4): merge or replace, per section.

Merge walks the patch with the section's `Shape` (from its XSD): a leaf present in the patch overwrites its
counterpart, containers are merged recursively, absent leaves and sub-trees stay, list entries are matched
on their key (`listkeys`) and replaced whole. Pure. The patch is consumed: its elements move into the
stored tree rather than being copied, which halves the memory of a large contact list.
"""

from __future__ import annotations

from collections.abc import Iterator

from provd.core.listkeys import POSITION, is_whole, list_key
from provd.core.shape import Shape
from provd.errors import SchemaError
from provd.xmltree import Element, element_children

# Attributes that steer the patch itself; they never land in the settings.
CONTROL_ATTRIBUTES = frozenset({"patch", "patchDefault"})


def parse_bool(value: str | None, *, default: bool, source: str, xpath: str) -> bool:
    """xs:boolean as the vendor writes it; anything else is an error, not a silent default."""
    if value is None:
        return default
    text = value.strip()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise SchemaError(f"{value!r} is not a boolean", source=source, xpath=xpath)


def merge(stored: Element, patch: Element, shape: Shape) -> None:
    """Merge `patch` into `stored` (the same section) in place; `patch` is emptied."""
    _merge(stored, patch, shape, (str(stored.tag),))


def _merge(stored: Element, patch: Element, shape: Shape, path: tuple[str, ...]) -> None:
    for name, value in patch.attrib.items():
        if name not in CONTROL_ATTRIBUTES:
            stored.set(name, value)
    keyed: dict[str, dict[str, Element]] = {}  # stored entries by key
    fresh: dict[str, set[str]] = {}  # keys this patch appended: a repeat replaces its first occurrence
    positions: dict[str, int] = {}
    last: dict[str, Element | None] = {}  # last stored child per tag: appends go after it, found once
    for child in _drain(patch):
        tag = str(child.tag)
        child_path = (*path, tag)
        key = list_key(child_path)
        if key == POSITION:
            n = positions.get(tag, 0)
            positions[tag] = n + 1
            same = [c for c in element_children(stored) if c.tag == tag]
            sub = shape.children.get(tag)
            if n < len(same) and sub is not None:
                _merge(same[n], child, sub, child_path)  # positional entries are records: merged
            else:
                _put(stored, same[n] if n < len(same) else None, child, last)
        elif key is not None:
            index = keyed.get(tag)
            if index is None:
                index = {c.get(key, ""): c for c in element_children(stored) if c.tag == tag}
                keyed[tag] = index
            value = child.get(key, "")
            existing = index.get(value)
            added = fresh.setdefault(tag, set())
            if existing is None and value in added:
                existing = next(c for c in element_children(stored) if c.tag == tag and c.get(key, "") == value)
            new = _put(stored, existing, child, last)
            if value in index:
                index[value] = new
            else:
                added.add(value)  # a key, not the element: 10,000 contacts keep no 10,000 proxies alive
        else:
            existing = next((c for c in element_children(stored) if c.tag == tag), None)
            sub = shape.children.get(tag)
            if existing is None or sub is None or sub.opaque or not sub.children or is_whole(child_path):
                _put(stored, existing, child, last)
            else:
                _merge(existing, child, sub, child_path)


def _drain(patch: Element) -> Iterator[Element]:
    """The patch's child elements, each taken out of the patch as it is handed over (the patch is
    consumed): no list of every child is held while a large list is merged."""
    while (child := next(iter(patch), None)) is not None:  # len() of an lxml element counts: O(n)
        patch.remove(child)
        if isinstance(child.tag, str):
            yield child


def _put(parent: Element, existing: Element | None, new: Element, last: dict[str, Element | None]) -> Element:
    """Move `new` into `parent`: in place of `existing`, or after the last child of the same name (a
    sequence in the XSD keeps its order), or at the end."""
    new.tail = None
    tag = str(new.tag)
    if existing is not None:
        parent.replace(existing, new)
        if last.get(tag) is existing:
            last[tag] = new
        return new
    if tag not in last:
        last[tag] = next((c for c in reversed(parent) if c.tag == tag), None)
    anchor = last[tag]
    if anchor is not None:
        anchor.addnext(new)
    else:
        parent.append(new)
    last[tag] = new
    return new
