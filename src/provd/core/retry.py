"""The daemon's retry state (docs/design.md §7): the attempt counter, the delay before the next attempt
(core/backoff with full jitter, at least a server's Retry-After), reset by a run that did not fail. Pure: the
random draw is a parameter; the daemon keeps the timer.
"""

from __future__ import annotations

from provd.core import backoff


class RetryState:
    def __init__(self) -> None:
        self.attempt = 0  # retries scheduled since the last run that did not fail

    def failed(self, *, draw: float, retry_after_s: float | None) -> float:
        """A run failed: count the attempt; the seconds before it. `draw` is uniform in [0, 1)."""
        self.attempt += 1
        delay = backoff.backoff_delay(self.attempt, draw)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def succeeded(self) -> None:
        """A run did not fail (applied, unchanged, waiting): the next failure starts from the first retry."""
        self.attempt = 0
