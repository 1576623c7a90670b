"""The layering holds: the pure core does no I/O, and each foreign library has one adapter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "provd"

# The core may use lxml trees only through provd.xmltree, and nothing that touches the outside world.
CORE_FORBIDDEN = {"os", "socket", "asyncio", "sqlite3", "httpx", "subprocess", "pathlib", "time", "yaml",
                  "scapy", "ntplib", "xmlschema", "lxml", "provd.settings", "provd.config"}

ADAPTERS = {"sqlite3": {"store.py"}, "yaml": {"config.py"}, "httpx": {"http.py"}, "scapy": {"dhcp_child.py"},
            "ntplib": {"ntp.py"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted((SRC / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_is_pure(path: Path) -> None:
    bad = {m for m in imports(path) if m in CORE_FORBIDDEN or m.split(".")[0] in CORE_FORBIDDEN}
    assert bad == set()


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_one_adapter_per_library(library: str) -> None:
    users = {p.name for p in SRC.rglob("*.py") if any(m.split(".")[0] == library for m in imports(p))}
    assert users <= ADAPTERS[library]


def test_lxml_only_in_xmltree() -> None:
    users = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if any(m.startswith("lxml") for m in imports(p))}
    assert users == {"xmltree.py"}


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
