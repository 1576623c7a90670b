"""What the benchmark scripts share: compiled bytecode before timing, and one row of a results table."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_bytecode() -> None:
    """An installed provd has its bytecode compiled (pip does it); an editable checkout under
    PYTHONDONTWRITEBYTECODE would otherwise compile every module on every start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)


@dataclass(frozen=True)
class Row:
    what: str
    value: str
    target: str
    met: bool | None  # None: no target, shown for comparison
