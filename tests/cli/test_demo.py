"""The README's main-job command works: it serves examples/tree over local HTTP and provisions from it."""

from __future__ import annotations

import subprocess

from tests.support.paths import REPO


def test_demo_provisions_the_example_tree() -> None:
    result = subprocess.run(["bash", "scripts/demo"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    dry, real, again = out.split("== provd start")[1:4]
    assert "nothing was committed" in dry
    assert "applied: generation 2 (identities, keys, provisioning, telephony, templates, users)" in real
    assert "unchanged: nothing to commit" in again
    assert again.count("(cached)") == 6
    keys = out.split("== show keys")[1].split("== show provisioning")[0]
    assert '<key keyNumber="3" label="Door">' in keys
    assert 'keyNumber="2"' not in keys  # deleted by cleanup.xml
    assert "<time>03:30</time>" in out
    assert "migrated 1.26.11→1.34.0: removed user/image" in out
