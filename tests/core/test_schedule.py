"""Schedule arithmetic (docs/design.md §7) as tables: weekdays, MAC-derived times, random delays, DST changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from provd.core.schedule import Execution, Wake, clock_stepped, mac_time, next_run, on_wake, parse_execution, sleep_s

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


AT = datetime(2026, 12, 2, 3, 30, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(("now", "stepped", "expected"), [
    pytest.param(AT - 3600 * S, False, Wake.SLEEP, id="an-hour-ahead-sleep-on"),
    pytest.param(AT, False, Wake.FIRE, id="on-time"),
    pytest.param(AT - 0.5 * S, False, Wake.FIRE, id="timer-a-hair-early"),
    pytest.param(AT - 2 * S, False, Wake.SLEEP, id="two-seconds-early-not-yet"),
    pytest.param(AT + 7200 * S, True, Wake.FIRE, id="stepped-forward-past-it-runs-now"),
    pytest.param(AT - 10 * S, True, Wake.RECOMPUTE, id="stepped-forward-short-of-it"),
    pytest.param(AT - 86400 * S, True, Wake.RECOMPUTE, id="stepped-back-a-day"),
    pytest.param(AT + 30 * S, False, Wake.FIRE, id="late-without-step-still-fires"),
])
def test_on_wake(now: datetime, stepped: bool, expected: Wake) -> None:
    assert on_wake(AT, now, stepped=stepped) is expected


@pytest.mark.parametrize(("now", "expected"), [
    pytest.param(AT - 7200 * S, 60.0, id="far-wakes-within-a-minute"),
    pytest.param(AT - 61 * S, 60.0, id="just-over-a-minute"),
    pytest.param(AT - 12.5 * S, 12.5, id="near-sleeps-until-it"),
    pytest.param(AT + 5 * S, 0.0, id="past-no-sleep"),
])
def test_sleep_s(now: datetime, expected: float) -> None:
    assert sleep_s(AT, now) == expected


@pytest.mark.parametrize(("wall", "mono", "expected"), [
    pytest.param((1000.0, 1060.0), (5.0, 65.0), False, id="both-advance-alike"),
    pytest.param((1000.0, 1061.5), (5.0, 65.0), False, id="drift-within-tolerance"),
    pytest.param((1000.0, 8260.0), (5.0, 65.0), True, id="stepped-forward-two-hours"),
    pytest.param((1000.0, 900.0), (5.0, 65.0), True, id="stepped-back"),
    pytest.param((1000.0, 1000.0), (5.0, 65.0), True, id="wall-clock-frozen-a-minute"),
])
def test_clock_stepped(wall: tuple[float, float], mono: tuple[float, float], expected: bool) -> None:
    assert clock_stepped(wall[0], mono[0], wall[1], mono[1]) is expected


@pytest.mark.parametrize("value", ["\u2460", "\u0661\u0660", "\u00b2", "-5", " "])
def test_parse_execution_delay_is_ascii_digits(value: str) -> None:
    """A value that is not ASCII digits takes the default (int("①") raises although "①".isdigit())."""
    assert parse_execution({"maximalRandomDelay": value}).max_delay_s == 3600
