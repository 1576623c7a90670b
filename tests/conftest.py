"""Common fixtures: the schema catalog, the vendor examples, and a `provd` CLI bound to a fresh store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from provd.settings.catalog import Catalog
from tests.peers.http import http_peers, served  # noqa: F401
from tests.peers.netbench import check_sync, dhcp_server, netns, ntp_server, pnp_responder, prov_http, redirect_service  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"  # test data kept in the repository, with its provenance (tests/data/README.md)
VENDOR = DATA / "vendor-examples"  # the vendor's published provisioning files, byte for byte
TORTURE = DATA / "sip-torture"  # RFC 4475's torture messages, byte for byte


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog()


@dataclass
class Provd:
    """Runs `python -m provd --config CFG ...` as a user would; the store lives in `state`."""

    config: Path
    state: Path

    def run(self, *args: str, stdin: bytes | None = None, check: int | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "provd", "--config", str(self.config), *args],
            input=stdin.decode() if stdin is not None else None, capture_output=True, text=True,
            timeout=timeout, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def backup(self) -> str:
        return self.run("backup", check=0).stdout


@pytest.fixture
def provd(tmp_path: Path) -> Provd:
    state = tmp_path / "state"
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(f"paths: {{state_dir: {state}, runtime_dir: {tmp_path / 'run'}}}\n")
    return Provd(cfg, state)


WriteFile = Callable[[str, str], Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def provd_at(dest: Path) -> Provd:
    """A `provd` whose configuration and store live under `dest` (the store is created on first use), with
    files up to 64 MiB allowed (the big contact lists of the crash and concurrency tests)."""
    dest.mkdir(parents=True)
    config = dest / "provd.yaml"
    config.write_text(f"paths: {{state_dir: {dest / 'state'}, runtime_dir: {dest / 'run'}}}\n"
                      f"http: {{max_file_bytes: {64 << 20}}}\n")
    return Provd(config, dest / "state")


def clone_store(src: Provd, dest: Path) -> Provd:
    """A fresh copy of the store files of `src` (settings.db and any -wal/-shm) under `dest`."""
    provd = provd_at(dest)
    provd.state.mkdir()
    for f in sorted(src.state.glob("settings.db*")):
        shutil.copy2(f, provd.state / f.name)
    return provd
