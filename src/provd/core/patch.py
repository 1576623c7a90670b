"""Settings-patch semantics (DESIGN §4): merge or replace, per section.

Merge walks the patch with the section's `Shape` (from its XSD): a leaf present in the patch overwrites its
counterpart, containers are merged recursively, absent leaves and sub-trees stay, list entries are matched
on their key (`listkeys`) and replaced whole. Pure; the patch is left intact (its elements are copied), so
a caller may retry after pruning unknown elements.
"""

from __future__ import annotations

import copy

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
    """Merge `patch` into `stored` (the same section) in place."""
    _merge(stored, patch, shape, (str(stored.tag),))


def _merge(stored: Element, patch: Element, shape: Shape, path: tuple[str, ...]) -> None:
    for name, value in patch.attrib.items():
        if name not in CONTROL_ATTRIBUTES:
            stored.set(name, value)
    keyed: dict[str, dict[str, Element]] = {}
    positions: dict[str, int] = {}
    for child in element_children(patch):
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
                _put(stored, same[n] if n < len(same) else None, child)
        elif key is not None:
            index = keyed.get(tag)
            if index is None:
                index = {c.get(key, ""): c for c in element_children(stored) if c.tag == tag}
                keyed[tag] = index
            value = child.get(key, "")
            index[value] = _put(stored, index.get(value), child)
        else:
            existing = next((c for c in element_children(stored) if c.tag == tag), None)
            sub = shape.children.get(tag)
            if existing is None or sub is None or sub.opaque or not sub.children or is_whole(child_path):
                _put(stored, existing, child)
            else:
                _merge(existing, child, sub, child_path)


def _put(parent: Element, existing: Element | None, new: Element) -> Element:
    """Replace `existing` with a copy of `new`, or append the copy after its last same-named sibling."""
    clone = copy.deepcopy(new)
    clone.tail = None
    if existing is not None:
        parent.replace(existing, clone)
        return clone
    last = None
    for c in element_children(parent):
        if c.tag == new.tag:
            last = c
    if last is not None:
        last.addnext(clone)
    else:
        parent.append(clone)
    return clone
