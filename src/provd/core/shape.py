"""What a settings version knows: the element/attribute tree read from its XSD, and pruning to it.

docs/design.md §5: after the last migration step, elements the current XSD does not know are dropped (and
reported). libxml2 validates but cannot say "this element is unknown, drop it"; this walker reads the
restricted XSD subset of `docs/schema-conventions.md` into a `Shape` tree that can. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provd import xmltree
from provd.xmltree import XSD_NS, Element, element_children

_XS = f"{{{XSD_NS}}}"
_PARTICLES = {_XS + "sequence", _XS + "all", _XS + "choice"}


@dataclass
class Shape:
    """The known children and attributes of one element; `opaque` (xs:any) keeps everything beneath."""

    children: dict[str, Shape] = field(default_factory=dict)
    attributes: set[str] = field(default_factory=set)
    opaque: bool = False


def section_shape(xsd_root: Element) -> tuple[str, Shape]:
    """The (root element name, shape) of a section XSD."""
    types = {t.get("name", ""): t for t in xsd_root if t.tag == _XS + "complexType"}
    top = xsd_root.find(_XS + "element")
    if top is None:
        raise ValueError("XSD declares no global element")
    return top.get("name", ""), _element_shape(top, types, depth=0)


def _element_shape(decl: Element, types: dict[str, Element], *, depth: int) -> Shape:
    if depth > 64:
        raise ValueError("XSD nesting too deep (recursive type?)")
    ctype = decl.find(_XS + "complexType")
    if ctype is None:
        type_name = decl.get("type", "").split(":")[-1]
        ctype = types.get(type_name)
    shape = Shape()
    if ctype is not None:
        _collect(ctype, types, shape, depth=depth)
    return shape


def _collect(node: Element, types: dict[str, Element], shape: Shape, *, depth: int) -> None:
    for child in element_children(node):
        tag = child.tag
        if tag in _PARTICLES:
            _collect(child, types, shape, depth=depth)
        elif tag == _XS + "element":
            shape.children[child.get("name", "")] = _element_shape(child, types, depth=depth + 1)
        elif tag == _XS + "any":
            shape.opaque = True
        elif tag == _XS + "attribute":
            shape.attributes.add(child.get("name", ""))
        elif tag in (_XS + "simpleContent", _XS + "complexContent"):
            for derivation in element_children(child):
                base = types.get(derivation.get("base", "").split(":")[-1])
                if base is not None:
                    _collect(base, types, shape, depth=depth + 1)
                _collect(derivation, types, shape, depth=depth)


def unknown_nodes(el: Element, shape: Shape, *, prune: bool) -> list[str]:
    """Paths of elements and attributes `shape` does not know, removed from `el` when `prune`."""
    found: list[str] = []
    _walk(el, shape, "/" + str(el.tag), prune, found)
    return found


def _walk(el: Element, shape: Shape, path: str, prune: bool, found: list[str]) -> None:
    if shape.opaque:
        return
    for name in [str(n) for n in el.attrib]:
        if name not in shape.attributes:
            found.append(f"{path}/@{name}")
            if prune:
                del el.attrib[name]
    for child in list(element_children(el)):
        tag = xmltree.tag(child)
        sub = shape.children.get(tag)
        if sub is None:
            found.append(f"{path}/{tag}")
            if prune:
                el.remove(child)
        else:
            _walk(child, sub, f"{path}/{tag}", prune, found)
