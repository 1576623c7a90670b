"""Quarantine by content (docs/design.md §10) as tables: what counts as the same push, `--force`, and the
bounded memory of rolled-back pushes."""

from __future__ import annotations

import hashlib

import pytest

from provd.core.quarantine import fingerprint, is_quarantined, remember

A, B = b"<keys>a</keys>", b"<keys>b</keys>"


def test_a_fingerprint_is_the_sha256_of_each_document_in_order() -> None:
    assert fingerprint([A, B]) == (hashlib.sha256(A).hexdigest(), hashlib.sha256(B).hexdigest())


@pytest.mark.parametrize(("fetched", "force", "expected"), [
    pytest.param([A, B], False, True, id="the-same-documents"),
    pytest.param([A, B], True, False, id="force"),
    pytest.param([B, A], False, False, id="another-order-is-another-push"),
    pytest.param([A, B + b" "], False, False, id="one-byte-changed"),
    pytest.param([A], False, False, id="a-file-less"),
    pytest.param([A, B, A], False, False, id="a-file-more"),
    pytest.param([], False, False, id="nothing-fetched"),
])
def test_is_quarantined(fetched: list[bytes], force: bool, expected: bool) -> None:
    assert is_quarantined(fingerprint(fetched), [fingerprint([B]), fingerprint([A, B])], force=force) is expected


def test_remember_keeps_each_push_once_newest_last_and_at_most_keep() -> None:
    one, two, three = fingerprint([A]), fingerprint([B]), fingerprint([A, B])
    assert remember([one, two], one) == [two, one]
    assert remember([one, two], three, keep=2) == [two, three]
    assert remember([one], ()) == [one]
