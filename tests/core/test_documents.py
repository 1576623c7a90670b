"""Document screening and type detection (docs/design.md §4): by root element only, hostile input refused."""

from __future__ import annotations

import pytest

from provd.core.documents import parse_document
from provd.errors import (
    DocumentError,
    DocumentTooLarge,
    MalformedDocument,
    UnknownDocumentType,
    UnsafeDocument,
)
from provd.model import DocumentKind
from provd.settings.catalog import Catalog


def parse(catalog: Catalog, data: bytes, max_bytes: int = 1 << 20) -> tuple[DocumentKind, list[str]]:
    doc = parse_document(data, source="f.xml", max_bytes=max_bytes, sections=catalog.sections)
    return doc.kind, list(doc.warnings)


@pytest.mark.parametrize(("data", "kind"), [
    pytest.param(b"<configuration/>", DocumentKind.PATCH, id="configuration"),
    pytest.param(b"<keys/>", DocumentKind.PATCH, id="bare-section"),
    pytest.param(b"<contactList/>", DocumentKind.PATCH, id="bare-contactList"),
    pytest.param(b"<referencedSettings><url>a.xml</url></referencedSettings>", DocumentKind.REFERENCE,
                 id="reference"),
    pytest.param(b"<operations/>", DocumentKind.OPERATIONS, id="operations"),
    pytest.param(b'<?xml version="1.0"?>\n<!-- c --><?pi x?>\n<keys/>', DocumentKind.PATCH, id="prolog-items"),
    pytest.param(b"\xef\xbb\xbf<keys/>", DocumentKind.PATCH, id="utf8-bom"),
    pytest.param('<?xml version="1.0" encoding="utf-16"?><keys label="ü"/>'.encode("utf-16"),
                 DocumentKind.PATCH, id="utf16-bom"),
    pytest.param('<?xml version="1.0" encoding="ISO-8859-1"?><keys label="ü"/>'.encode("latin-1"),
                 DocumentKind.PATCH, id="latin1"),
])
def test_detect(catalog: Catalog, data: bytes, kind: DocumentKind) -> None:
    assert parse(catalog, data)[0] is kind


def test_vendor_typo_encoding_is_utf8_with_warning(catalog: Catalog) -> None:
    kind, warnings = parse(catalog, '<?xml version="1.0" encoding="utf=8" ?>\n<keys label="ü"/>'.encode())
    assert kind is DocumentKind.PATCH
    assert len(warnings) == 1 and "utf=8" in warnings[0]


@pytest.mark.parametrize(("data", "error"), [
    pytest.param(b"<!DOCTYPE keys><keys/>", UnsafeDocument, id="doctype"),
    pytest.param(b'<?xml version="1.0"?>\n<!-- x -->\n<!DOCTYPE k [<!ENTITY a "b">]><keys>&a;</keys>',
                 UnsafeDocument, id="entity-after-comment"),
    pytest.param(b"<!doctype keys><keys/>", UnsafeDocument, id="doctype-lowercase"),
    pytest.param(b"<!ENTITY a 'b'><keys/>", UnsafeDocument, id="bare-markup-declaration"),
    pytest.param(b"<keys>&xxe;</keys>", MalformedDocument, id="undeclared-entity"),
    pytest.param(b"<keys>", MalformedDocument, id="truncated"),
    pytest.param(b"", MalformedDocument, id="empty"),
    pytest.param(b"<keys>\xff</keys>", MalformedDocument, id="invalid-utf8"),
    pytest.param(b"<settings/>", UnknownDocumentType, id="wrong-root"),
    pytest.param(b'<keys xmlns="urn:x"/>', UnknownDocumentType, id="namespaced-root"),
    pytest.param(b"<a>" * 300 + b"</a>" * 300, MalformedDocument, id="deep-nesting"),
])
def test_refused(catalog: Catalog, data: bytes, error: type[DocumentError]) -> None:
    with pytest.raises(error) as info:
        parse(catalog, data)
    assert info.value.source == "f.xml"


def test_size_cap_before_parsing(catalog: Catalog) -> None:
    with pytest.raises(DocumentTooLarge):
        parse(catalog, b"<keys/>" + b" " * 100, max_bytes=50)


def test_error_carries_line(catalog: Catalog) -> None:
    with pytest.raises(MalformedDocument) as info:
        parse(catalog, b"<keys>\n<a>\n</b></keys>")
    assert info.value.line == 3


@pytest.mark.parametrize("codec", ["zlib", "zlib_codec", "rot13", "rot_13", "base64", "hex", "bz2", "uu", "quopri",
                                   "punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined"])
def test_codec_that_is_no_character_set_is_an_unknown_encoding(catalog: Catalog, codec: str) -> None:
    """Python knows these names, but as transforms, not character sets (`bytes.decode("zlib")` raises
    LookupError): docs/design.md §4's unknown encoding, read as UTF-8 with a warning naming it."""
    kind, warnings = parse(catalog, f'<?xml version="1.0" encoding="{codec}"?>\n<keys label="ü"/>'.encode())
    assert kind is DocumentKind.PATCH
    assert len(warnings) == 1 and repr(codec) in warnings[0]


@pytest.mark.parametrize("codec", ["utf-16", "UTF-32"])
def test_wide_encoding_declared_on_ascii_bytes_is_refused(catalog: Catalog, codec: str) -> None:
    with pytest.raises(MalformedDocument):
        parse(catalog, f'<?xml version="1.0" encoding="{codec}"?>\n<keys/>'.encode())


@pytest.mark.parametrize("data", [
    pytest.param(b"<keys>\n<a>x\x00y</a></keys>", id="nul-byte"),
    pytest.param(b"<keys>\n<a>&#0;</a></keys>", id="char-ref-nul"),
    pytest.param(b"<keys>\x01</keys>", id="control-char"),
])
def test_libxml2_diagnostics_are_one_line(catalog: Catalog, data: bytes) -> None:
    """libxml2 says `Char 0x0 out of allowed range\\n, line 2, column 9`: the error stays one line."""
    with pytest.raises(MalformedDocument) as info:
        parse(catalog, data)
    assert "\n" not in str(info.value) and "\n" not in info.value.message
