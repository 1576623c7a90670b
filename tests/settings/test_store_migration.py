"""A real schema-2 store (tests/data/stores/schema2.db, made by the previous schema's code) through the CLI."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from tests.support.cli import Provd, provd_at

SCHEMA2 = Path(__file__).parent.parent / "data" / "stores" / "schema2.db"


def _with_v2(tmp_path: Path) -> Provd:
    provd = provd_at(tmp_path / "p")
    provd.state.mkdir()
    shutil.copy2(SCHEMA2, provd.state / "settings.db")
    return provd


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_writer_open_migrates_to_3_keeping_everything(tmp_path: Path) -> None:
    """Reads before and after a writer's open give the same generations, sections and runs, now at schema 3."""
    provd = _with_v2(tmp_path)
    db = provd.state / "settings.db"
    assert _user_version(db) == 2
    before = [provd.run("history", "--json", check=0).stdout, provd.backup()]
    provd.run("rollback", "2", check=0)  # a writer: opens (migrates), commits generation 3
    assert _user_version(db) == 3
    old = json.loads(before[0])
    new = json.loads(provd.run("history", "--json", check=0).stdout)
    old_rows = old if isinstance(old, list) else old["generations"]
    new_rows = new if isinstance(new, list) else new["generations"]
    assert all(row in new_rows for row in old_rows)  # every schema-2 generation kept as it was
    provd.run("rollback", "2", check=0)
    assert provd.backup() == before[1]


def test_reader_reads_v2_without_migrating(tmp_path: Path) -> None:
    provd = _with_v2(tmp_path)
    db = provd.state / "settings.db"
    raw = db.read_bytes()
    db.chmod(0o444)
    provd.state.chmod(0o555)
    try:
        provd.run("show", check=0)
        provd.run("history", "--json", check=0)
    finally:
        provd.state.chmod(0o755)
    assert db.read_bytes() == raw
    assert _user_version(db) == 2


def test_unknown_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    for version in (1, 4):
        provd = provd_at(tmp_path / f"v{version}")
        provd.state.mkdir()
        db = provd.state / "settings.db"
        shutil.copy2(SCHEMA2, db)
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.close()
        raw = db.read_bytes()
        proc = provd.run("show")
        assert proc.returncode != 0 and "schema version" in proc.stderr, proc.stderr
        proc = provd.run("rollback", "1")
        assert proc.returncode != 0 and "schema version" in proc.stderr, proc.stderr
        assert db.read_bytes() == raw
