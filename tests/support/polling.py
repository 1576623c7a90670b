"""Waiting for what another process brings about: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for_matches(read: Callable[[], list[T]], predicate: Callable[[T], bool], count: int, timeout: float,
                     what: str) -> list[T]:
    """The items of `read()` matching `predicate`, once at least `count` do.

    Raises:
        TimeoutError: fewer than `count` matched within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [item for item in read() if predicate(item)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} {what} after {timeout} s: {found}")
        time.sleep(0.005)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Raises: TimeoutError when `predicate` is still false after `timeout` seconds."""
    wait_for_matches(lambda: [True] if predicate() else [], bool, 1, timeout, what)
