"""The dry run's change set: elements added and removed, values changed, list entries named by key."""

from __future__ import annotations

import pytest

from provd import xmltree
from provd.core.diff import diff


def d(old: str, new: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    result = diff(xmltree.parse(old.encode()), xmltree.parse(new.encode()))
    return result.added, result.changed, result.removed


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("<keys/>", "<keys/>", ((), (), ()), id="same"),
    pytest.param("<keys><phoneXtensions><key keyNumber='1' label='a'/></phoneXtensions></keys>",
                 "<keys><phoneXtensions><key keyNumber='1' label='b'/></phoneXtensions></keys>",
                 ((), ("/keys/phoneXtensions/key[@keyNumber='1']",), ()), id="attribute-changed"),
    pytest.param("<keys><phoneXtensions/></keys>",
                 "<keys><phoneXtensions><key keyNumber='2'><templateName>t</templateName></key>"
                 "</phoneXtensions></keys>",
                 (("/keys/phoneXtensions/key[@keyNumber='2']",), (), ()), id="entry-added-not-its-leaves"),
    pytest.param("<users><user name='a'><role>user</role></user></users>", "<users/>",
                 ((), (), ("/users/user[@name='a']",)), id="entry-removed"),
    pytest.param("<provisioning version='1.8.8'><url>a</url></provisioning>",
                 "<provisioning version='1.34.0'><url>b</url></provisioning>",
                 ((), ("/provisioning/url",), ()), id="leaf-changed-version-ignored"),
    pytest.param("<identities><identity><active>false</active></identity><identity/></identities>",
                 "<identities><identity><active>false</active></identity><identity><active>true</active>"
                 "</identity></identities>",
                 (("/identities/identity[2]/active",), (), ()), id="identity-by-position"),
])
def test_diff(old: str, new: str, expected: tuple[tuple[str, ...], ...]) -> None:
    assert d(old, new) == expected
