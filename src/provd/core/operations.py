"""Operations files (docs/design.md §4): `delete`, `replace`, `add` by absolute XPath, in document order.

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


MAX_PATH = 512
MAX_PREDICATE_DEPTH = 2
ALLOWED_FUNCTIONS = frozenset({"text", "node", "position", "last", "not", "contains", "starts-with", "string",
                               "normalize-space", "string-length", "number", "true", "false", "name",
                               "local-name"})
ALLOWED_AXES = frozenset({"child", "attribute", "self"})
_FUNCTION = re.compile(r"([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)\s*\(")
_AXIS = re.compile(r"([A-Za-z_][\w\-]*)\s*::")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def check_path(op: Operation, *, source: str) -> None:
    """The XPath subset provd evaluates: the vendor's paths are child steps with simple predicates.

    libxml2 cannot be given a time budget, and 300 bytes of nested `count(preceding::*)` predicates run for
    minutes; so only child, attribute and self axes, no variables, a fixed set of cheap functions, `//`
    only outside predicates and predicates nested at most twice. The cost is then linear in the settings.

    Raises:
        OperationError: the path leaves that subset.
    """

    def fail(message: str) -> OperationError:
        return OperationError(f"{op.kind.value}: {message}", source=source, line=op.line, xpath=op.path)

    if len(op.path) > MAX_PATH:
        raise fail(f"path longer than {MAX_PATH} characters")
    bare = _QUOTED.sub("''", op.path)  # string literals may hold anything
    if "$" in bare:
        raise fail("XPath variables are not supported")
    for name in _FUNCTION.findall(bare):
        if name not in ALLOWED_FUNCTIONS:
            raise fail(f"XPath function {name}() is not supported (allowed: {', '.join(sorted(ALLOWED_FUNCTIONS))})")
    for axis in _AXIS.findall(bare):
        if axis not in ALLOWED_AXES:
            raise fail(f"XPath axis {axis}:: is not supported (allowed: {', '.join(sorted(ALLOWED_AXES))})")
    depth = 0
    for i, char in enumerate(bare):
        if char == "[":
            depth += 1
            if depth > MAX_PREDICATE_DEPTH:
                raise fail(f"predicates nested deeper than {MAX_PREDICATE_DEPTH}")
        elif char == "]":
            depth -= 1
        elif char == "/" and depth > 0 and bare[i + 1: i + 2] == "/":
            raise fail("// is not supported inside a predicate")


def apply_operation(root: Element, op: Operation, *, source: str) -> Element:
    """Apply one operation to the section document rooted at `root`; returns the (possibly new) root.

    Raises:
        OperationError: bad XPath, nothing selected, an attribute or text selected, more than one
            element where one is needed, or a root that cannot be deleted or replaced by another section.
    """
    check_path(op, source=source)
    hits = xmltree.xpath_select(root, op.path, source=source, line=op.line)

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
