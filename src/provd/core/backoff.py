"""Retry timing (docs/design.md §7): exponential backoff with full jitter, and `Retry-After`. Pure: the random
draw and the current time are parameters."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

BASE_S = 30.0
CAP_S = 3600.0


def backoff_delay(attempt: int, draw: float, *, base: float = BASE_S, cap: float = CAP_S) -> float:
    """Seconds before retry number `attempt` (1 = the first retry): uniform in [0, min(cap, base·2^(n-1))].

    `draw` is a uniform random number in [0, 1): full jitter spreads a fleet that failed together.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return float(draw * ceiling)


def parse_retry_after(value: str | None, date: str | None) -> float | None:
    """Seconds from an HTTP `Retry-After` (delta-seconds or an HTTP-date, relative to the response's
    `Date`); None when absent or unreadable. An HTTP-date without a `Date` header cannot be made relative
    without reading the clock here, so it is ignored (the backoff then applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # RFC 9110 delay-seconds = 1*DIGIT; "²" is isdigit() but no int
        return float(value)
    if date is None:
        return None
    try:
        when = parsedate_to_datetime(value)
        now = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())
