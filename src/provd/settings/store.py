"""The settings store (docs/design.md §3): SQLite in WAL mode with synchronous=FULL, one transaction per commit.

The only module that imports sqlite3. Each commit is a generation holding the sections it changed; the state
at a generation is, per section, the newest row at or before it. The last `KEEP` generations stay for
rollback; older rows are pruned except those still needed as a base. A store that fails its integrity check
is reported and left exactly as it is, never replaced.

One writer without a daemon (docs/design.md §2): every section read carries the generation of its row, and a commit
is told, per section it writes, the generation it read; inside the `BEGIN IMMEDIATE` transaction (which
serialises writers) a section committed since then raises StoreConflict instead of being overwritten.

Safe changes (docs/design.md §10) live here too, each written in the transaction of what it describes: the
health gate's pending generation (in `meta`) with the commit that made it pending or the rollback that ends it;
the quarantine with the automatic rollback; the result reports waiting for `report.url` (`outbox`) with the
commit of their run (not yet ready to send: the run has not finished) and completed when the run is recorded.
So a kill -9 at any moment leaves a report for every commit and a pending state that matches the generations.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from provd.core.health import Pending
from provd.core.quarantine import Fingerprint
from provd.errors import StoreConflict, StoreError, StoreFull, StoreReadOnly, UnknownGeneration
from provd.model import Generation, Outcome, Trigger

KEEP = 20
KEEP_RUNS = 100
_SCHEMA_VERSION = 3  # 2: rowid table (streamed blobs), runs; 3: meta, quarantine, outbox (docs/design.md §10)
_V2_TABLES = frozenset({"generations", "section_rows", "runs"})
_V3_TABLES = _V2_TABLES | {"meta", "quarantine", "outbox"}

_DDL_V2 = """
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
_DDL_V3 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    generation INTEGER NOT NULL,
    time TEXT NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    run INTEGER,
    ready INTEGER NOT NULL,
    time TEXT NOT NULL,
    body TEXT NOT NULL
);
"""
_DDL = _DDL_V2 + _DDL_V3

_PENDING = "health.pending"  # meta key: the pending generation's state (Pending.to_json)
_DROPPED = "report.dropped"  # meta key: reports dropped from a full outbox, not yet told in a delivered one


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
class QueuedReport:
    """A result report waiting in the outbox (docs/design.md §10): `ready` once its run has finished."""

    id: int
    run: int | None
    time: str
    ready: bool
    body: dict[str, object]


Gate = Callable[[Pending | None, int, int], Pending | None]  # (stored, new generation, previous) -> to store


@dataclass(frozen=True)
class StoredSection:
    version: str
    xml: bytes
    generation: int = 0  # of the row read: what a commit of this section checks against


Sections = Mapping[str, tuple[str, Payload]]  # name -> (version, XML)
ReadAt = Mapping[str, int]  # section -> generation of the row read (0: none), for the conflict check


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, outbox: int | None = None) -> None:
        self._conn = conn
        self.path = path
        self.outbox_limit = outbox  # report.max_pending while report.url is set; None: no reports are queued
        self._v3 = True

    @classmethod
    def open(cls, path: Path, factory: Sections, *, outbox: int | None = None) -> Store:
        """Open (creating it with `factory` as generation 1 if absent) and check the store; a store of schema 2
        is brought to 3 in one transaction (its generations and runs untouched). `outbox`: see `outbox_limit`.

        Raises:
            StoreError: cannot be created or opened, is not a provd store, or is corrupt.
        """
        _check_dir(path.parent)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise _fault(exc, path, "cannot open settings store") from exc
        store = cls(conn, path, outbox)
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
    def open_reader(cls, path: Path, factory: Sections, *, outbox: int | None = None) -> Store:
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
            return cls.open(path, factory, outbox=outbox)
        last: sqlite3.Error | None = None
        for flags in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, isolation_level=None,
                                       timeout=10.0)
            except sqlite3.Error as exc:
                last = exc
                continue
            store = cls(conn, path, outbox)
            try:
                _version, tables = store._check()
                store._v3 = tables >= _V3_TABLES  # a schema-2 store read as it is: nothing pending or queued
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
        elif version == 2:
            with self._write():  # the v3 tables only: every generation and run stays as it was
                for statement in _DDL_V3.split(";"):
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
        known = (version == 2 and tables >= _V2_TABLES) or (version == _SCHEMA_VERSION and tables >= _V3_TABLES)
        if not (creating and version == 0 and not tables) and not known:
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
               read_at: ReadAt | None = None, run: int | None = None, gate: Gate | None = None,
               ends_pending: int | None = None, quarantine: Fingerprint = ()) -> int:
        """Write `changed` as a new generation in one transaction; returns its number.

        `read_at` gives, for each section in `changed`, the generation of the row it was computed from
        (`StoredSection.generation`, 0 when there was none): a section whose newest row is another one was
        committed by another writer since, and the commit is refused rather than losing that change.
        Without `read_at` (the factory generation) nothing is checked.

        In the same transaction (docs/design.md §10): `run`'s report is queued, not yet ready, while reports are
        kept (`outbox_limit`); `gate` says what is pending from now on (given the stored state, the new
        generation and the one before it); `ends_pending` (an automatic rollback) requires that generation
        to be the pending one and clears it; `quarantine` (the rolled-back documents) is remembered.

        Raises:
            StoreConflict: a section was committed since it was read, or `ends_pending` is not pending any
                more; nothing was written.
            StoreFull, StoreReadOnly, StoreError: the write failed (the store keeps the previous generation).
        """
        c = self._conn
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._write():
            if read_at is not None:
                self._check_unchanged(changed, read_at)
            previous = self.current_generation()
            stored = self._pending() if gate is not None or ends_pending is not None else None
            if ends_pending is not None and (stored is None or stored.generation != ends_pending):
                raise StoreConflict(f"generation {ends_pending} is no longer waiting on its health check; "
                                    "nothing was written", path=str(self.path))
            cur = c.execute(
                "INSERT INTO generations (time, trigger, source, sections, report) VALUES (?, ?, ?, ?, ?)",
                (now, trigger.value, source, json.dumps(sorted(changed)), json.dumps(report, sort_keys=True)))
            gen = int(cur.lastrowid or 0)
            for name, (version, payload) in sorted(changed.items()):
                row = c.execute("INSERT INTO section_rows (name, generation, version, xml) "
                                "VALUES (?, ?, ?, zeroblob(?))", (name, gen, version, payload.size))
                with c.blobopen("section_rows", "xml", int(row.lastrowid or 0)) as blob:
                    payload.write_to(blob)  # streamed: the XML never sits in memory as one object
            if gate is not None:
                self._put_pending(gate(stored, gen, previous))
            elif ends_pending is not None:
                self._put_pending(None)
            if quarantine:
                self._remember(quarantine, gen, now)
            if run is not None and self.outbox_limit is not None:
                self._queue({**report, "run": run, "generation": gen}, run=run, ready=False, now=now)
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
        """Record `run`'s final report; while reports are kept, the same transaction completes the one its
        commit queued (or queues it, for a run that committed nothing): ready to send."""
        with self._write():
            self._conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(report, sort_keys=True), run))
            self._complete(run, {**report, "run": run})

    def _complete(self, run: int, body: Mapping[str, object]) -> None:
        if self.outbox_limit is None:
            return
        text = json.dumps(body, sort_keys=True)
        updated = self._conn.execute("UPDATE outbox SET body = ?, ready = 1 WHERE run = ? AND ready = 0",
                                     (text, run)).rowcount
        if not updated:
            self._queue(body, run=run, ready=True)

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
                marked = _interrupted(report)
                self._conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(marked, sort_keys=True), run))
                queued = self._conn.execute("SELECT body FROM outbox WHERE run = ? AND ready = 0", (run,)).fetchone() \
                    if self._v3 and self.outbox_limit is not None else None
                # A run killed after its commit: its queued report (what was committed) says so, and is sent.
                self._complete(run, _interrupted(json.loads(queued[0])) if queued else {**marked, "run": run})
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

    # --- the health gate (docs/design.md §10) -------------------------------------------------------------

    def pending(self) -> Pending | None:
        """The generation waiting on its health check, if any.

        Raises:
            StoreError: the stored state is not one provd wrote (it is left as it is).
        """
        return self._pending()

    def _pending(self) -> Pending | None:
        if not self._v3:
            return None
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_PENDING,)).fetchone()
        if row is None:
            return None
        try:
            return Pending.from_json(json.loads(row[0]))
        except (ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"the pending health state is unreadable ({exc}); it was left as it is",
                             path=str(self.path)) from exc

    def _put_pending(self, pending: Pending | None) -> None:
        if pending is None:
            self._conn.execute("DELETE FROM meta WHERE key = ?", (_PENDING,))
        else:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                               (_PENDING, json.dumps(pending.to_json(), sort_keys=True)))

    def update_pending(self, generation: int, pending: Pending | None, *, event: Mapping[str, object] | None = None,
                       quarantine: Fingerprint = (), confirmed: bool = False) -> bool:
        """Store `pending` (None: nothing pending any more) if `generation` is still the pending one, with
        `event` (a confirmation) queued and `quarantine` remembered in the same transaction; False, nothing
        written, when it is not: a commit or a rollback came first, and its word stands. `confirmed`: the
        generation proved healthy, so its documents leave the quarantine (a push applied with --force and then
        confirmed is not refused at the next run).

        Raises:
            StoreError: the write failed.
        """
        with self._write():
            stored = self._pending()
            if stored is None or stored.generation != generation:
                return False
            self._put_pending(pending)
            if event is not None and self.outbox_limit is not None:
                self._queue(event, run=None, ready=True)
            if quarantine:
                self._remember(quarantine, generation, datetime.now(UTC).isoformat(timespec="seconds"))
            if confirmed and stored.fingerprint:
                released = json.dumps(list(stored.fingerprint))
                self._conn.execute("DELETE FROM quarantine WHERE fingerprint = ?", (released,))
        return True

    # --- quarantine -----------------------------------------------------------------------------------------

    def quarantined(self) -> list[Fingerprint]:
        """The documents of rolled-back runs, oldest first."""
        if not self._v3:
            return []
        rows = self._conn.execute("SELECT fingerprint FROM quarantine ORDER BY id").fetchall()
        return [tuple(json.loads(text)) for (text,) in rows]

    def _remember(self, fingerprint: Fingerprint, generation: int, now: str) -> None:
        text = json.dumps(list(fingerprint))
        self._conn.execute("DELETE FROM quarantine WHERE fingerprint = ?", (text,))
        self._conn.execute("INSERT INTO quarantine (fingerprint, generation, time) VALUES (?, ?, ?)",
                           (text, generation, now))
        self._conn.execute("DELETE FROM quarantine WHERE id NOT IN (SELECT id FROM quarantine ORDER BY id DESC "
                           "LIMIT ?)", (KEEP,))

    # --- the result reports' outbox ------------------------------------------------------------------------

    def queue_event(self, body: Mapping[str, object]) -> None:
        """Queue a report that belongs to no run (a confirmation), ready to send; nothing while reports are
        not kept.

        Raises:
            StoreError: the write failed.
        """
        if self.outbox_limit is None:
            return
        with self._write():
            self._queue(body, run=None, ready=True)

    def _queue(self, body: Mapping[str, object], *, run: int | None, ready: bool, now: str | None = None) -> None:
        """Insert into the outbox, inside the caller's transaction; the oldest beyond `outbox_limit` are dropped
        and counted, so the next delivered report can say how many the server missed."""
        assert self.outbox_limit is not None
        c = self._conn
        c.execute("INSERT INTO outbox (run, ready, time, body) VALUES (?, ?, ?, ?)",
                  (run, int(ready), now or datetime.now(UTC).isoformat(timespec="seconds"),
                   json.dumps(body, sort_keys=True)))
        limit = max(self.outbox_limit, 1)  # the newest report is always kept
        dropped = c.execute("DELETE FROM outbox WHERE id NOT IN (SELECT id FROM outbox ORDER BY id DESC LIMIT ?)",
                            (limit,)).rowcount
        if dropped > 0:
            c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                      "value = CAST(value AS INTEGER) + excluded.value", (_DROPPED, str(dropped)))

    def outbox(self) -> list[QueuedReport]:
        """Every report waiting to be delivered, oldest first (`provd reports`)."""
        if not self._v3:
            return []
        rows = self._conn.execute("SELECT id, run, time, ready, body FROM outbox ORDER BY id").fetchall()
        return [QueuedReport(i, r, t, bool(ready), json.loads(body)) for i, r, t, ready, body in rows]

    def next_report(self) -> QueuedReport | None:
        """The oldest report ready to send (a run's report is ready once the run has finished)."""
        if not self._v3:
            return None
        row = self._conn.execute("SELECT id, run, time, ready, body FROM outbox WHERE ready = 1 ORDER BY id "
                                 "LIMIT 1").fetchone()
        return QueuedReport(row[0], row[1], row[2], True, json.loads(row[4])) if row else None

    def dropped(self) -> int:
        """Reports dropped from a full outbox that no delivered report has told of yet."""
        if not self._v3:
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (_DROPPED,)).fetchone()
        return int(row[0]) if row else 0

    def delivered(self, report: int, told_dropped: int) -> None:
        """`report` reached the server (a 2xx), telling it of `told_dropped` dropped ones: both forgotten in
        one transaction. A report dropped meanwhile (the outbox overflowed during the POST) is no error.

        Raises:
            StoreError: the write failed (the report stays and is sent again: at least once, never lost).
        """
        with self._write():
            self._conn.execute("DELETE FROM outbox WHERE id = ?", (report,))
            if told_dropped:
                self._conn.execute("UPDATE meta SET value = MAX(CAST(value AS INTEGER) - ?, 0) WHERE key = ?",
                                   (told_dropped, _DROPPED))

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
