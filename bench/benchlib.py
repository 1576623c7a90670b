"""What the benchmark scripts share: compiled bytecode before timing, and the rows of a results table."""

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


def print_table(rows: list[Row]) -> None:
    """The results as a table: measure, value, target, ok / MISSED (nothing where there is no target)."""
    width = max(len(r.what) for r in rows)
    vwidth = max(len(r.value) for r in rows)
    print(f"{'measure':<{width}}  {'value':<{vwidth}}  {'target':<10}  result")
    for r in rows:
        result = "" if r.met is None else ("ok" if r.met else "MISSED")
        print(f"{r.what:<{width}}  {r.value:<{vwidth}}  {r.target:<10}  {result}")
