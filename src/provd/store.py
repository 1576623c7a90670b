"""The settings store (docs/design.md §3): SQLite in WAL mode with synchronous=FULL, one transaction per commit.

The only module that imports sqlite3. Each commit is a generation holding the sections it changed; the state
at a generation is, per section, the newest row at or before it. The last `KEEP` generations stay for
rollback; older rows are pruned except those still needed as a base. A store that fails its integrity check
is reported and left exactly as it is, never replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from provd.errors import StoreError, UnknownGeneration
from provd.model import Generation

KEEP = 20
KEEP_RUNS = 100
_SCHEMA_VERSION = 2  # 2: rowid table (streamed blobs), runs

_DDL = """
CREATE TABLE generations (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    trigger TEXT NOT NULL,
    source TEXT NOT NULL,
    sections TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    report TEXT NOT NULL
);
CREATE TABLE section_rows (
    name TEXT NOT NULL,
    generation INTEGER NOT NULL REFERENCES generations(id),
    version TEXT NOT NULL,
    xml BLOB NOT NULL,
    UNIQUE (name, generation)
);
"""


class Payload(Protocol):
    """A section's XML as the store takes it: known size, bytes streamed on demand."""

    @property
    def size(self) -> int: ...

    def write_to(self, out: Any) -> None: ...


@dataclass(frozen=True)
class BytesPayload:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def write_to(self, out: Any) -> None:
        out.write(self.data)


@dataclass(frozen=True)
class StoredSection:
    version: str
    xml: bytes


Sections = Mapping[str, tuple[str, Payload]]  # name -> (version, XML)


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path, factory: Sections) -> Store:
        """Open (creating it with `factory` as generation 1 if absent) and check the store.

        Raises:
            StoreError: cannot be created or opened, is not a provd store, or is corrupt.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open settings store: {exc}", path=str(path)) from exc
        store = cls(conn, path)
        try:
            store._prepare(factory)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"settings store is unreadable ({exc}); it was left as it is", path=str(path)) from exc
        except StoreError:
            conn.close()
            raise
        return store

    def _prepare(self, factory: Sections) -> None:
        c = self._conn
        c.execute("PRAGMA busy_timeout = 10000")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot switch the store to WAL (journal_mode={mode})", path=str(self.path))
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        check = c.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in check[:3])
            raise StoreError(f"settings store is corrupt ({detail}); it was left as it is", path=str(self.path))
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and not tables:
            with self._write():
                for statement in _DDL.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        elif version != _SCHEMA_VERSION or not {"generations", "section_rows", "runs"} <= tables:
            raise StoreError(f"not a provd settings store (schema version {version}); it was left as it is",
                             path=str(self.path))
        if c.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 0:
            self.commit(factory, trigger="factory", source="schemas/defaults", report={})

    def close(self) -> None:
        self._conn.close()

    def section(self, name: str, generation: int | None = None) -> StoredSection | None:
        """`name` now, or at `generation`; None when the store has no such section."""
        row = self._conn.execute(
            "SELECT version, xml FROM section_rows WHERE name = ? AND generation <= ? "
            "ORDER BY generation DESC LIMIT 1", (name, generation if generation is not None else 2**62)
        ).fetchone()
        return StoredSection(row[0], bytes(row[1])) if row else None

    def state(self, generation: int | None = None) -> dict[str, StoredSection]:
        """Every section at `generation` (default: now)."""
        gen = generation if generation is not None else 2**62
        rows = self._conn.execute(
            "SELECT r.name, r.version, r.xml FROM section_rows r WHERE r.generation = ("
            "SELECT MAX(generation) FROM section_rows s WHERE s.name = r.name AND s.generation <= ?)"
            " ORDER BY r.name", (gen,))
        return {name: StoredSection(version, bytes(xml)) for name, version, xml in rows}

    def current_generation(self) -> int:
        return int(self._conn.execute("SELECT MAX(id) FROM generations").fetchone()[0] or 0)

    def commit(self, changed: Sections, *, trigger: str, source: str, report: Mapping[str, object]) -> int:
        """Write `changed` as a new generation in one transaction; returns its number.

        Raises:
            StoreError: the write failed (the store keeps the previous generation).
        """
        c = self._conn
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._write():
            cur = c.execute(
                "INSERT INTO generations (time, trigger, source, sections, report) VALUES (?, ?, ?, ?, ?)",
                (now, trigger, source, json.dumps(sorted(changed)), json.dumps(report, sort_keys=True)))
            gen = int(cur.lastrowid or 0)
            for name, (version, payload) in sorted(changed.items()):
                row = c.execute("INSERT INTO section_rows (name, generation, version, xml) "
                                "VALUES (?, ?, ?, zeroblob(?))", (name, gen, version, payload.size))
                with c.blobopen("section_rows", "xml", int(row.lastrowid or 0)) as blob:
                    payload.write_to(blob)  # streamed: the XML never sits in memory as one object
            self._prune(gen)
        return gen

    def _prune(self, newest: int) -> None:
        oldest_kept = newest - KEEP + 1
        if oldest_kept <= 1:
            return
        # A row older than the oldest kept generation is still the base of that generation's state unless a
        # newer row of the same section at or before it exists.
        self._conn.execute(
            "DELETE FROM section_rows WHERE generation < :k AND EXISTS ("
            "SELECT 1 FROM section_rows s WHERE s.name = section_rows.name AND s.generation > section_rows.generation "
            "AND s.generation <= :k)", {"k": oldest_kept})
        self._conn.execute(
            "DELETE FROM generations WHERE id < :k AND id NOT IN (SELECT generation FROM section_rows)",
            {"k": oldest_kept})

    def begin_run(self, trigger: str, started: str) -> int:
        """A run number, reserved before the run starts (a run killed midway stays visible as such)."""
        with self._write():
            placeholder = {"trigger": trigger, "started": started, "outcome": "running"}
            cur = self._conn.execute("INSERT INTO runs (report) VALUES (?)", (json.dumps(placeholder),))
            run = int(cur.lastrowid or 0)
            self._conn.execute("DELETE FROM runs WHERE id <= ?", (run - KEEP_RUNS,))
        return run

    def finish_run(self, run: int, report: Mapping[str, object]) -> None:
        with self._write():
            self._conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(report, sort_keys=True), run))

    def mark_interrupted(self, finished: str) -> list[int]:
        """Every run still "running" becomes `interrupted`: called by the daemon at start, under its lock, when
        no run of its own can be in progress (a killed daemon left them). The run numbers marked.

        Raises:
            StoreError: the write failed.
        """
        marked: list[int] = []
        with self._write():
            for run, text in self._conn.execute("SELECT id, report FROM runs").fetchall():
                report = json.loads(text)
                if report.get("outcome") != "running":
                    continue
                report.update(outcome="interrupted", finished=finished, errors=[
                    "interrupted: provd ended during this run (killed?); the store holds the last committed "
                    "generation"])
                self._conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(report, sort_keys=True), run))
                marked.append(int(run))
        return marked

    def last_run(self) -> dict[str, object] | None:
        row = self._conn.execute("SELECT id, report FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return {**json.loads(row[1]), "run": row[0]} if row else None

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}", path=str(self.path)) from exc

    def history(self) -> list[Generation]:
        rows = self._conn.execute(
            "SELECT id, time, trigger, source, sections FROM generations WHERE id >= ? ORDER BY id",
            (self.current_generation() - KEEP + 1,))
        return [Generation(i, t, tr, s, tuple(json.loads(secs))) for i, t, tr, s, secs in rows]

    def check_generation(self, generation: int) -> None:
        """Raises: UnknownGeneration unless `generation` is one of the kept ones."""
        if generation not in {g.number for g in self.history()}:
            raise UnknownGeneration(f"generation {generation} is not kept (see provd history)", path=str(self.path))


def default_store_path(state_dir: str) -> Path:
    return Path(os.path.expanduser(state_dir)) / "settings.db"
