"""Operations files (docs/design.md §4): delete/replace/add by XPath, all-or-nothing per section."""

from __future__ import annotations

import pytest

from provd.core.operations import normalise_path
from provd.model import ChangeAction
from provd.settings.catalog import Catalog
from tests.support.settings import apply_text, values

KEYS = """<keys version="1.34.0"><phoneXtensions>
<key keyNumber="1" label="one"/><key keyNumber="2" label="two"/><key keyNumber="3" label="three"/>
</phoneXtensions></keys>"""
STORED = {"keys": KEYS}


def ops(*entries: str) -> str:
    return "<operations>" + "".join(entries) + "</operations>"


@pytest.mark.parametrize(("raw", "expected"), [
    ("/keys/phoneXtensions/", "/keys/phoneXtensions"),
    ("/keys/", "/keys"),
    (" /keys/a ", "/keys/a"),
    ("/", "/"),
])
def test_trailing_slash_ignored(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(("document", "xpath", "expected"), [
    pytest.param(ops("<delete path=\"/keys/phoneXtensions/key[@keyNumber='2']\"/>"),
                 "//key/@label", ["one", "three"], id="delete-one"),
    pytest.param(ops('<delete path="/keys/phoneXtensions/key[@keyNumber > 1]"/>'),
                 "//key/@label", ["one"], id="delete-many"),
    pytest.param(ops("<replace path=\"/keys/phoneXtensions/key[@keyNumber='2']/\">"
                     '<key keyNumber="2" label="zwei"/></replace>'),
                 "//key/@label", ["one", "zwei", "three"], id="replace-vendor-trailing-slash"),
    pytest.param(ops('<add path="/keys/phoneXtensions/"><key keyNumber="4" label="four"/>'
                     '<key keyNumber="5" label="five"/></add>'),
                 "//key/@label", ["one", "two", "three", "four", "five"], id="add-children"),
    pytest.param(ops('<add path="/keys"><extensionModule1><key keyNumber="9"/></extensionModule1></add>'),
                 "/keys/extensionModule1/key/@keyNumber", ["9"], id="add-container"),
    pytest.param(ops("<delete path=\"/keys/phoneXtensions/key[@keyNumber='1']\"/>",
                     '<add path="/keys/phoneXtensions"><key keyNumber="1" label="uno"/></add>'),
                 "//key/@label", ["two", "three", "uno"], id="document-order"),
])
def test_operations(catalog: Catalog, document: str, xpath: str, expected: list[str]) -> None:
    changes, wc = apply_text(catalog, document, STORED)
    assert [(c.section, c.action) for c in changes] == [("keys", ChangeAction.OPERATIONS)]
    assert values(wc, "keys", xpath) == expected


@pytest.mark.parametrize("document", [
    pytest.param(ops('<delete path="/keys/phoneXtensions/key[@keyNumber=\'9\']"/>'), id="selects-nothing"),
    pytest.param(ops('<delete path="/keys/phoneXtensions/key/@label"/>'), id="selects-attribute"),
    pytest.param(ops('<delete path="/keys/phoneXtensions/key/@label/../text()"/>'), id="selects-text"),
    pytest.param(ops('<replace path="/keys/phoneXtensions/key"><key keyNumber="1"/></replace>'),
                 id="replace-needs-one"),
    pytest.param(ops('<add path="/keys/phoneXtensions/key"><x/></add>'), id="add-needs-one"),
    pytest.param(ops('<delete path="/keys/phoneXtensions/key[@keyNumber=="/>'), id="bad-xpath"),
    pytest.param(ops('<delete path="/keys/phoneXtensions/nosuch(1)"/>'), id="bad-function"),
    pytest.param(ops('<delete path="count(/keys/phoneXtensions)"/>'.replace("count(", "/keys/x | count(")),
                 id="non-node-set"),
    pytest.param(ops('<delete path="/keys"/>'), id="delete-section-root"),
    pytest.param(ops('<add path="/keys/phoneXtensions"><key keyNumber="1"/></add>'), id="result-invalid-dup"),
    pytest.param(ops('<add path="/keys/phoneXtensions"><lamp/></add>'), id="result-invalid-unknown"),
    pytest.param(ops("<delete path=\"/keys/phoneXtensions/key[@keyNumber='1']\"/>",
                     '<delete path="/keys/phoneXtensions/key[@keyNumber=\'7\']"/>'), id="second-fails-first-undone"),
])
def test_failed_operations_discard_the_section(catalog: Catalog, document: str) -> None:
    changes, wc = apply_text(catalog, document, STORED)
    assert [(c.section, c.action) for c in changes] == [("keys", ChangeAction.REJECTED)]
    assert changes[0].errors
    assert wc.changed() == {}
    assert values(wc, "keys", "//key/@label") == ["one", "two", "three"]


def test_other_sections_stay(catalog: Catalog) -> None:
    changes, wc = apply_text(catalog, ops(
        '<delete path="/keys/phoneXtensions/key[@keyNumber=\'9\']"/>',
        '<replace path="/telephony/callWaiting"><callWaiting><active>false</active></callWaiting></replace>',
    ), STORED)
    assert [(c.section, c.action) for c in changes] == [("keys", ChangeAction.REJECTED),
                                                        ("telephony", ChangeAction.OPERATIONS)]
    assert set(wc.changed()) == {"telephony"}
    assert values(wc, "telephony", "/telephony/callWaiting/*/text()") == ["false"]


def test_error_names_xpath_and_line(catalog: Catalog) -> None:
    changes, _ = apply_text(catalog, "<operations>\n\n<delete path=\"/keys/phoneXtensions/key[@keyNumber='9']\"/>"
                                     "</operations>", STORED)
    assert "t.xml:3" in changes[0].errors[0]
    assert "/keys/phoneXtensions/key[@keyNumber='9']" in changes[0].errors[0]


def test_unknown_section_discarded(catalog: Catalog) -> None:
    changes, wc = apply_text(catalog, ops('<delete path="/network/lan"/>'), STORED)
    assert changes[0].action is ChangeAction.REJECTED and changes[0].section == "network"
    assert wc.changed() == {}


@pytest.mark.parametrize("path", [
    pytest.param("/keys//key[count(preceding::*) > 0]", id="axis-and-function"),
    pytest.param("/keys/phoneXtensions/key[@keyNumber=$n]", id="variable"),
    pytest.param("/keys/phoneXtensions/key[evil(@keyNumber)]", id="unknown-function"),
    pytest.param("/keys/phoneXtensions/key[a[b[c]]]", id="nested-three-deep"),
    pytest.param("/keys/phoneXtensions/key[.//code]", id="descendant-in-predicate"),
    pytest.param("/keys/ancestor::node()", id="ancestor-axis"),
    pytest.param("/keys/" + "a/" * 300 + "b", id="too-long"),
])
def test_xpath_outside_the_supported_subset(catalog: Catalog, path: str) -> None:
    changes, wc = apply_text(catalog, ops(f'<delete path="{path}"/>'), STORED)
    assert [c.action for c in changes] == [ChangeAction.REJECTED]
    assert "not supported" in changes[0].errors[0] or "longer" in changes[0].errors[0] \
        or "nested" in changes[0].errors[0]
    assert wc.changed() == {}


@pytest.mark.parametrize("path", [
    "/keys/phoneXtensions/key[@keyNumber='1' and @label=&quot;one&quot;]",
    "/keys/phoneXtensions/key[position() = last()]",
    "/keys//key[starts-with(@label, 't')]",
    "/keys/phoneXtensions/key[not(@label='[count(preceding::*)]')]",
])
def test_xpath_inside_the_subset(catalog: Catalog, path: str) -> None:
    changes, _ = apply_text(catalog, ops(f'<delete path="{path}"/>'), STORED)
    assert [c.action for c in changes] == [ChangeAction.OPERATIONS]
