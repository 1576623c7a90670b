"""Quarantine (docs/design.md §10): the documents of a rolled-back run, remembered by content, are not
applied again until one of them changes or `provd start --force` is used. Pure.

A fingerprint is the SHA-256 of each fetched document, in the order the run applied them: the same files in
another order are another change (a later file may override an earlier one), and one changed byte anywhere
is a new push the administrator made on purpose. Without this a phone would loop: apply, fail the health
check, roll back, fetch the same files at the next trigger, apply again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Fingerprint = tuple[str, ...]


def fingerprint(documents: Iterable[bytes]) -> Fingerprint:
    import hashlib  # OpenSSL: not for the commands that never fingerprint (`provd apply` without a gate)

    return tuple(hashlib.sha256(data).hexdigest() for data in documents)


def is_quarantined(candidate: Fingerprint, quarantined: Sequence[Fingerprint], *, force: bool = False) -> bool:
    """Whether a run that fetched `candidate` must not apply it. An empty fetch is never quarantined."""
    return bool(candidate) and not force and candidate in quarantined


def remember(quarantined: Sequence[Fingerprint], rolled_back: Fingerprint, *, keep: int = 20) -> list[Fingerprint]:
    """The quarantine after a rollback of `rolled_back`: newest last, each once, at most `keep` (as many as the
    store keeps generations: an older push comes back only by changing anyway)."""
    kept = [f for f in quarantined if f != rolled_back]
    if rolled_back:
        kept.append(rolled_back)
    return kept[-keep:]
