"""One writer without a daemon (docs/design.md §2): two real `provd` processes writing the same section at the same
time both keep their change; a commit never overwrites a section committed since it was read, and a
rollback never silently undoes one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provd.errors import StoreConflict
from provd.model import Trigger
from provd.settings.store import BytesPayload, Store
from tests.support.cli import Provd, clone_store, provd_at
from tests.support.contacts import contact_list_xml

BIG = 30_000  # ~12 MB of XML: its apply runs long enough for a small one to start and finish inside it
ROUNDS = 4
LONE = "z0001"  # the one-contact patch's id, not among the big patch's c00001…


def _spawn(provd: Provd, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "provd", "--config", str(provd.config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _one_contact(tmp_path: Path) -> Path:
    path = tmp_path / "one.xml"
    path.write_text(contact_list_xml(1, seed=7).decode().replace('id="c00001"', f'id="{LONE}"'), encoding="utf-8")
    return path


@pytest.mark.slow
def test_two_applies_on_one_section_both_keep_their_change(tmp_path: Path) -> None:
    big = tmp_path / "big.xml"
    big.write_bytes(contact_list_xml(BIG))
    one = _one_contact(tmp_path)
    base = provd_at(tmp_path / "base")
    base.backup()  # creates the store

    # How long the big apply takes alone here: the small one is started at fractions of that.
    timing = clone_store(base, tmp_path / "timing")
    started = time.monotonic()
    timing.run("-q", "apply", str(big), check=0, timeout=120)
    run_time = time.monotonic() - started

    conflicts = 0
    for n in range(ROUNDS):
        provd = clone_store(base, tmp_path / f"round{n}")
        first = _spawn(provd, "apply", str(big))
        delay = run_time * n / (ROUNDS + 1)  # the stagger is the test's parameter, not a wait for anything
        with contextlib.suppress(subprocess.TimeoutExpired):
            first.wait(timeout=delay)
        second = _spawn(provd, "apply", str(one))
        _, err2 = second.communicate(timeout=120)
        _, err1 = first.communicate(timeout=120)
        assert first.returncode == 0 and second.returncode == 0, (n, err1, err2)
        assert "Traceback" not in err1 + err2
        after = provd.backup()
        assert f'id="c{BIG:05d}"' in after, f"round {n}: the big merge was lost"
        assert f'id="{LONE}"' in after, f"round {n}: the one-contact merge was lost"
        conflicts += "applied again" in err1 + err2
        shutil.rmtree(provd.state)
    assert conflicts >= 1, "no round raced: the test did not exercise the conflict"


@pytest.mark.slow
def test_rollback_during_an_apply_is_not_undone_by_it(tmp_path: Path) -> None:
    """A rollback committed while an apply computes: the apply's commit sees the conflict and applies its
    patch again on the rolled-back state (so the rollback's result stands, plus the apply's patch); a
    rollback after the apply's commit restores the old state whole. Never the apply's stale read."""
    big = tmp_path / "big.xml"
    big.write_bytes(contact_list_xml(BIG))
    base = provd_at(tmp_path / "base")
    base.run("-q", "apply", str(_one_contact(tmp_path)), check=0)  # generation 2
    timing = clone_store(base, tmp_path / "timing")
    started = time.monotonic()
    timing.run("-q", "apply", str(big), check=0, timeout=120)
    run_time = time.monotonic() - started

    orders = []
    for n in range(ROUNDS):
        provd = clone_store(base, tmp_path / f"round{n}")
        apply = _spawn(provd, "apply", str(big))
        with contextlib.suppress(subprocess.TimeoutExpired):  # the stagger is the test's parameter
            apply.wait(timeout=run_time * (n + 1) / (ROUNDS + 1))
        rollback = provd.run("rollback", "1")  # back to the factory list
        _, err = apply.communicate(timeout=120)
        assert apply.returncode == 0, err
        after = provd.backup()
        history = provd.run("history", check=0).stdout.splitlines()
        order = [line.split()[2] for line in history[-2:]]
        orders.append(order)
        if rollback.returncode:  # the apply committed while the rollback computed: refused, nothing changed
            assert "committed by another writer" in rollback.stderr and order[-1] == "apply", rollback.stderr
            assert f'id="{LONE}"' in after and f'id="c{BIG:05d}"' in after
            continue
        assert f'id="{LONE}"' not in after, f"round {n}: the rollback was undone ({order})"
        if order == ["rollback", "apply"]:
            assert f'id="c{BIG:05d}"' in after  # on top of the rolled-back state
        else:
            assert order == ["apply", "rollback"] and f'id="c{BIG:05d}"' not in after
        shutil.rmtree(provd.state)
    assert ["rollback", "apply"] in orders, orders


def _store(path: Path) -> Store:
    return Store.open(path, {"keys": ("1.34.0", BytesPayload(b"<keys/>"))})


def _payload(label: str) -> dict[str, tuple[str, BytesPayload]]:
    return {"keys": ("1.34.0", BytesPayload(f'<keys label="{label}"/>'.encode()))}


def test_commit_refuses_a_section_committed_since_it_was_read(tmp_path: Path) -> None:
    """Two connections on one file, as two processes have: the later commit of a stale read is refused."""
    db = tmp_path / "settings.db"
    mine, theirs = _store(db), _store(db)
    try:
        read = mine.section("keys")
        assert read is not None and read.generation == 1
        theirs.commit(_payload("theirs"), trigger=Trigger.APPLY, source="b", report={}, read_at={"keys": 1})
        with pytest.raises(StoreConflict, match=r"keys \(generation 2\).*nothing was written"):
            mine.commit(_payload("mine"), trigger=Trigger.APPLY, source="a", report={},
                        read_at={"keys": read.generation})
        assert mine.current_generation() == 2
        assert mine.section("keys") == theirs.section("keys")
        assert b"theirs" in (mine.section("keys") or read).xml
        # Read afresh, the same commit goes through.
        fresh = mine.section("keys")
        assert fresh is not None
        assert mine.commit(_payload("mine"), trigger=Trigger.APPLY, source="a", report={},
                           read_at={"keys": fresh.generation}) == 3
    finally:
        mine.close()
        theirs.close()


def test_rollback_commit_refuses_a_section_committed_since(tmp_path: Path) -> None:
    """What `Settings.rollback` does, with a commit landing between its read of the state and its own
    commit: the rollback fails (it is not re-applied: it would undo a change nobody saw)."""
    db = tmp_path / "settings.db"
    mine, theirs = _store(db), _store(db)
    try:
        theirs.commit(_payload("two"), trigger=Trigger.APPLY, source="b", report={}, read_at={"keys": 1})
        now = mine.state()  # the rollback to generation 1 reads the current state ...
        theirs.commit(_payload("three"), trigger=Trigger.APPLY, source="b", report={}, read_at={"keys": 2})
        target = mine.state(1)  # ... and restores generation 1's row
        with pytest.raises(StoreConflict):
            mine.commit({"keys": (target["keys"].version, BytesPayload(target["keys"].xml))}, trigger=Trigger.ROLLBACK,
                        source="generation 1", report={}, read_at={"keys": now["keys"].generation})
        assert b"three" in (mine.section("keys") or target["keys"]).xml
    finally:
        mine.close()
        theirs.close()
