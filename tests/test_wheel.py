"""The schemas ship inside the wheel: build it, install it into a fresh venv, validate from there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import REPO, VENDOR


@pytest.mark.slow
def test_wheel_carries_schemas_and_validates(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(REPO)], check=True, capture_output=True)
    (wheel,) = dist.glob("provd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "provd/schemas/settings/keys/1.34.0.xsd" in names
    assert "provd/schemas/defaults/provisioning.xml" in names
    assert "provd/schemas/migrations/1.8.8_1.26.11.xml" in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import provd; print(provd.__file__)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(venv))
    result = subprocess.run([str(venv / "bin" / "provd"), "validate", *map(str, sorted(VENDOR.glob("*.xml")))],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid (") == 6
