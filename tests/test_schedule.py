"""Schedule arithmetic (DESIGN §7) as tables: weekdays, MAC-derived times, random delays, DST changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from provd.core.schedule import Execution, mac_time, next_run, parse_execution

BERLIN = ZoneInfo("Europe/Berlin")
UTC = UTC
EVERY_DAY = frozenset(range(7))


def ex(days: frozenset[int] = EVERY_DAY, at: str = "03:30", rnd: bool = False, lo: int = 60,
       hi: int = 3600) -> Execution:
    return Execution(days, at, rnd, lo, hi)


@pytest.mark.parametrize(("execution", "now", "expected"), [
    pytest.param(ex(), datetime(2026, 11, 30, 1, 0, tzinfo=UTC), datetime(2026, 11, 30, 3, 30, tzinfo=BERLIN),
                 id="later-today"),
    pytest.param(ex(), datetime(2026, 11, 30, 3, 0, tzinfo=UTC), datetime(2026, 12, 1, 3, 30, tzinfo=BERLIN),
                 id="passed-today-tomorrow"),
    pytest.param(ex(frozenset({0})), datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
                 datetime(2026, 12, 7, 3, 30, tzinfo=BERLIN), id="mondays-only"),
    pytest.param(ex(frozenset({5, 6})), datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
                 datetime(2026, 12, 5, 3, 30, tzinfo=BERLIN), id="weekend"),
    pytest.param(ex(frozenset({1})), datetime(2026, 12, 1, 2, 30, tzinfo=UTC),
                 datetime(2026, 12, 8, 3, 30, tzinfo=BERLIN), id="same-weekday-passed-next-week"),
    pytest.param(ex(at="02:30"), datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
                 datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN), id="dst-spring-forward-gap-moves-on"),
    pytest.param(ex(at="02:30"), datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
                 datetime(2026, 10, 25, 0, 30, tzinfo=UTC), id="dst-fall-back-first-occurrence"),
    pytest.param(ex(at="03:30"), datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
                 datetime(2026, 10, 25, 2, 30, tzinfo=UTC), id="dst-day-after-change-uses-new-offset"),
    pytest.param(ex(frozenset()), datetime(2026, 12, 1, tzinfo=UTC), None, id="no-weekday-no-run"),
])
def test_next_run(execution: Execution, now: datetime, expected: datetime | None) -> None:
    got = next_run(execution, mac="00095200000E", now=now, zone=BERLIN, draw=0.0)
    # Compared in UTC: PEP 495 makes an ambiguous wall time unequal to every time in another zone.
    assert (got.astimezone(UTC) if got else None) == (expected.astimezone(UTC) if expected else None)


@pytest.mark.parametrize("mac", [f"0009520000{i:02X}" for i in range(0, 256, 17)])
def test_mac_time_in_window_and_stable(mac: str) -> None:
    t = mac_time(mac)
    assert time(0, 0) <= t <= time(5, 55)
    assert mac_time(mac.lower()) == t


def test_mac_times_spread_a_fleet() -> None:
    times = {mac_time(f"000952{i:06X}") for i in range(2000)}
    assert len(times) > 300  # nearly every minute of the 356 in the window is used
    assert min(times) < time(0, 30) and max(times) > time(5, 25)


def test_empty_time_uses_mac_time() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    got = next_run(ex(at=""), mac="00095200000E", now=now, zone=UTC, draw=0.0)
    assert got is not None and got.time() == mac_time("00095200000E")


@pytest.mark.parametrize("seed", range(5))
def test_random_delay_bounds(seed: int) -> None:
    rng = random.Random(seed)
    base = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)
    for _ in range(200):
        got = next_run(ex(rnd=True, lo=60, hi=600), mac="x", now=datetime(2026, 12, 1, 12, tzinfo=UTC),
                       zone=UTC, draw=rng.random())
        assert got is not None
        assert timedelta(seconds=60) <= got - base < timedelta(seconds=600)


def test_delay_off_means_exact_time() -> None:
    got = next_run(ex(rnd=False), mac="x", now=datetime(2026, 12, 1, 12, tzinfo=UTC), zone=UTC, draw=0.99)
    assert got == datetime(2026, 12, 2, 3, 30, tzinfo=UTC)


def test_parse_execution() -> None:
    values = {"mondays": "true", "tuesdays": "false", "sundays": "1", "time": " 7:05 ", "useRandomDelay": "true",
              "minimalRandomDelay": "10", "maximalRandomDelay": "x"}
    assert parse_execution(values) == Execution(frozenset({0, 6}), "7:05", True, 10, 3600)


@pytest.mark.parametrize("value", ["\u2460", "\u0661\u0660", "\u00b2", "-5", " "])
def test_parse_execution_delay_is_ascii_digits(value: str) -> None:
    """A value that is not ASCII digits takes the default (int("①") raises although "①".isdigit())."""
    assert parse_execution({"maximalRandomDelay": value}).max_delay_s == 3600
