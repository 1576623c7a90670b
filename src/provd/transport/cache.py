"""The conditional-request cache (docs/design.md §7): per URL the last ETag / Last-Modified and the body, in
`state_dir/http-cache/`. A 304 re-uses the body. Entries are written by temp file + rename without fsync
(a lost cache costs a download, not correctness: it is not worth two flash syncs on a run's critical
path); the body's size and CRC-32 are kept with the validators, so a body a crash damaged is a miss —
provd then asks again without validators — and never a wrong file.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from provd.core.urls import redact


@dataclass(frozen=True)
class CacheEntry:
    etag: str | None
    last_modified: str | None
    body: Path
    size: int
    crc32: int


class HttpCache:
    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _paths(self, url: str) -> tuple[Path, Path]:
        # Keyed on the URL without its password: the password never lands on disk.
        name = hashlib.sha256(redact(url).encode()).hexdigest()[:32]
        return self._dir / f"{name}.json", self._dir / f"{name}.body"

    def lookup(self, url: str) -> CacheEntry | None:
        meta, body = self._paths(url)
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        if not body.exists() or data.get("url") != redact(url):
            return None
        return CacheEntry(data.get("etag"), data.get("last_modified"), body, int(data.get("size", -1)),
                          int(data.get("crc32", -1)))

    def read(self, entry: CacheEntry) -> bytes | None:
        """The cached body, or None when it is gone or not what was stored."""
        try:
            data = entry.body.read_bytes()
        except OSError:
            return None
        if len(data) != entry.size or zlib.crc32(data) != entry.crc32:
            return None
        return data

    def store(self, url: str, etag: str | None, last_modified: str | None, body: bytes) -> None:
        """Remember `body` for a later 304; without validators there is nothing to remember."""
        if etag is None and last_modified is None:
            return
        meta, body_path = self._paths(url)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(body_path, body)
            _atomic_write(meta, json.dumps({"url": redact(url), "etag": etag, "last_modified": last_modified,
                                            "size": len(body), "crc32": zlib.crc32(body)}).encode())
        except OSError:
            pass  # a cache that cannot be written costs bandwidth, not correctness


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
