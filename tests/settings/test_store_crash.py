"""Crash test of the store (docs/design.md §3: a run commits in one transaction): `provd apply` of a large patch is
SIGKILLed at random moments across its run; afterwards the store is exactly the state before (A) or
exactly the state after (B), byte for byte through `provd backup`, and SQLite's integrity check passes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import Provd, clone_store, provd_at
from tests.support.contacts import contact_list_xml
from tests.support.paths import VENDOR

ROUNDS = int(os.environ.get("PROVD_CRASH_ROUNDS", "50"))
CONTACTS = 20_000  # ~8 MB of XML, a commit of the same size


def _start_apply(provd: Provd, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "provd", "--config", str(provd.config), "-q", "apply", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _integrity(state: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(state / "settings.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_during_apply_leaves_state_a_or_b(tmp_path: Path) -> None:
    large = tmp_path / "contacts.xml"
    large.write_bytes(contact_list_xml(CONTACTS))

    seed = provd_at(tmp_path / "a")
    seed.run("apply", str(VENDOR / "music.xml"), check=0)
    backup_a = seed.backup()

    # State B, computed in its own copy; the same run measures how long a whole apply takes.
    full = clone_store(seed, tmp_path / "b")
    started = time.monotonic()
    proc = _start_apply(full, large)
    _, stderr = proc.communicate(timeout=60)
    run_time = time.monotonic() - started
    assert proc.returncode == 0, stderr.decode()
    backup_b = full.backup()
    assert backup_b != backup_a and f'id="c{CONTACTS:05d}"' in backup_b

    # Delays are fractions of the run time, stratified uniform over [0, 1.2): every part of the run, the
    # commit and the exit included, is hit in every test run, while each delay is still uniform within its
    # stratum. The run-time estimate follows the machine (other jobs on 2 cores change it mid-test): a
    # round that finishes on its own measures it, a round killed past the estimate shows it is longer.
    rng = random.Random(os.environ.get("PROVD_CRASH_SEED", "provd"))
    fractions = [1.2 * (i + rng.random()) / ROUNDS for i in range(ROUNDS)]
    rng.shuffle(fractions)
    estimate = run_time

    outcomes = {"A": 0, "B": 0}
    killed_after_commit = 0
    for n, fraction in enumerate(fractions):
        store = clone_store(seed, tmp_path / f"round{n}")
        delay = fraction * estimate
        started = time.monotonic()
        proc = _start_apply(store, large)
        try:
            proc.wait(timeout=delay)
            estimate = time.monotonic() - started
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            estimate = max(estimate, delay)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, stderr.decode())
        assert b"Traceback" not in stderr, stderr.decode()
        after = store.backup()
        assert _integrity(store.state) == [("ok",)], f"round {n}, killed after {delay:.3f} s"
        if after == backup_a:
            outcomes["A"] += 1
        else:
            assert after == backup_b, f"round {n}: killed after {delay:.3f} s, the store is neither A nor B"
            outcomes["B"] += 1
            killed_after_commit += proc.returncode == -signal.SIGKILL
        shutil.rmtree(store.state)

    print(f"\ncrash test: {ROUNDS} rounds, full run {run_time:.3f} s (last estimate {estimate:.3f} s): "
          f"A={outcomes['A']} B={outcomes['B']} (of which killed after the commit: {killed_after_commit})")
    assert outcomes["A"] >= 1 and outcomes["B"] >= 1, outcomes



GATED = "health: {check: [\"true\"]}\nreport: {url: \"http://127.0.0.1:9/reports\"}\n"


def _safe_state(state: Path) -> tuple[int, dict[str, object] | None, list[tuple[int | None, int, dict[str, object]]]]:
    """(newest generation, the pending state, the outbox rows as (run, ready, body)), read with sqlite3."""
    conn = sqlite3.connect(state / "settings.db")
    try:
        newest = int(conn.execute("SELECT MAX(id) FROM generations").fetchone()[0])
        row = conn.execute("SELECT value FROM meta WHERE key = 'health.pending'").fetchone()
        outbox = [(run, int(ready), json.loads(body))
                  for run, ready, body in conn.execute("SELECT run, ready, body FROM outbox ORDER BY id")]
    finally:
        conn.close()
    return newest, json.loads(row[0]) if row else None, outbox


@pytest.mark.slow
def test_sigkill_during_a_gated_apply_keeps_pending_and_report_with_the_commit(tmp_path: Path) -> None:
    """docs/design.md §10: the pending health state and the run's queued report are written in the commit's own
    transaction. Killed at any moment, a store either has no new generation and neither, or the generation,
    pending for exactly it, and its report queued (completed as interrupted by the next writer)."""
    from provd import config as config_mod
    from provd.settings.phone import PhoneSettings

    large = tmp_path / "contacts.xml"
    large.write_bytes(contact_list_xml(CONTACTS // 2))
    seed = provd_at(tmp_path / "a")
    seed.run("apply", str(VENDOR / "music.xml"), check=0)
    base = _safe_state(seed.state)[0]

    timing = clone_store(seed, tmp_path / "timing")
    timing.config.write_text(timing.config.read_text() + GATED)
    started = time.monotonic()
    proc = _start_apply(timing, large)
    _, stderr = proc.communicate(timeout=60)
    run_time = time.monotonic() - started
    assert proc.returncode == 0, stderr.decode()

    rounds = max(ROUNDS // 2, 4)
    rng = random.Random(os.environ.get("PROVD_CRASH_SEED", "provd-gated"))
    fractions = [1.2 * (i + rng.random()) / rounds for i in range(rounds)]
    seen = {"A": 0, "B": 0}
    for n, fraction in enumerate(fractions):
        store = clone_store(seed, tmp_path / f"gated{n}")
        store.config.write_text(store.config.read_text() + GATED)
        proc = _start_apply(store, large)
        try:
            proc.wait(timeout=fraction * run_time)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        newest, pending, outbox = _safe_state(store.state)
        if newest == base:
            seen["A"] += 1
            assert pending is None and all(body.get("generation") in (None, base) for _, _, body in outbox), n
        else:
            seen["B"] += 1
            assert newest == base + 1 and pending is not None and pending["generation"] == newest, n
            ours = [(ready, body) for _, ready, body in outbox if body.get("generation") == newest]
            assert len(ours) == 1, (n, outbox)
            phone = PhoneSettings(config_mod.load(str(store.config)))  # the next writer tidies up
            phone.store.mark_interrupted()
            phone.close()
            _, _, after = _safe_state(store.state)
            done = [(ready, body) for _, ready, body in after if body.get("generation") == newest]
            assert len(done) == 1 and done[0][0] == 1, (n, after)
            assert done[0][1]["outcome"] in ("applied", "interrupted"), done
        shutil.rmtree(store.state)
    print(f"\ngated crash test: {rounds} rounds, full run {run_time:.3f} s: A={seen['A']} B={seen['B']}")
    assert seen["A"] >= 1 and seen["B"] >= 1, seen
