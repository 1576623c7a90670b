"""The `provd` command run as a user runs it (a subprocess), bound to a configuration and a store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


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


def provd_in(tmp_path: Path) -> Provd:
    """The `provd` fixture's: configuration in `tmp_path`, store in `tmp_path/state`."""
    state = tmp_path / "state"
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(f"paths: {{state_dir: {state}, runtime_dir: {tmp_path / 'run'}}}\n")
    return Provd(cfg, state)


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
