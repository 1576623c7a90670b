"""The daemon's retry state as a table: the attempt count, the delay (full jitter, Retry-After as a floor, the
cap), and the reset by a run that did not fail. The random draw is passed in."""

from __future__ import annotations

import pytest

from provd.core.retry import RetryState

Failed = tuple[float, float | None]  # (draw, Retry-After)
SUCCEEDED = None


@pytest.mark.parametrize(("steps", "delays", "attempt"), [
    pytest.param([(0.5, None)], [15.0], 1, id="first-retry-within-30s"),
    pytest.param([(0.5, None), (0.5, None), (0.5, None)], [15.0, 30.0, 60.0], 3, id="doubles"),
    pytest.param([(0.0, 7.0)], [7.0], 1, id="retry-after-is-a-floor"),
    pytest.param([(0.9, 7.0)], [27.0], 1, id="backoff-above-retry-after"),
    pytest.param([(0.5, None), (0.5, None), SUCCEEDED, (0.5, None)], [15.0, 30.0, 15.0], 1, id="success-resets"),
    pytest.param([(0.5, None)] * 12, [min(3600.0, 30.0 * 2 ** n) / 2 for n in range(12)], 12, id="capped-at-an-hour"),
    pytest.param([SUCCEEDED], [], 0, id="success-alone"),
])
def test_retry_state(steps: list[Failed | None], delays: list[float], attempt: int) -> None:
    state = RetryState()
    got = []
    for step in steps:
        if step is None:
            state.succeeded()
        else:
            got.append(state.failed(draw=step[0], retry_after_s=step[1]))
    assert (got, state.attempt) == (delays, attempt)
