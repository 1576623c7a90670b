"""Settings patch semantics (docs/design.md §4): merge vs replace, leaves, keyed lists, positions, whole lists."""

from __future__ import annotations

import pytest

from provd.model import ChangeAction
from provd.settings.catalog import Catalog
from tests.support.settings import apply_text, section, values

KEYS = """<keys version="1.34.0"><phoneXtensions>
<key keyNumber="1" label="one"><templateName>speed</templateName></key>
<key keyNumber="2" label="two"/>
</phoneXtensions><extensionModule1><key keyNumber="1" label="module-one"/></extensionModule1></keys>"""

CASES = [
    pytest.param(
        "<provisioning><url>http://prov.example/x.xml</url></provisioning>", {},
        "provisioning", "/provisioning/url/text()", ["http://prov.example/x.xml"], id="leaf-overwrites"),
    pytest.param(
        "<provisioning><url>http://a/</url></provisioning>", {},
        "provisioning", "/provisioning/dhcp/text()", ["true"], id="absent-leaf-stays"),
    pytest.param(
        "<provisioning><execution><time>03:15</time></execution></provisioning>", {},
        "provisioning", "/provisioning/execution/mondays/text()", ["true"], id="absent-sibling-in-container-stays"),
    pytest.param(
        '<keys><phoneXtensions><key keyNumber="1" label="uno"/></phoneXtensions></keys>', {"keys": KEYS},
        "keys", "/keys/phoneXtensions/key[@keyNumber='1']/templateName", [], id="keyed-entry-replaced-whole"),
    pytest.param(
        '<keys><phoneXtensions><key keyNumber="1" label="uno"/></phoneXtensions></keys>', {"keys": KEYS},
        "keys", "/keys/phoneXtensions/key/@label", ["uno", "two"], id="other-entries-stay"),
    pytest.param(
        '<keys><phoneXtensions><key keyNumber="3" label="three"/></phoneXtensions></keys>', {"keys": KEYS},
        "keys", "/keys/phoneXtensions/key/@keyNumber", ["1", "2", "3"], id="new-entry-appended"),
    pytest.param(
        '<keys><phoneXtensions><key keyNumber="1" label="uno"/></phoneXtensions></keys>', {"keys": KEYS},
        "keys", "/keys/extensionModule1/key/@label", ["module-one"], id="key-unique-per-module-only"),
    pytest.param(
        "<identities><identity/><identity><displayName>Second</displayName><active>true</active></identity>"
        "</identities>", {},
        "identities", "/identities/identity/active/text()", ["false", "true", "false", "false", "false", "false"],
        id="identities-by-position"),
    pytest.param(
        "<provisioning><sip><allowlist><allowlistEntry>10.0.0.1</allowlistEntry>"
        "<allowlistEntry>10.0.0.2</allowlistEntry></allowlist></sip></provisioning>",
        {"provisioning": '<provisioning version="1.34.0"><sip><active>true</active><allowlist>'
                         '<allowlistEntry>192.0.2.9</allowlistEntry></allowlist></sip></provisioning>'},
        "provisioning", "/provisioning/sip/allowlist/allowlistEntry/text()", ["10.0.0.1", "10.0.0.2"],
        id="plain-value-list-replaced-whole"),
    pytest.param(
        "<provisioning><sip><allowlist><allowlistEntry>10.0.0.1</allowlistEntry></allowlist></sip></provisioning>",
        {"provisioning": '<provisioning version="1.34.0"><sip><active>true</active></sip></provisioning>'},
        "provisioning", "/provisioning/sip/active/text()", ["true"], id="sibling-of-list-stays"),
    pytest.param(
        '<configuration patchDefault="false"><keys><phoneXtensions><key keyNumber="5"/></phoneXtensions></keys>'
        "</configuration>", {"keys": KEYS},
        "keys", "//key/@keyNumber", ["5"], id="patchDefault-false-replaces"),
    pytest.param(
        '<configuration patchDefault="false"><keys patch="true"><phoneXtensions><key keyNumber="5"/>'
        "</phoneXtensions></keys></configuration>", {"keys": KEYS},
        "keys", "/keys/phoneXtensions/key/@keyNumber", ["1", "2", "5"], id="patch-true-overrides-default"),
    pytest.param(
        '<keys patch="false"/>', {"keys": KEYS}, "keys", "//key", [], id="bare-section-patch-false-empties"),
    pytest.param(
        '<users><user name="admin"><role>user</role></user><user name="bob"><role>user</role></user></users>',
        {}, "users", "/users/user/@name", ["admin", "bob"], id="users-keyed-on-name"),
]


@pytest.mark.parametrize(("patch", "stored", "name", "xpath", "expected"), CASES)
def test_patch(catalog: Catalog, patch: str, stored: dict[str, str], name: str, xpath: str,
               expected: list[str]) -> None:
    changes, wc = apply_text(catalog, patch, stored)
    assert [c.errors for c in changes if c.errors] == []
    assert values(wc, name, xpath) == expected


def test_control_attributes_never_stored(catalog: Catalog) -> None:
    _, wc = apply_text(catalog, '<configuration patchDefault="true"><keys patch="true" version="1.34.0"/>'
                                "</configuration>")
    assert section(wc, "keys") == '<keys version="1.34.0"/>\n'


def test_merge_mode_reported(catalog: Catalog) -> None:
    changes, _ = apply_text(catalog, '<configuration patchDefault="false"><keys/><telephony patch="true"/>'
                                     "</configuration>")
    assert [(c.section, c.action) for c in changes] == [("keys", ChangeAction.REPLACED),
                                                        ("telephony", ChangeAction.MERGED)]


@pytest.mark.parametrize(("patch", "section_name"), [
    pytest.param('<keys><phoneXtensions><key keyNumber="x"/></phoneXtensions></keys>', "keys", id="bad-type"),
    pytest.param('<identities patch="false"><identity/></identities>', "identities", id="replace-needs-six"),
    pytest.param('<keys patch="maybe"/>', "keys", id="bad-patch-attribute"),
    pytest.param("<configuration><network/></configuration>", "network", id="unknown-section"),
])
def test_rejected_section_leaves_settings(catalog: Catalog, patch: str, section_name: str) -> None:
    changes, wc = apply_text(catalog, patch, {"keys": KEYS})
    assert [c.action for c in changes] == [ChangeAction.REJECTED]
    assert changes[0].section == section_name and changes[0].errors
    assert wc.changed() == {}


def test_rejection_is_per_section(catalog: Catalog) -> None:
    changes, wc = apply_text(catalog, '<configuration><keys><phoneXtensions><key keyNumber="x"/></phoneXtensions>'
                                      "</keys><telephony><callWaiting><active>false</active></callWaiting>"
                                      "</telephony></configuration>")
    assert [c.action for c in changes] == [ChangeAction.REJECTED, ChangeAction.MERGED]
    assert set(wc.changed()) == {"telephony"}


def test_rejection_names_line_and_xpath(catalog: Catalog) -> None:
    changes, _ = apply_text(catalog, '<keys>\n<phoneXtensions>\n<key keyNumber="x"/></phoneXtensions></keys>')
    assert "t.xml:3" in changes[0].errors[0] and "/keys/phoneXtensions/key" in changes[0].errors[0]


def test_lua_code_text_preserved(catalog: Catalog) -> None:
    code = "\nlocal x = 1 \n  if x then print( x ) end\n"
    _, wc = apply_text(catalog, f'<keys><phoneXtensions><key keyNumber="4"><keyConfiguration><lua><code>{code}'
                                "</code></lua></keyConfiguration></key></phoneXtensions></keys>")
    assert values(wc, "keys", "//code/text()") == [code]
