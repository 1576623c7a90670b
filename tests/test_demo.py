"""The README's main-job command works and leaves the example's settings in the store."""

from __future__ import annotations

import subprocess

from .conftest import REPO


def test_demo_applies_every_example() -> None:
    result = subprocess.run(["bash", "scripts/demo"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("applied: generation") == 5
    keys = result.stdout.split("== show keys")[1].split("== show provisioning")[0]
    assert '<key keyNumber="3" label="Door">' in keys
    assert 'keyNumber="2"' not in keys  # deleted by the operations file
    assert "<time>03:30</time>" in result.stdout
    assert "migrated 1.26.11→1.34.0: removed user/image" in result.stdout
