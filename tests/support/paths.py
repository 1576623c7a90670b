"""Where the tests' data lives in the repository, with its provenance in tests/data/README.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"  # test data kept in the repository, with its provenance (tests/data/README.md)
VENDOR = DATA / "vendor-examples"  # the vendor's published provisioning files, byte for byte
TORTURE = DATA / "sip-torture"  # RFC 4475's torture messages, byte for byte

WriteFile = Callable[[str, str], Path]  # the `write` fixture: (name, text) -> a file in the test's tmp_path
