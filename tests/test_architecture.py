"""The layering holds (the import contracts in pyproject.toml, checked by import-linter: layers, independence,
a pure core, one adapter per foreign library), and the light commands stay light (lazy imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    """scripts/test runs `lint-imports` too; here a plain pytest run checks the contracts as well."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; from provd import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('lxml', 'yaml', 'sqlite3', 'httpx', 'scapy', 'xmlschema') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="


def test_offline_commands_stay_light(tmp_path: Path) -> None:
    """`provd apply` loads neither asyncio nor OpenSSL: ssl and _hashlib cost a 10,000-contact apply
    ~8 MB of its 60 MB budget (bench/bench_apply.py)."""
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(f"paths: {{state_dir: {tmp_path / 'state'}}}\n")
    patch = tmp_path / "p.xml"
    patch.write_text("<keys/>")
    code = (f"import sys; from provd import cli\ncli.main(['--config', {str(cfg)!r}, 'apply', {str(patch)!r}])\n"
            "heavy = [m for m in ('asyncio', 'ssl', '_hashlib', 'httpx', 'scapy', 'ntplib') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY="
