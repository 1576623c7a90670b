"""Quarantine over real HTTP (docs/design.md §10): `provd start` (in this process's CLI, no daemon) fetches a
reference chain from nginx; once its generation is rolled back after a failed health check, the same bytes are
not applied again (outcome `quarantined`, exit 1, nothing committed) until a file changes, the chain's order
changes, or `--force`. The automatic rollback itself is the daemon's (tests/service/test_health_gate_daemon.py);
here the store's rollback of a failed pending generation stands in for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provd import config
from provd.settings.phone import PhoneSettings
from tests.support.cli import Provd
from tests.support.daemon import configure
from tests.support.peers.http import Served, http_peers, served  # noqa: F401

KEY = '<keys><phoneXtensions><key keyNumber="{n}" label="{label}"/></phoneXtensions></keys>'
CHAIN = "<referencedSettings><url>{first}</url><url>{second}</url></referencedSettings>"


def start(provd: Provd, *args: str, check: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(provd.run("start", "--json", *args, check=check).stdout)
    return result


def generations(provd: Provd) -> int:
    return len(json.loads(provd.run("history", "--json", check=0).stdout))


def fail_the_gate(provd: Provd) -> None:
    """What the daemon does when the window ends: roll the pending generation back, quarantining its files."""
    phone = PhoneSettings(config.load(str(provd.config)))
    try:
        pending = phone.store.pending()
        assert pending is not None
        phone.rollback(pending.target, failed=pending._replace(last_failure="exit 1"))
    finally:
        phone.close()


def test_a_rolled_back_chain_is_quarantined_until_it_changes(tmp_path: Path, served: Served) -> None:  # noqa: F811
    served.write("a.xml", KEY.format(n=1, label="one"))
    served.write("b.xml", KEY.format(n=2, label="two"))
    served.write("ref.xml", CHAIN.format(first="a.xml", second="b.xml"))
    provd = configure(tmp_path, extra={"health": {"check": ["false"]}})
    provd.run("confirm", check=0)
    url = served.http_url + "ref.xml"

    applied = start(provd, "--url", url, check=0)
    assert applied["outcome"] == "applied" and [f["type"] for f in applied["files"]] == \
        ["reference", "patch", "patch"]
    fail_the_gate(provd)
    before = generations(provd)

    refused = start(provd, "--url", url, check=1)
    assert refused["outcome"] == "quarantined" and refused["generation"] is None
    assert len(refused["files"]) == 3  # fetched, compared, not applied
    assert generations(provd) == before

    served.write("ref.xml", CHAIN.format(first="b.xml", second="a.xml"))  # the same files in another order
    reordered = start(provd, "--url", url, check=0)
    assert reordered["outcome"] == "applied"
    fail_the_gate(provd)
    assert start(provd, "--url", url, check=1)["outcome"] == "quarantined"

    served.write("b.xml", KEY.format(n=2, label="twO"))  # one changed byte in one file of the chain
    assert start(provd, "--url", url, check=0)["outcome"] == "applied"


def test_force_applies_a_quarantined_file_with_a_warning(tmp_path: Path, served: Served) -> None:  # noqa: F811
    served.write("a.xml", KEY.format(n=1, label="one"))
    provd = configure(tmp_path, extra={"health": {"check": ["false"]}})
    provd.run("confirm", check=0)
    url = served.http_url + "a.xml"
    start(provd, "--url", url, check=0)
    fail_the_gate(provd)
    human = provd.run("start", "--url", url, check=1)
    assert "quarantined: these exact documents were rolled back" in human.stderr
    assert "or provd start --force" in human.stderr
    forced = start(provd, "--force", "--url", url, check=0)
    assert forced["outcome"] == "applied" and any("--force" in w for w in forced["warnings"])
