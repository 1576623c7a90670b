"""The store under faults (docs/design.md §3), on real filesystems made for the test: a nearly full and a full disk
(tmpfs of a few MiB), a read-only mount, a file where the state directory belongs, and a run left "running"
by a provd killed with SIGKILL. Each is a clear one-line error or works; none leaves the store changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provd import config as config_mod
from provd.errors import StoreError
from provd.model import RunReport, Trigger
from provd.run import provision
from provd.settings.phone import PhoneSettings
from tests.support.cli import Provd
from tests.support.contacts import contact_list_xml
from tests.support.polling import wait_until

FAULTS = Path(__file__).resolve().parents[1] / "support" / "peers" / "faults.py"
READERS = ("show", "backup", "history", "status")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of `directory` until `leave` bytes are free (0: completely)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
        with contextlib.suppress(OSError):  # ENOSPC: full
            fh.write(b"\0" * max(0, free - leave))
            while leave == 0:
                fh.write(b"\0" * 4096)
    return filler


def _provd(tmp_path: Path, state: Path) -> Provd:
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps({"paths": {"state_dir": str(state), "runtime_dir": str(tmp_path / "run")},
                               "http": {"max_file_bytes": 64 << 20}, "ntp": {"required": False},
                               "device": {"interface": "lo", "mac": "00:09:52:00:00:0E"}}))
    return Provd(cfg, state)


def _one_line_error(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("provd: error: ")]
    assert errors and all(w in errors[0] for w in words), stderr
    assert "cannot rollback" not in stderr and "Traceback" not in stderr


def test_full_disk_apply_names_the_cause_and_changes_nothing(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "3m") as disk:
        provd = _provd(tmp_path, disk / "state")
        before = provd.backup()
        history = provd.run("history", check=0).stdout
        patch = tmp_path / "contacts.xml"
        patch.write_bytes(contact_list_xml(5_000))  # ~2 MB: does not fit in what is left
        _fill(disk, 256 << 10)
        result = provd.run("apply", str(patch), check=1)
        _one_line_error(result.stderr, "database or disk is full")
        assert provd.backup() == before
        assert provd.run("history", check=0).stdout == history


def test_full_disk_run_commit_raises_only_store_errors(tmp_path: Path) -> None:
    """A provisioning run's commit on a full disk: the run ends failed naming the cause, or (when not even
    its report can be written) raises a StoreError; never a bare sqlite3 error for the daemon to die of."""
    with _tmpfs(tmp_path / "disk", "3m") as disk:
        provd = _provd(tmp_path, disk / "state")
        before = provd.backup()
        patch = tmp_path / "contacts.xml"
        patch.write_bytes(contact_list_xml(5_000))
        settings = PhoneSettings(config_mod.load(str(provd.config)))
        try:
            settings.store.last_run()
            _fill(disk, 128 << 10)
            outcome: object
            try:
                outcome = asyncio.run(provision.run(settings, trigger=Trigger.CLI, url=patch.as_uri()))
            except StoreError as exc:
                outcome = exc
            if isinstance(outcome, StoreError):
                assert "database or disk is full" in str(outcome)
            else:
                assert isinstance(outcome, RunReport)
                assert outcome.outcome.value == "failed" and outcome.generation is None
                assert any("database or disk is full" in e for e in outcome.errors), outcome.errors
        finally:
            settings.close()
        assert provd.backup() == before


def test_completely_full_disk_still_reads(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "3m") as disk:
        provd = _provd(tmp_path, disk / "state")
        before = provd.backup()
        _fill(disk, 0)
        for command in READERS:
            provd.run(command, check=0)
        assert provd.backup() == before
        assert "last run" in provd.run("status", check=0).stdout


def test_read_only_state_reads_work_and_writes_say_read_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    provd = _provd(tmp_path, state)
    before = provd.backup()
    patch = tmp_path / "keys.xml"
    patch.write_text('<keys><phoneXtensions><key keyNumber="1" label="x"/></phoneXtensions></keys>')
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        for command in READERS:
            provd.run(command, check=0)
        assert provd.backup() == before
        for args in (("apply", str(patch)), ("rollback", "1"), ("start", "--url", patch.as_uri(), "--wait", "1")):
            _one_line_error(provd.run(*args, check=1).stderr, "read-only")
    finally:
        subprocess.run(["umount", str(state)], check=True)
    assert provd.backup() == before


@pytest.mark.parametrize("args", [
    ("show",), ("backup",), ("history",), ("status",), ("apply", "PATCH"), ("rollback", "1"),
    ("start", "--url", "PATCH", "--wait", "1"), ("discover", "--wait", "1"), ("run",),
], ids=lambda a: a[0])
def test_state_dir_that_is_a_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory\n")
    patch = tmp_path / "keys.xml"
    patch.write_text("<keys/>")
    provd = _provd(tmp_path, state)
    result = provd.run(*(patch.as_uri() if a == "PATCH" and args[0] == "start" else str(patch) if a == "PATCH"
                         else a for a in args), check=1, timeout=30)
    _one_line_error(result.stderr, "is not a directory")
    assert len(result.stderr.strip().splitlines()) == 1
    assert state.read_text() == "not a directory\n"


def test_run_killed_mid_run_is_marked_interrupted(tmp_path: Path) -> None:
    """`provd start --url` (in-process, no daemon) SIGKILLed while its download stalls: `status` does not
    say "in progress" for ever, and the next writer marks the run `interrupted` in the store."""
    server = subprocess.Popen([sys.executable, "-I", str(FAULTS), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        provd = _provd(tmp_path, tmp_path / "state")
        provd.backup()
        run = subprocess.Popen([sys.executable, "-m", "provd", "--config", str(provd.config), "start", "--url",
                                f"http://127.0.0.1:{port}/kill/stall"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _count(port).get("/kill/stall", 0) >= 1, timeout=30, what="the stalled download")
            status = json.loads(provd.run("status", "--json", check=0).stdout)
            assert status["last_report"]["outcome"] == "running"  # alive: not marked
            os.kill(run.pid, signal.SIGKILL)
        finally:
            run.wait(timeout=30)
        text = provd.run("status", check=0).stdout
        assert "in progress" not in text and "interrupted" in text, text
        provd.run("apply", str(_keys(tmp_path)), check=0)  # a writer: marks it in the store
        reports = _runs(provd.state)
        assert reports[-2]["outcome"] == "interrupted" and reports[-1]["outcome"] == "applied", reports
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _count(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as response:
        counts: dict[str, int] = json.load(response)
    return counts


def _keys(tmp_path: Path) -> Path:
    patch = tmp_path / "keys.xml"
    patch.write_text('<keys><phoneXtensions><key keyNumber="1" label="after"/></phoneXtensions></keys>')
    return patch


def _runs(state: Path) -> list[dict[str, object]]:
    import sqlite3

    conn = sqlite3.connect(state / "settings.db")
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT report FROM runs ORDER BY id")]
    finally:
        conn.close()
