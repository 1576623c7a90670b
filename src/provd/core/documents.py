"""Provisioning documents: hostile-input screening, encoding repair and type detection by root element.

Pure: bytes in, a typed document out. It never follows a DOCTYPE, an entity or an include; the size cap is
checked before a single byte is parsed. The lxml parser itself is configured in `provd.xmltree`.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass
from enum import Enum

from provd import xmltree
from provd.errors import DocumentTooLarge, MalformedDocument, RefusedDocument, UnknownDocumentType, UnsafeDocument
from provd.model import DocumentKind
from provd.xmltree import Element


@dataclass(frozen=True)
class Document:
    """A parsed provisioning file. The record is frozen; `root` is the tree, owned (and changed: a merge
    moves a patch's entries) by whoever holds the document."""

    kind: DocumentKind
    root: Element
    source: str
    warnings: tuple[str, ...] = ()


_DECLARATION = re.compile(rb"^<\?xml\s[^>]*?\?>")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
_PROLOG_ITEM = re.compile(rb"\s+|<!--.*?-->|<\?.*?\?>", re.DOTALL)
_ENC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")  # XML 1.0 [81] EncName
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
# Python codecs that turn bytes into str but are not character sets: a document cannot be "in" them.
_NOT_CHARSETS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined"})
_BOMLESS_WIDE = (b"\x00\x00\x00<", b"<\x00\x00\x00", b"\x00<\x00?", b"<\x00?\x00")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def parse_document(data: bytes, *, source: str, max_bytes: int, sections: frozenset[str]) -> Document:
    """Screen, parse and classify one provisioning file.

    Raises:
        DocumentTooLarge: over `max_bytes`, before parsing.
        UnsafeDocument: a DOCTYPE (internal subsets too), which is where entities live.
        MalformedDocument: not well-formed, or not decodable in its encoding.
        UnknownDocumentType: the root names no file type and no section.
    """
    root, warnings = parse_xml(data, source=source, max_bytes=max_bytes)
    return Document(kind=detect_kind(root, source=source, sections=sections), root=root, source=source,
                    warnings=tuple(warnings))


def parse_xml(data: bytes, *, source: str, max_bytes: int) -> tuple[Element, list[str]]:
    """The screening and parsing of `parse_document` without the type detection (for other XML, such as a
    check-sync NOTIFY's `notifySync` body). Raises the same errors."""
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"file is {len(data)} bytes, over the limit of {max_bytes}", source=source)
    warnings: list[str] = []
    data = _normalise_encoding(data, source, warnings)
    _refuse_doctype(data, source)
    return xmltree.parse(data, source=source), warnings


def detect_kind(root: Element, *, source: str, sections: frozenset[str]) -> DocumentKind:
    tag = root.tag
    if not isinstance(tag, str) or tag.startswith("{"):
        raise UnknownDocumentType(f"root element {tag!r} is in a namespace; provisioning files have none",
                                  source=source, line=xmltree.line(root), xpath="/*")
    if tag == "configuration" or tag in sections:
        return DocumentKind.PATCH
    if tag == "referencedSettings":
        return DocumentKind.REFERENCE
    if tag == "operations":
        return DocumentKind.OPERATIONS
    raise UnknownDocumentType(
        f"root element <{tag}> is not configuration, referencedSettings, operations or a known section",
        source=source, line=xmltree.line(root), xpath=f"/{tag}")


class Door(Enum):
    """The ways a file is applied other than as an entry of a reference chain."""

    MANUAL_RESTORE = "a manual restore"  # provd apply FILE, a check-sync settings snippet
    CHECK_SYNC = "a check-sync body"  # the NOTIFY body, judged before it is answered
    WORKING_COPY = "settings to apply"  # settings.apply: only the chain expands a reference file


def reference_refusal(kind: DocumentKind, door: Door) -> str | None:
    """Why a file of `kind` may not come in through `door`, or None when it may. The one rule
    (docs/design.md §4.2): a reference file names files to fetch and holds no settings; applied by hand it
    is refused, as the phone's "restore backup" refuses the reference type."""
    if kind is not DocumentKind.REFERENCE:
        return None
    return f"a reference file is refused as {door.value} (restore backup refuses the reference type)"


def refuse_reference(doc: Document, door: Door) -> None:
    """Raises: RefusedDocument when `doc` is a reference file (`reference_refusal`); nothing was changed."""
    reason = reference_refusal(doc.kind, door)
    if reason is not None:
        raise RefusedDocument(f"{reason}; nothing was changed", source=doc.source)


def _normalise_encoding(data: bytes, source: str, warnings: list[str]) -> bytes:
    """Hand libxml2 UTF-8 (or an encoding it declares correctly).

    The vendor's own examples declare `encoding="utf=8"`, which no parser knows: docs/design.md §4 says read such
    files as UTF-8 and warn. Known non-UTF-8 encodings (UTF-16 with a BOM, ISO-8859-1, ...) are transcoded
    here, so the later checks only ever see ASCII-compatible bytes.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _transcode(data, codec, source)
    if data[:4] in _BOMLESS_WIDE or (len(data) > 1 and (data[0] == 0 or data[1] == 0)):
        # XML 1.0 §4.3.3: UTF-16 must start with a byte order mark. Guessing would also let a DOCTYPE
        # past the prolog check below, which reads ASCII-compatible bytes.
        raise MalformedDocument("UTF-16 or UTF-32 without a byte order mark (or a NUL byte at the start)",
                                source=source, line=1)
    match = _DECLARATION.match(data)
    if match is None:
        return data
    enc = _ENCODING.search(match.group(0))
    if enc is None:
        return data
    name = enc.group(1).decode("ascii", "replace").strip()
    try:
        if not _ENC_NAME.match(name):  # codecs.lookup would take "utf=8" for "utf_8"; XML does not
            raise LookupError(name)
        codec_name = codecs.lookup(name).name
        # zlib, rot13, base64, hex, bz2, uu, quopri are bytes↔bytes or str↔str transforms: decode() raises
        # LookupError for them (not for empty input, hence the probe byte). As text encodings they are
        # unknown, so docs/design.md §4's rule for an unknown encoding applies to them as to "utf=8".
        if codec_name in _NOT_CHARSETS:
            raise LookupError(name)
        # UnicodeError: a character set in which one byte is no character (UTF-16, UTF-32): _transcode decides
        with contextlib.suppress(UnicodeError):
            b"<".decode(codec_name)
    except LookupError:
        warnings.append(f"{source}: unknown encoding {name!r} declared; read as UTF-8")
        # The declaration never spans lines, so line numbers in later errors still hold.
        return data[: match.start() + enc.start(1)] + b"UTF-8" + data[match.start() + enc.end(1):]
    if codec_name.replace("_", "-") in _UTF8_NAMES:
        return data
    return _transcode(data, codec_name, source)


def _transcode(data: bytes, codec: str, source: str) -> bytes:
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MalformedDocument(f"not valid {codec}: byte {exc.start}", source=source, line=line) from exc
    except UnicodeError as exc:  # a codec's own complaint without a position
        raise MalformedDocument(f"not valid {codec}: {exc}", source=source, line=1) from exc
    text = text.lstrip("\ufeff")
    decl = re.match(r"^<\?xml\s[^>]*?\?>", text)
    if decl is not None:
        text = '<?xml version="1.0" encoding="UTF-8"?>' + text[decl.end():]
    return text.encode("utf-8")


def _refuse_doctype(data: bytes, source: str) -> None:
    """A DOCTYPE is refused before parsing: entities (XXE, billion laughs) can only be declared in one."""
    pos = 0
    match = _DECLARATION.match(data)
    if match:
        pos = match.end()
    while True:
        item = _PROLOG_ITEM.match(data, pos)
        if item is None or item.end() == pos:
            break
        pos = item.end()
    if data[pos: pos + 9].upper() == b"<!DOCTYPE":
        line = data[:pos].count(b"\n") + 1
        raise UnsafeDocument("a DOCTYPE is not allowed (no DTDs, no entities)", source=source, line=line)
    if data[pos: pos + 2] == b"<!":
        line = data[:pos].count(b"\n") + 1
        raise UnsafeDocument("a markup declaration is not allowed before the root element", source=source,
                             line=line)
