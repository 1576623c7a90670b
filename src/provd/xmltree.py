"""The lxml adapter: the one module that touches lxml's parser, serialiser, XPath and XSD engines.

It does no I/O (bytes in, trees out) and translates lxml's exceptions into provd's, their messages made
one line (libxml2 ends some with a newline before ", line N, column M"). The parser is
configured once, hostile-input safe: no DTD loading, no entity expansion, no network, no XInclude
(never called), libxml2's default depth limit (no `huge_tree`). Comments and processing instructions are
dropped and blank text between elements removed, so that the same settings always serialise identically.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from lxml import etree

from provd.errors import MalformedDocument, OperationError, SchemaError, UnsafeDocument, one_line

if TYPE_CHECKING:
    Element = etree._Element
else:
    Element = object

XSD_NS = "http://www.w3.org/2001/XMLSchema"

_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    remove_blank_text=True,
    collect_ids=False,
)


def parse(data: bytes, *, source: str | None = None) -> Element:
    """Parse a whole document with the safe parser and return its root.

    Raises:
        MalformedDocument: not well-formed (line number from libxml2).
        UnsafeDocument: a DOCTYPE survived the prolog check (belt and braces).
    """
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise MalformedDocument(f"not well-formed XML: {one_line(exc.msg)}", source=source, line=line) from exc
    if cast(str, getattr(root.getroottree().docinfo, "doctype", "")):
        raise UnsafeDocument("a DOCTYPE is not allowed", source=source, line=1)
    return root


def new_element(tag: str, text: str | None = None) -> Element:
    el = etree.Element(tag)
    if text is not None:
        el.text = text
    return el


def serialize(el: Element) -> str:
    """Deterministic, indented text of one element (no declaration); the store's and backup's format."""
    return etree.tostring(el, encoding="unicode", pretty_print=True)


class _CompareSink:
    """Counts what is written and compares it, chunk by chunk, with `reference` (no copy of either)."""

    def __init__(self, reference: bytes) -> None:
        self._reference = memoryview(reference)
        self.size = 0
        self.same = True

    def write(self, data: bytes) -> None:
        if self.same and self._reference[self.size: self.size + len(data)] != data:
            self.same = False
        self.size += len(data)


class Serialized:
    """A section's stored form, produced on demand: a first pass yields its size and whether it equals
    `reference` (the stored bytes) and keeps nothing; `write_to` streams the bytes into the store. A
    10,000-contact list never exists as one bytes object beside its tree: 4 MB less at the peak."""

    def __init__(self, el: Element, reference: bytes = b"") -> None:
        self.element = el
        sink = _CompareSink(reference)
        etree.ElementTree(el).write(cast(Any, sink), encoding="utf-8", pretty_print=True)
        self.size = sink.size
        self.same = sink.same and sink.size == len(reference)

    def write_to(self, out: Any) -> None:
        etree.ElementTree(self.element).write(out, encoding="utf-8", pretty_print=True)


def to_bytes(el: Element) -> bytes:
    """The same as `serialize`, as UTF-8 bytes: the store keeps these, without a decoded copy.

    Written through a stream: `tostring` grows one buffer by doubling and then copies it, which costs a
    10,000-contact list about 10 MB of peak memory; the stream costs about 1 MB.
    """
    out = io.BytesIO()
    etree.ElementTree(el).write(out, encoding="utf-8", pretty_print=True)
    return out.getvalue()


def element_children(el: Element) -> Iterator[Element]:
    """Child elements only (comments and PIs never reach here, but entities or foreign nodes might)."""
    for child in el:
        if isinstance(child.tag, str):
            yield child


def line(el: Element) -> int | None:
    """The source line of `el` (None for elements made in memory); lxml-stubs mistype it."""
    return cast(int | None, el.sourceline)


def tag(el: Element) -> str:
    return str(el.tag)


def node_path(el: Element) -> str:
    """An absolute XPath naming `el` (with positions), for error messages."""
    return el.getroottree().getpath(el)


@dataclass(frozen=True)
class XPathHit:
    """One XPath result: an element, or something else described for the error message."""

    element: Element | None
    description: str


def xpath_select(root: Element, expression: str, *, source: str | None = None,
                 line: int | None = None) -> list[XPathHit]:
    """Evaluate `expression` on the document `root` belongs to.

    Raises:
        OperationError: syntax error or evaluation error (bad function, bad predicate).
    """
    try:
        compiled = etree.XPath(expression)
    except etree.XPathSyntaxError as exc:
        raise OperationError(f"invalid XPath: {one_line(str(exc))}", source=source, line=line,
                             xpath=expression) from exc
    try:
        result = compiled(root)
    except etree.XPathError as exc:
        raise OperationError(f"XPath cannot be evaluated: {one_line(str(exc))}", source=source, line=line,
                             xpath=expression) from exc
    if not isinstance(result, list):
        return [XPathHit(None, f"a {type(result).__name__} value")]
    hits = []
    for node in result:
        if isinstance(node, etree._Element) and isinstance(node.tag, str):
            hits.append(XPathHit(node, node.tag))
        elif getattr(node, "is_attribute", False):
            hits.append(XPathHit(None, "an attribute"))
        elif isinstance(node, str):
            hits.append(XPathHit(None, "text"))
        else:
            hits.append(XPathHit(None, "a non-element node"))
    return hits


@dataclass(frozen=True)
class Issue:
    """One validation problem: where (line, XPath) and what."""

    line: int | None
    xpath: str | None
    message: str


class Schema:
    """A compiled XSD (libxml2): fast validation on the apply path."""

    def __init__(self, xsd_root: Element, *, name: str) -> None:
        try:
            self._schema = etree.XMLSchema(xsd_root)
        except etree.XMLSchemaParseError as exc:
            raise MalformedDocument(f"invalid XSD: {one_line(str(exc))}", source=name) from exc
        self.name = name

    def issues(self, el: Element) -> list[Issue]:
        """Every problem of `el` validated as a document root; empty when valid."""
        if self._schema.validate(el):
            return []
        # libxml2 logs warnings too ("No precomputed value available ..."): only errors are issues.
        return [
            Issue(entry.line or None, entry.path or None, one_line(entry.message))
            for entry in list(cast(Any, self._schema.error_log))
            if entry.level >= etree.ErrorLevels.ERROR
        ]

    def check(self, el: Element, *, source: str) -> None:
        """The one way a schema's verdict becomes an error: its first issue.

        Raises:
            SchemaError: `el` is not valid; `source`, `line` and `xpath` name the place.
        """
        issues = self.issues(el)
        if issues:
            first = issues[0]
            raise SchemaError(first.message, source=source, line=first.line, xpath=first.xpath)
