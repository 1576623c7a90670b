"""Operations files (DESIGN §4): `delete`, `replace`, `add` by absolute XPath, in document order.

The first XPath step names the section; a trailing `/` (the vendor writes paths that way) is ignored.
Operations address the current settings and are never migrated. This module applies the operations of one
section to a root element (a copy the caller owns); the all-or-nothing rule per section and the validation
afterwards live with the caller. Pure.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from enum import Enum

from provd import xmltree
from provd.errors import OperationError
from provd.xmltree import Element, element_children

_FIRST_STEP = re.compile(r"^/([A-Za-z_][\w.\-]*)(?=$|[/\[])")


class OperationKind(Enum):
    DELETE = "delete"
    REPLACE = "replace"
    ADD = "add"


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    path: str  # normalised: trailing "/" removed
    section: str
    payload: tuple[Element, ...]
    line: int | None


def parse_operations(root: Element, *, source: str) -> list[Operation]:
    """The operations of an `<operations>` document, in document order.

    Raises:
        OperationError: an unknown entry, a path that is not absolute or whose first step names no element.
    """
    ops = []
    for entry in element_children(root):
        try:
            kind = OperationKind(str(entry.tag))
        except ValueError:
            raise OperationError(f"unknown operation <{entry.tag}>", source=source, line=xmltree.line(entry),
                                 xpath=xmltree.node_path(entry)) from None
        raw = entry.get("path")
        if raw is None:
            raise OperationError(f"<{kind.value}> has no path", source=source, line=xmltree.line(entry))
        path = normalise_path(raw)
        match = _FIRST_STEP.match(path)
        if match is None:
            raise OperationError("path must be absolute and begin with the section's name", source=source,
                                 line=xmltree.line(entry), xpath=raw)
        ops.append(Operation(kind, path, match.group(1), tuple(element_children(entry)), xmltree.line(entry)))
    return ops


def normalise_path(path: str) -> str:
    path = path.strip()
    while len(path) > 1 and path.endswith("/") and not path.endswith("//"):
        path = path[:-1]
    return path


def apply_operation(root: Element, op: Operation, *, source: str) -> Element:
    """Apply one operation to the section document rooted at `root`; returns the (possibly new) root.

    Raises:
        OperationError: bad XPath, nothing selected, an attribute or text selected, more than one
            element where one is needed, or a root that cannot be deleted or replaced by another section.
    """
    hits = xmltree.xpath_select(root, op.path, source=source)

    def fail(message: str) -> OperationError:
        return OperationError(f"{op.kind.value}: {message}", source=source, line=op.line, xpath=op.path)

    if not hits:
        raise fail("the path selects nothing")
    odd = next((h for h in hits if h.element is None), None)
    if odd is not None:
        raise fail(f"the path selects {odd.description}, not an element")
    targets = [h.element for h in hits if h.element is not None]
    if op.kind is OperationKind.DELETE:
        for target in targets:
            parent = target.getparent()
            if parent is None:
                raise fail("a section root cannot be deleted")
            parent.remove(target)
        return root
    if len(targets) != 1:
        raise fail(f"the path selects {len(targets)} elements; exactly one is needed")
    target = targets[0]
    if op.kind is OperationKind.REPLACE:
        if len(op.payload) != 1:
            raise fail(f"replace needs exactly one new element, got {len(op.payload)}")
        new = copy.deepcopy(op.payload[0])
        new.tail = None
        parent = target.getparent()
        if parent is None:
            if new.tag != root.tag:
                raise fail(f"a section root can only be replaced by <{root.tag}>")
            return new
        parent.replace(target, new)
        return root
    if not op.payload:
        raise fail("add needs at least one element")
    for item in op.payload:
        clone = copy.deepcopy(item)
        clone.tail = None
        target.append(clone)
    return root
