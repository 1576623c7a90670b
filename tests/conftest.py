"""Common fixtures: the schema catalog, a `provd` CLI bound to a fresh store, a file writer, and the real
peers' fixtures. The helpers they use live in tests/support/."""

from __future__ import annotations

from pathlib import Path

import pytest

from provd.settings.catalog import Catalog
from tests.support.cli import Provd, provd_in
from tests.support.paths import WriteFile
from tests.support.peers.http import http_peers, served  # noqa: F401
from tests.support.peers.netbench import (  # noqa: F401
    check_sync,
    dhcp6_server,
    dhcp_server,
    netns,
    netns6,
    netns_dual,
    ntp_server,
    pnp_responder,
    prov_http,
    redirect_service,
)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture
def provd(tmp_path: Path) -> Provd:
    return provd_in(tmp_path)


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
