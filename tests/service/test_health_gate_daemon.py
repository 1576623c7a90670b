"""The health gate end to end (docs/design.md §10): `provd run` as a subprocess, a health check script whose
answer the test steers through a file, and the CLI as a user runs it. A failing check rolls the generation back
when the window ends (trigger auto-rollback, the change hooks, a report naming the generation and why); a passing
one confirms it; the state survives restarts inside and after the window and a kill -9; `provd confirm` confirms
by hand; a check that hangs is killed and the daemon keeps answering; the rolled-back documents are quarantined
until they change or `provd start --force`.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Provd
from tests.support.daemon import RunningDaemon, configure, running_daemon
from tests.support.paths import VENDOR
from tests.support.polling import wait_until

MUSIC = VENDOR / "music.xml"


class Check:
    """A health check the test steers: `answer` is "ok" (exit 0), "hang" (sleeps), anything else a failure
    with that text on stderr. Every call is logged with the generation it judged."""

    def __init__(self, tmp_path: Path) -> None:
        self.answer_file = tmp_path / "answer"
        self.calls_file = tmp_path / "checks.log"
        self.script = tmp_path / "check.py"
        self.script.write_text(
            "import os, sys, time\n"
            f"open({str(self.calls_file)!r}, 'a').write(os.environ.get('PROVD_GENERATION', '?') + chr(10))\n"
            f"answer = open({str(self.answer_file)!r}).read().strip()\n"
            "if answer == 'hang':\n    time.sleep(60)\n"
            "if answer != 'ok':\n    sys.stderr.write(answer)\n    sys.exit(3)\n")
        self.say("SIP account not registered")

    def say(self, answer: str) -> None:
        self.answer_file.write_text(answer)

    def calls(self) -> list[str]:
        return self.calls_file.read_text().split() if self.calls_file.exists() else []

    @property
    def argv(self) -> list[str]:
        return [sys.executable, str(self.script)]


def gated(tmp_path: Path, check: Check, *, window_s: float, interval_s: float = 0.5) -> Provd:
    """A gated provd; the `provisioning` settings `configure` applied are confirmed by hand (they are gated too)."""
    provd = configure(tmp_path, extra={"health": {"check": check.argv, "window_s": window_s,
                                                  "interval_s": interval_s}})
    provd.run("confirm", check=0)
    return provd


def status(provd: Provd) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(provd.run("status", "--json", check=0).stdout)
    return result


def pending(provd: Provd) -> dict[str, Any] | None:
    health = status(provd).get("health")
    return health if isinstance(health, dict) and health.get("pending") is not None else None


def history(provd: Provd) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(provd.run("history", "--json", check=0).stdout)
    return result


def start(provd: Provd, *args: str, check: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(provd.run("start", "--json", *args, check=check).stdout)
    return result


def hook_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "hook.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_failing_check_rolls_back_when_the_window_ends(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=3)
    before = provd.backup()
    with running_daemon(provd, tmp_path) as daemon:
        report = start(provd, "--url", MUSIC.as_uri())
        generation = report["generation"]
        waiting = pending(provd)
        assert waiting is not None and waiting["pending"] == generation
        assert waiting["rollback_to"] == generation - 1 and waiting["deadline"]
        shown = provd.run("status", check=0).stdout
        assert f"health check: generation {generation} pending until {waiting['deadline']}" in shown
        hooks_before = len(hook_lines(tmp_path))

        wait_until(lambda: history(provd)[-1]["trigger"] == "auto-rollback", 15, "the automatic rollback")
        assert provd.backup() == before  # the settings are those of the generation before
        assert pending(provd) is None
        last = daemon.status()["last_report"]
        assert last["trigger"] == "auto-rollback" and last["outcome"] == "applied"
        assert last["event"] == "rolled_back"
        assert last["rolled_back"]["generation"] == generation and last["rolled_back"]["target"] == generation - 1
        assert "SIP account not registered" in last["rolled_back"]["reason"]
        assert last["rolled_back"]["checks"] >= 2
        assert len(hook_lines(tmp_path)) == hooks_before + 1  # the change hooks ran for the rollback
        assert set(check.calls()) == {str(generation)}
    log = (tmp_path / "daemon.log").read_text()
    assert f"generation {generation} failed its health check" in log


def test_a_passing_check_confirms_and_nothing_rolls_back(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=4)
    with running_daemon(provd, tmp_path):
        generation = start(provd, "--url", MUSIC.as_uri())["generation"]
        wait_until(lambda: len(check.calls()) >= 2, 10, "two failed checks")
        check.say("ok")
        wait_until(lambda: pending(provd) is None, 10, "the confirmation")
        time.sleep(4.5)  # past the window: a confirmed generation stays
        assert history(provd)[-1]["generation"] == generation
    assert f"generation {generation} confirmed" in (tmp_path / "daemon.log").read_text()


def test_confirm_by_hand(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=60)
    with running_daemon(provd, tmp_path):
        generation = start(provd, "--url", MUSIC.as_uri())["generation"]
        assert pending(provd) is not None
        result = provd.run("confirm", check=0)
        assert f"confirmed: generation {generation}" in result.stdout
        assert pending(provd) is None
        again = provd.run("confirm", check=1)
        assert "nothing is waiting on its health check" in again.stderr
        assert history(provd)[-1]["generation"] == generation


def test_confirm_without_a_daemon(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=60)
    generation = json.loads(provd.run("apply", "--json", str(MUSIC), check=0).stdout)["generation"]
    assert pending(provd) is not None and pending(provd)["pending"] == generation  # type: ignore[index]
    assert "generation" in provd.run("confirm", check=0).stdout
    assert pending(provd) is None
    provd.run("confirm", check=1)


def test_a_restart_inside_the_window_resumes_the_checks(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=12)
    with running_daemon(provd, tmp_path) as daemon:
        generation = start(provd, "--url", MUSIC.as_uri())["generation"]
        wait_until(lambda: len(check.calls()) >= 1, 10, "a failed check")
        deadline = pending(provd)["deadline"]  # type: ignore[index]
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(5)
    (tmp_path / "daemon.log").rename(tmp_path / "daemon.1.log")
    calls = len(check.calls())
    with running_daemon(provd, tmp_path):
        waiting = pending(provd)
        assert waiting is not None and waiting["pending"] == generation and waiting["deadline"] == deadline
        wait_until(lambda: len(check.calls()) > calls, 10, "the checks resumed")
        check.say("ok")
        wait_until(lambda: pending(provd) is None, 10, "the confirmation after the restart")
        assert history(provd)[-1]["generation"] == generation


def test_a_restart_after_the_window_rolls_back_at_start(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=2)
    before = provd.backup()
    generation = json.loads(provd.run("apply", "--json", str(MUSIC), check=0).stdout)["generation"]
    assert pending(provd) is not None  # committed without a daemon: pending, nobody checks
    time.sleep(2.5)
    with running_daemon(provd, tmp_path) as daemon:
        wait_until(lambda: history(provd)[-1]["trigger"] == "auto-rollback", 10, "the rollback at start")
        assert provd.backup() == before
        last = daemon.status()["last_report"]
        assert last["rolled_back"]["generation"] == generation
        assert "window ended" in last["rolled_back"]["reason"]
    assert check.calls() == []  # after the window there is nothing left to check


def test_a_hanging_check_is_killed_and_the_daemon_keeps_answering(tmp_path: Path) -> None:
    check = Check(tmp_path)
    check.say("hang")
    provd = gated(tmp_path, check, window_s=3, interval_s=1)
    with running_daemon(provd, tmp_path) as daemon:
        generation = start(provd, "--url", MUSIC.as_uri())["generation"]
        wait_until(lambda: len(check.calls()) >= 1, 10, "the hanging check started")
        started = time.monotonic()
        assert daemon.status()["state"] == "idle"  # answered while the check hangs
        assert time.monotonic() - started < 2
        wait_until(lambda: history(provd)[-1]["trigger"] == "auto-rollback", 15, "the rollback")
        assert "killed after 1 s" in daemon.status()["last_report"]["rolled_back"]["reason"]
        assert history(provd)[-2]["generation"] == generation


def test_quarantine_until_changed_or_forced(tmp_path: Path) -> None:
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=2)
    served = tmp_path / "music.xml"
    served.write_bytes(MUSIC.read_bytes())
    with running_daemon(provd, tmp_path):
        start(provd, "--url", served.as_uri())
        wait_until(lambda: history(provd)[-1]["trigger"] == "auto-rollback", 15, "the rollback")
        generations = len(history(provd))

        again = start(provd, "--url", served.as_uri(), check=1)
        assert again["outcome"] == "quarantined" and again["generation"] is None
        assert any("provd start --force" in e for e in again["errors"])
        assert len(history(provd)) == generations
        assert "quarantined" in (tmp_path / "daemon.log").read_text()

        dry = start(provd, "--dry-run", "--url", served.as_uri())
        assert dry["outcome"] == "applied" and any("quarantined" in w for w in dry["warnings"])
        assert len(history(provd)) == generations

        forced = start(provd, "--force", "--url", served.as_uri())
        assert forced["outcome"] == "applied" and any("--force" in w for w in forced["warnings"])
        check.say("ok")
        wait_until(lambda: pending(provd) is None, 10, "the forced generation confirmed")
        after = start(provd, "--url", served.as_uri())  # confirmed: its documents left the quarantine
        assert after["outcome"] == "unchanged", after

        provd.run("rollback", str(generations), check=0)  # back to the state before (a manual rollback)
        served.write_bytes(MUSIC.read_bytes().replace(b"</configuration>", b"<!-- changed --></configuration>"))
        changed = start(provd, "--url", served.as_uri())
        assert changed["outcome"] == "applied"  # one changed byte is a new push


@pytest.mark.slow
def test_kill_9_around_the_rollback_keeps_the_state_consistent(tmp_path: Path) -> None:
    """Rounds of kill -9 at moments spread over the checks and the automatic rollback: after each restart the
    store is one of the two states (rolled back, or still pending with the generation in place), never a
    rollback without its run report or a pending state naming a generation that is not the newest."""
    check = Check(tmp_path)
    provd = gated(tmp_path, check, window_s=1.5, interval_s=0.3)
    before = provd.backup()
    for round_ in range(6):
        with running_daemon(provd, tmp_path) as daemon:
            _consistent(provd, daemon, before)
            if round_ == 0 or history(provd)[-1]["trigger"] == "auto-rollback":
                start(provd, "--force", "--url", MUSIC.as_uri())
            time.sleep(0.6 + 0.25 * round_)  # from mid-window to just past the rollback
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait(5)
        (tmp_path / "daemon.log").rename(tmp_path / f"daemon.{round_}.log")
    with running_daemon(provd, tmp_path) as daemon:
        wait_until(lambda: history(provd)[-1]["trigger"] == "auto-rollback", 10, "the last rollback")
        _consistent(provd, daemon, before)
        assert pending(provd) is None and provd.backup() == before


def _consistent(provd: Provd, daemon: RunningDaemon, before: str) -> None:
    gens = history(provd)
    waiting = pending(provd)
    if waiting is not None:
        assert waiting["pending"] == gens[-1]["generation"] and gens[-1]["trigger"] == "cli"
    if gens[-1]["trigger"] == "auto-rollback":
        assert provd.backup() == before
        assert waiting is None
    assert daemon.proc.poll() is None
