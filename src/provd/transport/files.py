"""Reading local provisioning files with the size cap (docs/design.md §4: it holds for local files as well)."""

from __future__ import annotations

from pathlib import Path

from provd.errors import DocumentTooLarge, MalformedDocument


def read_capped(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` (+1 to detect more) are read, so a huge file never lands in memory.

    Raises:
        DocumentTooLarge, MalformedDocument (unreadable file).
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise MalformedDocument(f"cannot read file: {exc.strerror}", source=str(path)) from exc
    if len(data) > max_bytes:
        raise DocumentTooLarge(f"file is over the limit of {max_bytes} bytes", source=str(path))
    return data
