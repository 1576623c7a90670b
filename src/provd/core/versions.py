"""Settings versions: parsing, ordering, and mapping a declared version onto a supported one. Pure."""

from __future__ import annotations

import re

_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # ASCII: \d and int() read Arabic-Indic digits too

Version = tuple[int, ...]


def parse_version(text: str) -> Version | None:
    text = text.strip()
    if not _VERSION.match(text):
        return None
    return tuple(int(p) for p in text.split("."))


def sort_versions(names: list[str]) -> list[str]:
    """Oldest first; names that are not versions are dropped."""
    return sorted((n for n in names if parse_version(n) is not None), key=lambda n: parse_version(n) or ())


def resolve_version(declared: str, supported: list[str]) -> tuple[str, str | None]:
    """The supported version (oldest first list) whose migration path applies to `declared`, and a warning.

    The vendor numbers settings versions independently of firmware and publishes files at versions between
    the ones provd ships XSDs for (e.g. `users version="1.8.9"`): such a section is treated as the nearest
    supported version at or below it; below the oldest → the oldest; above the current → the current (its
    unknown elements are then dropped, with warnings).
    """
    wanted = parse_version(declared)
    if wanted is None:
        return supported[0], f"version {declared!r} is not a version number; treated as {supported[0]}"
    if declared in supported:
        return declared, None
    below = [v for v in supported if (parse_version(v) or ()) <= wanted]
    if not below:
        return supported[0], f"version {declared} is older than any supported; treated as {supported[0]}"
    chosen = below[-1]
    if chosen == supported[-1]:
        return chosen, f"version {declared} is newer than {chosen}; unknown elements will be dropped"
    return chosen, None
