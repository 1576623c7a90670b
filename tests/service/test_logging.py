"""The daemon's log (docs/design.md §9) as an administrator reads it in `journalctl -u provd`: the real `provd run`
with its stderr captured, as the journal (`$JOURNAL_STREAM` naming the captured file) and plain.

STYLE says never assert on log wording; here the log lines are the behaviour, so the tests look for the
stable key fields in them (outcome word, generation, run number, sender, answer code, priority prefix),
not for whole sentences. Then the pure parts: the flood limiter, the line formatter, the threshold.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from provd import __version__
from provd import log as provd_log
from provd.core.floods import OTHERS, Admission, FloodLimiter, Summary
from tests.support.cli import Provd
from tests.support.daemon import RunningDaemon, configure, free_udp_port, keys, notify_message, running_daemon, send_udp
from tests.support.peers.http import HttpPeers, Served
from tests.support.polling import wait_for_matches

PRIORITY = re.compile(r"^<([3467])>")


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


class Log:
    """The daemon's captured stderr, read afresh on every call."""

    def __init__(self, path: Path, *, journal: bool) -> None:
        self.path = path
        self.journal = journal

    def lines(self) -> list[str]:
        return self.path.read_text(errors="replace").splitlines()

    def messages(self, priority: int | None = None) -> list[str]:
        """The lines without their prefix (of `priority` only, when given)."""
        out = []
        for line in self.lines():
            match = PRIORITY.match(line)
            if priority is not None and (match is None or int(match.group(1)) != priority):
                continue
            out.append(line[match.end():] if match else line)
        return out

    def wait(self, *fields: str, priority: int | None = None, count: int = 1, timeout: float = 20.0) -> list[str]:
        """The lines (of `priority`) that contain every one of `fields`, once there are `count` of them."""
        return wait_for_matches(lambda: self.messages(priority), lambda m: all(f in m for f in fields), count,
                                timeout, f"log lines with {fields} at priority {priority}")


@contextmanager
def logged_daemon(provd: Provd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, journal: bool,
                  options: tuple[str, ...] = ()) -> Iterator[tuple[RunningDaemon, Log]]:
    path = tmp_path / "daemon.log"
    path.touch()  # running_daemon opens it for writing: same inode, so $JOURNAL_STREAM can name it
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)  # the test runner may itself run under systemd
    env = {}
    if journal:
        st = path.stat()
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    with running_daemon(provd, tmp_path, extra_env=env, options=options) as daemon:
        yield daemon, Log(path, journal=journal)


def check_prefixes(log: Log) -> None:
    lines = log.lines()
    assert lines
    if log.journal:
        assert all(PRIORITY.match(line) for line in lines), lines
    else:
        assert not any(line.startswith("<") for line in lines), lines


# --- what an administrator relies on -------------------------------------------------------------------------

@pytest.mark.parametrize("journal", [True, False], ids=["journal", "plain"])
def test_applied_run_is_logged(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch,
                               journal: bool) -> None:
    served.write("phone.xml", keys(1, "logged"))
    url = served.http_url + "phone.xml"
    provd = configure(tmp_path, url=url)
    info = 6 if journal else None
    with logged_daemon(provd, tmp_path, monkeypatch, journal=journal) as (daemon, log):
        log.wait("started", __version__, str(provd.config), priority=info)
        daemon.signal(signal.SIGHUP)
        report = daemon.wait_idle_after(1)
        assert report["outcome"] == "applied"
        run = f"run #{report['run']}"
        log.wait("trigger sighup", priority=info)
        log.wait(run, "started", "sighup", "discovery", priority=info)
        log.wait("configured", "found", url, priority=info)
        log.wait(run, url, "status 200", f"{report['files'][0]['bytes']} bytes", "cached no", priority=info)
        log.wait(run, "applied", f"generation {report['generation']}", "keys", priority=info)
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        log.wait("stopped", priority=info)
        check_prefixes(log)


def test_failed_run_and_its_retry_are_logged(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    url = served.http_url + "missing.xml"
    provd = configure(tmp_path, url=url)
    with logged_daemon(provd, tmp_path, monkeypatch, journal=True) as (daemon, log):
        daemon.signal(signal.SIGHUP)
        report = daemon.wait_idle_after(1)
        assert report["outcome"] == "failed"
        run = f"run #{report['run']}"
        log.wait(run, url, "failed", "404", priority=6)  # the file
        log.wait(run, "failed", "404", priority=3)  # the outcome, as an error
        status = daemon.status()
        assert status["retry_attempt"] == 1
        retry = log.wait("retry", "attempt 1", status["retry_at"][:16], priority=6)
        assert run in retry[0]
        check_prefixes(log)


def test_check_sync_decisions_are_logged_with_sender_and_answer(tmp_path: Path, served: Served,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    served.write("cs.xml", keys(4, "check-sync"))
    port = free_udp_port()
    provd = configure(tmp_path, url=served.http_url + "cs.xml", sip_port=port)
    with logged_daemon(provd, tmp_path, monkeypatch, journal=True) as (daemon, log):
        refused = send_udp(port, notify_message("127.0.0.2"), source="127.0.0.2")
        assert refused is not None and refused.startswith(b"SIP/2.0 403")
        line = log.wait("127.0.0.2", "403", "check-sync", "allowlist", priority=6)
        assert len(line) == 1
        accepted = send_udp(port, notify_message("127.0.0.1"))
        assert accepted is not None and accepted.startswith(b"SIP/2.0 200")
        log.wait("127.0.0.1", "200", "check-sync", priority=6)
        log.wait("trigger check-sync", priority=6)
        report = daemon.wait_idle_after(1)
        log.wait(f"run #{report['run']}", "applied", priority=6)
        # Another sender: 127.0.0.1's next line within a second would be summarised (one line a second).
        unknown = send_udp(port, notify_message("127.0.0.3", event="presence"), source="127.0.0.3")
        assert unknown is not None and unknown.startswith(b"SIP/2.0 489")
        log.wait("127.0.0.3", "489", "presence", priority=6)
        check_prefixes(log)


def test_hook_failure_is_a_warning(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    served.write("h.xml", keys(6, "hook"))
    provd = configure(tmp_path, url=served.http_url + "h.xml", hooks=False)
    cfg = json.loads(provd.config.read_text())
    cfg["hooks"] = {"changed": {"keys": ["false"]}}
    provd.config.write_text(json.dumps(cfg))
    with logged_daemon(provd, tmp_path, monkeypatch, journal=True) as (daemon, log):
        daemon.signal(signal.SIGHUP)
        report = daemon.wait_idle_after(1)
        assert report["outcome"] == "applied"
        log.wait(f"run #{report['run']}", "applied", priority=6)
        log.wait(f"run #{report['run']}", "hook false", "keys", "exit 1", priority=4)


@pytest.mark.parametrize(("sender", "answer"), [
    pytest.param("127.0.0.2", b"SIP/2.0 403", id="refused"),
    pytest.param("127.0.0.1", b"SIP/2.0 200", id="accepted"),
])
def test_a_flood_of_notifies_is_summarised(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch,
                                           sender: str, answer: bytes) -> None:
    """Every NOTIFY is accounted for, either by its own line or in a summary; one sender gets at most one
    info line a second, and the runs an accepted flood joins are not logged per packet either."""
    served.write("cs.xml", keys(4, "flood"))
    port = free_udp_port()
    provd = configure(tmp_path, url=served.http_url + "cs.xml", sip_port=port)
    sent = 60
    with logged_daemon(provd, tmp_path, monkeypatch, journal=True) as (daemon, log):
        started = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((sender, 0))
            s.settimeout(5)
            for n in range(sent):
                s.sendto(notify_message(sender, branch=f"z9hG4bKflood{n}"), ("127.0.0.1", port))
                assert s.recv(65535).startswith(answer)
        elapsed = time.monotonic() - started
        own_prefix = f"check-sync from {sender}:"
        summary = re.compile(rf"(\d+) more NOTIFYs from {re.escape(sender)} suppressed")

        def accounted() -> int:
            messages = log.messages(6)
            own = sum(1 for m in messages if m.startswith(own_prefix))
            return own + sum(int(c) for m in messages for c in summary.findall(m))
        wait_for_matches(lambda: [accounted()], lambda total: total == sent, 1, 10, "NOTIFYs accounted for")
        messages = log.messages(6)
        own = [m for m in messages if m.startswith(own_prefix)]
        assert 1 <= len(own) <= elapsed + 2  # a line a second at most, however fast they come
        # The runs an accepted flood queues: the first, and one follow-up (one check-sync run per 10 s).
        queued = [m for m in messages if m.startswith("trigger check-sync")]
        if answer.endswith(b"200"):
            assert 1 <= len(queued) <= 2
        else:
            assert queued == [] and daemon.runs_started() == 0


def test_url_passwords_never_reach_the_log(tmp_path: Path, http_peers: HttpPeers,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    password = http_peers.basic_password
    good = with_password(http_peers.basic_url + "/hello.xml", http_peers.basic_user, password)
    bad = with_password(http_peers.basic_url + "/status/404", http_peers.basic_user, password)
    provd = configure(tmp_path, url=good)
    with logged_daemon(provd, tmp_path, monkeypatch, journal=False, options=("-v",)) as (daemon, log):
        daemon.signal(signal.SIGHUP)
        assert daemon.wait_idle_after(1)["outcome"] in ("applied", "unchanged")
        report = json.loads(provd.run("start", "--url", bad, "--json", check=1).stdout)
        assert report["outcome"] == "failed"
        log.wait(f"run #{report['run']}", "failed")
        log.wait(f"{http_peers.basic_user}:***@")
        text = log.path.read_text()
    assert password not in text


@pytest.mark.parametrize(("options", "level", "shown", "hidden"), [
    pytest.param(("-q",), None, {3}, {6, 7}, id="q-hides-info"),
    pytest.param((), "warning", {3}, {6, 7}, id="log.level-warning"),
    pytest.param(("-v",), "error", {3, 6, 7}, set(), id="v-shows-debug-over-log.level"),
    pytest.param((), None, {3, 6}, {7}, id="default-info"),
])
def test_threshold(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...],
                   level: str | None, shown: set[int], hidden: set[int]) -> None:
    provd = configure(tmp_path, url=served.http_url + "missing.xml")
    if level:
        cfg = json.loads(provd.config.read_text())
        cfg["log"] = {"level": level}
        provd.config.write_text(json.dumps(cfg))
    with logged_daemon(provd, tmp_path, monkeypatch, journal=True, options=options) as (daemon, log):
        daemon.signal(signal.SIGHUP)
        report = daemon.wait_idle_after(1)
        log.wait(f"run #{report['run']}", "failed", priority=3)  # an error is always shown
    seen = {int(m.group(1)) for line in log.lines() if (m := PRIORITY.match(line))}
    assert shown <= seen and not hidden & seen, log.lines()


def test_unknown_log_level_is_a_config_error(provd: Provd) -> None:
    provd.config.write_text(provd.config.read_text() + "log: {level: loud}\n")
    result = provd.run("status", check=1)
    assert result.stderr.startswith("provd: error:") and "log.level" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_one_shot_commands_keep_their_output(provd: Provd) -> None:
    """Only `provd run` (and -v) logs: a one-shot command's stderr holds just its own `provd:` lines."""
    patch = provd.config.parent / "p.xml"
    patch.write_text(keys(2, "quiet"))
    result = provd.run("apply", str(patch), check=0)
    assert result.stderr == ""
    result = provd.run("start", "--url", "http://127.0.0.1:9/none.xml", "--wait", "0", check=1)
    assert all(line.startswith("provd: ") for line in result.stderr.splitlines()), result.stderr


# --- the pure parts ------------------------------------------------------------------------------------------

# (sender, time) events in order → what each admission says; then flush at a time → the summaries.
FLOOD_CASES = [
    pytest.param([("a", 0.0)], [Admission(True, "a")], 5.0, [], id="one-event-one-line"),
    pytest.param([("a", 0.0), ("a", 0.2), ("a", 0.9)],
                 [Admission(True, "a"), Admission(False, "a"), Admission(False, "a")],
                 1.0, [Summary("a", 2)], id="burst-summarised-after-a-second"),
    pytest.param([("a", 0.0), ("a", 0.5), ("a", 1.0)],
                 [Admission(True, "a"), Admission(False, "a"), Admission(True, "a", 1)],
                 1.5, [], id="count-rides-on-the-next-line"),
    pytest.param([("a", 0.0), ("b", 0.1), ("a", 0.2), ("b", 0.3)],
                 [Admission(True, "a"), Admission(True, "b"), Admission(False, "a"), Admission(False, "b")],
                 1.05, [Summary("a", 1)], id="per-sender-b-window-still-open"),
    pytest.param([("a", 0.0), ("a", 0.1)], [Admission(True, "a"), Admission(False, "a")],
                 0.9, [], id="no-summary-inside-the-window"),
]


@pytest.mark.parametrize(("events", "admissions", "flush_at", "summaries"), FLOOD_CASES)
def test_flood_limiter(events: list[tuple[str, float]], admissions: list[Admission], flush_at: float,
                       summaries: list[Summary]) -> None:
    limiter = FloodLimiter(interval=1.0)
    assert [limiter.admit(sender, now) for sender, now in events] == admissions
    assert limiter.flush(flush_at) == summaries


def test_flood_limiter_summary_opens_a_window() -> None:
    """A summary is a line too: the sender's next event right after it is counted, not logged."""
    limiter = FloodLimiter(interval=1.0)
    limiter.admit("a", 0.0)
    limiter.admit("a", 0.5)
    assert limiter.next_flush() == 1.0
    assert limiter.flush(1.0) == [Summary("a", 1)]
    assert limiter.admit("a", 1.2) == Admission(False, "a")
    assert limiter.flush(2.0) == [Summary("a", 1)]
    assert limiter.flush(3.0) == [] and limiter.next_flush() is None  # quiet for a window: forgotten


def test_flood_limiter_table_is_bounded() -> None:
    limiter = FloodLimiter(interval=1.0, max_senders=2)
    assert limiter.admit("a", 0.0).sender == "a"
    assert limiter.admit("b", 0.0).sender == "b"
    assert limiter.admit("c", 0.1) == Admission(True, OTHERS)  # spoofed sources share one entry
    assert limiter.admit("d", 0.2) == Admission(False, OTHERS)
    assert limiter.admit("e", 1.5).sender == "e"  # a and b went quiet: room again


@pytest.mark.parametrize(("message", "line"), [
    pytest.param("Char 0x0 out of allowed range\n, line 46", "Char 0x0 out of allowed range , line 46", id="newline"),
    pytest.param("a\r\n  b", "a b", id="crlf"),
    pytest.param("bell\x07", "bell\\x07", id="control-escaped"),
    pytest.param("fetch https://u:pw@h:8/x failed", "fetch https://u:***@h:8/x failed", id="password"),
    pytest.param("https://u:***@h/x", "https://u:***@h/x", id="already-redacted"),
    pytest.param("https://u@h/x", "https://u@h/x", id="user-only"),
    pytest.param("https://u:p@ss@[2001:db8::1]/x", "https://u:***@[2001:db8::1]/x", id="raw-at-in-password"),
    pytest.param("http://[2001:db8::1]:8080/a@b", "http://[2001:db8::1]:8080/a@b", id="ipv6-no-userinfo"),
    pytest.param("a https://u:pw@h/x and https://v:qq@k/y", "a https://u:***@h/x and https://v:***@k/y",
                 id="two-urls"),
    pytest.param("url \ud800", "url \\ud800", id="lone-surrogate"),
])
def test_one_line(message: str, line: str) -> None:
    assert provd_log.one_line(message) == line


@pytest.mark.parametrize(("level", "journal", "line"), [
    pytest.param(logging.INFO, True, "<6>run #1 applied", id="info-journal"),
    pytest.param(logging.INFO, False, "run #1 applied", id="info-plain"),
    pytest.param(logging.DEBUG, True, "<7>run #1 applied", id="debug-journal"),
    pytest.param(logging.WARNING, True, "<4>provd: warning: run #1 applied", id="warning-journal"),
    pytest.param(logging.ERROR, False, "provd: error: run #1 applied", id="error-plain"),
    pytest.param(logging.CRITICAL, True, "<3>provd: error: run #1 applied", id="critical-is-an-error"),
])
def test_line_formatter(level: int, journal: bool, line: str) -> None:
    record = logging.LogRecord("provd.run.provision", level, __file__, 1, "run #%d %s", (1, "applied"), None)
    assert provd_log.LineFormatter(journal=journal).format(record) == line


def test_journal_detection_compares_the_stream(tmp_path: Path) -> None:
    with (tmp_path / "err").open("w") as stream, (tmp_path / "other").open("w") as other:
        st = os.fstat(stream.fileno())
        named = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert provd_log.stderr_is_journal(stream, named)
        assert not provd_log.stderr_is_journal(other, named)  # stderr redirected away from the journal
        assert not provd_log.stderr_is_journal(stream, {})
        assert not provd_log.stderr_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
        assert not provd_log.stderr_is_journal(io.StringIO(), named)  # no descriptor at all


@pytest.mark.parametrize(("configured", "verbose", "quiet", "level"), [
    pytest.param(None, False, False, logging.INFO, id="default-info"),
    pytest.param("error", False, False, logging.ERROR, id="config"),
    pytest.param("error", True, False, logging.DEBUG, id="v-overrides"),
    pytest.param("debug", False, True, logging.WARNING, id="q-overrides"),
    pytest.param("info", True, True, logging.DEBUG, id="v-wins-over-q"),
])
def test_threshold_choice(configured: str | None, verbose: bool, quiet: bool, level: int) -> None:
    assert provd_log.threshold(configured, verbose=verbose, quiet=quiet) == level
