"""The settings store (docs/design.md §3): SQLite in WAL mode with synchronous=FULL, one transaction per commit.

The only module that imports sqlite3. Each commit is a generation holding the sections it changed; the state
at a generation is, per section, the newest row at or before it. The last `KEEP` generations stay for
rollback; older rows are pruned except those still needed as a base. A store that fails its integrity check
is reported and left exactly as it is, never replaced.

One writer without a daemon (docs/design.md §2): every section read carries the generation of its row, and a commit
is told, per section it writes, the generation it read; inside the `BEGIN IMMEDIATE` transaction (which
serialises writers) a section committed since then raises StoreConflict instead of being overwritten.

Faults are errors, not tracebacks: a full disk raises StoreFull and a read-only state directory
StoreReadOnly, both naming the cause, the store unchanged. Readers (`show`, `backup`, `history`, `status`)
open the store read-only (`Store.open_reader`), so they work on a full or read-only disk where SQLite can.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from provd.errors import StoreConflict, StoreError, StoreFull, StoreReadOnly, UnknownGeneration
from provd.model import Generation, Outcome, Trigger

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


class Sink(Protocol):
    """Where a payload streams its bytes (an SQLite blob)."""

    def write(self, data: bytes, /) -> object: ...


class Payload(Protocol):
    """A section's XML as the store takes it: known size, bytes streamed on demand."""

    @property
    def size(self) -> int: ...

    def write_to(self, out: Sink) -> None: ...


@dataclass(frozen=True)
class BytesPayload:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def write_to(self, out: Sink) -> None:
        out.write(self.data)


@dataclass(frozen=True)
class StoredSection:
    version: str
    xml: bytes
    generation: int = 0  # of the row read: what a commit of this section checks against


Sections = Mapping[str, tuple[str, Payload]]  # name -> (version, XML)
ReadAt = Mapping[str, int]  # section -> generation of the row read (0: none), for the conflict check


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
        _check_dir(path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise _fault(exc, path, "cannot open settings store") from exc
        store = cls(conn, path)
        try:
            store._prepare(factory)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _fault(exc, path, "settings store is unreadable", left=True) from exc
        except StoreError:
            conn.close()
            raise
        return store

    @classmethod
    def open_reader(cls, path: Path, factory: Sections) -> Store:
        """Open for reading only: no file is created or written (no WAL switch, no checkpoint), so the
        read commands work on a full or read-only disk. SQLite needs the `-shm` file of a WAL database,
        which a reader may be unable to create there; the store is then opened as immutable, which is
        sound because nothing can write it either. A store that does not exist yet is created by a writer
        open (a fresh state directory shows the factory defaults).

        Raises:
            StoreError: as `open`.
        """
        _check_dir(path.parent)
        if not path.exists():
            return cls.open(path, factory)
        last: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, isolation_level=None,
                                       timeout=10.0)
            except sqlite3.Error as exc:
                last = exc
                continue
            store = cls(conn, path)
            try:
                store._check()
                return store
            except sqlite3.OperationalError as exc:  # cannot open -shm / -wal: try immutable
                conn.close()
                last = exc
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise _fault(exc, path, "settings store is unreadable", left=True) from exc
            except StoreError:
                conn.close()
                raise
        assert last is not None
        raise _fault(last, path, "settings store is unreadable", left=True) from last

    def _prepare(self, factory: Sections) -> None:
        c = self._conn
        c.execute("PRAGMA busy_timeout = 10000")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"cannot switch the store to WAL (journal_mode={mode})", path=str(self.path))
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        version, tables = self._check(creating=True)
        if version == 0 and not tables:
            with self._write():
                for statement in _DDL.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        if c.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 0:
            self.commit(factory, trigger=Trigger.FACTORY, source="schemas/defaults", report={})

    def _check(self, *, creating: bool = False) -> tuple[int, set[str]]:
        """The integrity and schema check, reads only; (user_version, tables) for `_prepare`."""
        c = self._conn
        c.execute("PRAGMA busy_timeout = 10000")
        check = c.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in check[:3])
            raise StoreError(f"settings store is corrupt ({detail}); it was left as it is", path=str(self.path))
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not (creating and version == 0 and not tables) and (
                version != _SCHEMA_VERSION or not {"generations", "section_rows", "runs"} <= tables):
            raise StoreError(f"not a provd settings store (schema version {version}); it was left as it is",
                             path=str(self.path))
        return version, tables

    def close(self) -> None:
        self._conn.close()

    def section(self, name: str, generation: int | None = None) -> StoredSection | None:
        """`name` now, or at `generation`; None when the store has no such section."""
        row = self._conn.execute(
            "SELECT version, xml, generation FROM section_rows WHERE name = ? AND generation <= ? "
            "ORDER BY generation DESC LIMIT 1", (name, generation if generation is not None else 2**62)
        ).fetchone()
        return StoredSection(row[0], bytes(row[1]), int(row[2])) if row else None

    def state(self, generation: int | None = None) -> dict[str, StoredSection]:
        """Every section at `generation` (default: now)."""
        gen = generation if generation is not None else 2**62
        rows = self._conn.execute(
            "SELECT r.name, r.version, r.xml, r.generation FROM section_rows r WHERE r.generation = ("
            "SELECT MAX(generation) FROM section_rows s WHERE s.name = r.name AND s.generation <= ?)"
            " ORDER BY r.name", (gen,))
        return {name: StoredSection(version, bytes(xml), int(g)) for name, version, xml, g in rows}

    def current_generation(self) -> int:
        return int(self._conn.execute("SELECT MAX(id) FROM generations").fetchone()[0] or 0)

    def commit(self, changed: Sections, *, trigger: Trigger, source: str, report: Mapping[str, object],
               read_at: ReadAt | None = None) -> int:
        """Write `changed` as a new generation in one transaction; returns its number.

        `read_at` gives, for each section in `changed`, the generation of the row it was computed from
        (`StoredSection.generation`, 0 when there was none): a section whose newest row is another one was
        committed by another writer since, and the commit is refused rather than losing that change.
        Without `read_at` (the factory generation) nothing is checked.

        Raises:
            StoreConflict: a section was committed since it was read; nothing was written.
            StoreFull, StoreReadOnly, StoreError: the write failed (the store keeps the previous generation).
        """
        c = self._conn
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._write():
            if read_at is not None:
                self._check_unchanged(changed, read_at)
            cur = c.execute(
                "INSERT INTO generations (time, trigger, source, sections, report) VALUES (?, ?, ?, ?, ?)",
                (now, trigger.value, source, json.dumps(sorted(changed)), json.dumps(report, sort_keys=True)))
            gen = int(cur.lastrowid or 0)
            for name, (version, payload) in sorted(changed.items()):
                row = c.execute("INSERT INTO section_rows (name, generation, version, xml) "
                                "VALUES (?, ?, ?, zeroblob(?))", (name, gen, version, payload.size))
                with c.blobopen("section_rows", "xml", int(row.lastrowid or 0)) as blob:
                    payload.write_to(blob)  # streamed: the XML never sits in memory as one object
            self._prune(gen)
        return gen

    def _check_unchanged(self, changed: Sections, read_at: ReadAt) -> None:
        moved = []
        for name in sorted(changed):
            row = self._conn.execute("SELECT MAX(generation) FROM section_rows WHERE name = ?", (name,)).fetchone()
            newest = int(row[0] or 0)
            if newest != read_at.get(name, 0):
                moved.append(f"{name} (generation {newest})")
        if moved:
            raise StoreConflict(f"committed by another writer since this one read it: {', '.join(moved)}; "
                                "nothing was written", path=str(self.path))

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

    def begin_run(self, trigger: Trigger, started: str) -> int:
        """A run number, reserved before the run starts (a run killed midway stays visible as such, with
        the pid that owns it, until `mark_interrupted`). Runs left "running" by dead processes are marked
        first: every writer that starts a run cleans up after a killed one."""
        self.mark_interrupted()
        with self._write():
            placeholder = {"trigger": trigger.value, "started": started, "outcome": Outcome.RUNNING.value,
                           "pid": os.getpid(), "pid_start": _process_start(os.getpid())}
            cur = self._conn.execute("INSERT INTO runs (report) VALUES (?)", (json.dumps(placeholder),))
            run = int(cur.lastrowid or 0)
            self._conn.execute("DELETE FROM runs WHERE id <= ?", (run - KEEP_RUNS,))
        return run

    def finish_run(self, run: int, report: Mapping[str, object]) -> None:
        with self._write():
            self._conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(report, sort_keys=True), run))

    def mark_interrupted(self) -> list[int]:
        """Mark every run left "running" by a process that no longer exists (killed, crashed) as
        `interrupted`; a run of a live process (another provd running now) is left alone. The daemon calls
        this at start; `begin_run` does too. Returns the runs marked.

        Raises:
            StoreError: the write failed.
        """
        rows = self._conn.execute("SELECT id, report FROM runs WHERE report LIKE '%\"outcome\": \"running\"%'"
                                  ).fetchall()
        dead = [(run, report) for run, report in ((r, json.loads(t)) for r, t in rows)
                if report.get("outcome") == Outcome.RUNNING.value and not _owner_alive(report)]
        if not dead:
            return []
        with self._write():
            for run, report in dead:
                self._conn.execute("UPDATE runs SET report = ? WHERE id = ?",
                                   (json.dumps(_interrupted(report), sort_keys=True), run))
        return [run for run, _ in dead]

    def last_run(self) -> dict[str, object] | None:
        """The newest run's report; one left "running" by a dead process shows as `interrupted` (a reader
        does not write it: the next writer does)."""
        row = self._conn.execute("SELECT id, report FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        if not row:
            return None
        report = json.loads(row[1])
        if report.get("outcome") == Outcome.RUNNING.value and not _owner_alive(report):
            report = _interrupted(report)
        return {**report, "run": row[0]}

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction. On a full disk SQLite may have rolled back already (SQLITE_FULL ends the
        transaction): a ROLLBACK then fails with "no transaction is active", which must not hide the
        true cause, so it is only issued while a transaction is open and its own failure is ignored."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        c.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise _fault(exc, self.path, "write failed; nothing was changed") from exc

    def history(self) -> list[Generation]:
        rows = self._conn.execute(
            "SELECT id, time, trigger, source, sections FROM generations WHERE id >= ? ORDER BY id",
            (self.current_generation() - KEEP + 1,))
        return [Generation(i, t, Trigger(tr), s, tuple(json.loads(secs))) for i, t, tr, s, secs in rows]

    def check_generation(self, generation: int) -> None:
        """Raises: UnknownGeneration unless `generation` is one of the kept ones."""
        if generation not in {g.number for g in self.history()}:
            raise UnknownGeneration(f"generation {generation} is not kept (see provd history)", path=str(self.path))


def _check_dir(state: Path) -> None:
    """A state_dir that exists but is not a directory (a file where a directory belongs) is named as such."""
    for parent in (state, *state.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"{parent} is not a directory (paths.state_dir must be one)", path=str(state))
            return


def _read_only(path: Path) -> bool:
    for parent in (path.parent, *path.parent.parents):
        with contextlib.suppress(OSError):
            return bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
    return False


def _fault(exc: BaseException, path: Path, what: str, *, left: bool = False) -> StoreError:
    """The StoreError for a failed SQLite or file operation, naming the true cause in one line: a full disk
    (SQLITE_FULL, ENOSPC), a read-only state directory, or else SQLite's own words."""
    text = " ".join(str(exc).split())  # one line
    code = getattr(exc, "sqlite_errorcode", None)
    full_codes = {getattr(sqlite3, "SQLITE_FULL", 13)}
    if code in full_codes or "disk is full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        return StoreFull(f"{what}: database or disk is full (no space left on device)", path=str(path))
    if (isinstance(exc, OSError) and exc.errno == errno.EROFS) or _read_only(path) or "readonly" in text:
        return StoreReadOnly(f"{what}: the settings store is read-only ({text})", path=str(path))
    suffix = "; it was left as it is" if left else ""
    return StoreError(f"{what} ({text}){suffix}", path=str(path))


def _process_start(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (/proc), to tell a live owner from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _owner_alive(report: Mapping[str, object]) -> bool:
    pid = report.get("pid")
    if not isinstance(pid, int):
        return False  # a run row from before pids were recorded: its process is long gone
    start = _process_start(pid)
    return start is not None and start == report.get("pid_start", start)


def _interrupted(report: Mapping[str, object]) -> dict[str, object]:
    errors = report.get("errors")
    return {**report, "outcome": Outcome.INTERRUPTED.value,
            "errors": [*(errors if isinstance(errors, list) else []),
                       f"interrupted: the process (pid {report.get('pid', '?')}) ended before the run finished"]}
