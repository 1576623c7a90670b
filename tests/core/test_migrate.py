"""Migration (docs/design.md §5): version detection, the declared steps, dropping unknown elements, validation."""

from __future__ import annotations

import pytest

from provd.core.versions import resolve_version
from provd.model import ChangeAction
from provd.settings.catalog import Catalog
from tests.support.settings import apply_text, values

SUPPORTED = ["1.8.8", "1.26.11", "1.34.0"]


@pytest.mark.parametrize(("declared", "expected", "warns"), [
    pytest.param("1.34.0", "1.34.0", False, id="current"),
    pytest.param("1.8.8", "1.8.8", False, id="oldest"),
    pytest.param("1.8.9", "1.8.8", False, id="between-takes-lower"),
    pytest.param("1.30.0", "1.26.11", False, id="between-middle"),
    pytest.param("0.0.0", "1.8.8", True, id="older-than-all"),
    pytest.param("2.0.0", "1.34.0", True, id="newer-than-current"),
    pytest.param("banana", "1.8.8", True, id="not-a-version"),
    pytest.param("\u0661.\u0662\u0666.\u0661\u0661", "1.8.8", True, id="arabic-indic-digits-are-not-a-version"),
])
def test_resolve_version(declared: str, expected: str, warns: bool) -> None:
    version, warning = resolve_version(declared, SUPPORTED)
    assert version == expected
    assert (warning is not None) == warns


OLD_PROVISIONING = """<provisioning version="1.8.8" patch="false"><active>true</active><dhcp>false</dhcp>
<redirect>false</redirect><url>http://old/</url><sip><active>true</active><whitelist>
<whitelistEntry>192.0.2.1</whitelistEntry><whitelistEntry>192.0.2.2</whitelistEntry></whitelist></sip>
</provisioning>"""


@pytest.mark.parametrize(("patch", "name", "xpath", "expected"), [
    pytest.param(OLD_PROVISIONING, "provisioning", "/provisioning/sip/allowlist/allowlistEntry/text()",
                 ["192.0.2.1", "192.0.2.2"], id="rename-whitelist"),
    pytest.param(OLD_PROVISIONING, "provisioning", "/provisioning/pbx/text()", ["false"],
                 id="add-with-default-full-section"),
    pytest.param('<provisioning version="1.8.8"><url>http://x/</url></provisioning>', "provisioning",
                 "/provisioning/pbx/text()", ["true"], id="add-skipped-for-merge-patch"),
    pytest.param('<telephony version="1.8.8"><callWaitingTone>false</callWaitingTone></telephony>', "telephony",
                 "/telephony/callWaiting/tone/text()", ["false"], id="move-into-container"),
    pytest.param('<telephony version="1.8.8"><callWaitingTone>false</callWaitingTone></telephony>', "telephony",
                 "/telephony/callWaiting/active/text()", ["true"], id="move-keeps-siblings"),
    pytest.param('<users version="1.26.11"><user name="bob"><image>x</image><role>admin</role></user></users>',
                 "users", "/users/user[@name='bob']/*/text()", ["admin"], id="remove-element"),
    pytest.param('<provisioning><sip><whitelist><whitelistEntry>192.0.2.7</whitelistEntry></whitelist></sip>'
                 "</provisioning>", "provisioning", "/provisioning/sip/allowlist/allowlistEntry/text()",
                 ["192.0.2.7"], id="detected-1.8.8-without-version"),
    pytest.param('<keys version="1.34.0"><phoneXtensions><key keyNumber="1" colour="red"><blink/></key>'
                 "</phoneXtensions></keys>", "keys", "//key/@*", ["1"], id="unknown-dropped"),
    pytest.param('<users version="1.8.9"><user name="carol"><role>user</role></user></users>', "users",
                 "/users/user/@name", ["admin", "carol"], id="vendor-1.8.9"),
])
def test_migration(catalog: Catalog, patch: str, name: str, xpath: str, expected: list[str]) -> None:
    changes, wc = apply_text(catalog, patch)
    assert [c.errors for c in changes if c.errors] == []
    assert values(wc, name, xpath) == expected
    assert wc.get(name).get("version") == "1.34.0"


def test_unknown_elements_reported_as_warnings(catalog: Catalog) -> None:
    changes, _ = apply_text(catalog, '<keys version="1.34.0"><phoneXtensions><key keyNumber="1"><blink/></key>'
                                     "</phoneXtensions><lightShow/></keys>")
    dropped = [w for w in changes[0].warnings if "dropped" in w]
    assert len(dropped) == 2
    assert any("/keys/lightShow" in w for w in dropped)


@pytest.mark.parametrize(("patch", "detected_hint"), [
    pytest.param("<users><user name='d'><image>i</image></user></users>", "1.26.11", id="image-means-1.26.11"),
    pytest.param("<identities><identity><active>true</active></identity></identities>", None,
                 id="partial-identities-is-current"),
])
def test_detection(catalog: Catalog, patch: str, detected_hint: str | None) -> None:
    changes, _ = apply_text(catalog, patch)
    assert changes[0].action is ChangeAction.MERGED
    migrated = changes[0].migrated
    if detected_hint is None:
        assert migrated == ()
    else:
        assert any(m.startswith(detected_hint) for m in migrated)


def test_migrated_section_that_stays_invalid_is_rejected(catalog: Catalog) -> None:
    changes, wc = apply_text(catalog, '<configuration><telephony version="1.8.8"><callWaitingTone>loud'
                                      '</callWaitingTone></telephony><keys/></configuration>')
    assert [c.action for c in changes] == [ChangeAction.REJECTED, ChangeAction.MERGED]
    assert "callWaiting/tone" in changes[0].errors[0] or "tone" in changes[0].errors[0]
    assert "telephony" not in wc.changed()
