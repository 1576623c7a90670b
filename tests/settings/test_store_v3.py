"""Store schema 3 (docs/design.md §10) on a real SQLite file: the pending health state written with the commit
that makes it, replaced by the next, ended by rollbacks; compare-and-set updates; the quarantine; the outbox of
result reports (queued with the commit, completed when the run is recorded, bounded and counted).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from provd import config
from provd.core.health import Pending
from provd.errors import StoreConflict, StoreError
from provd.model import Outcome, RunReport, Trigger
from provd.settings.phone import PhoneSettings, now_iso
from provd.settings.store import KEEP
from tests.support.paths import VENDOR


def phone(tmp_path: Path, *, gated: bool = True, report: bool = True, max_pending: int = 100) -> PhoneSettings:
    text = json.dumps({
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "health": {"check": ["true"] if gated else None, "window_s": 300, "interval_s": 15},
        "report": {"url": "http://127.0.0.1:9/r" if report else None, "max_pending": max_pending}})
    return PhoneSettings(config.parse(text, source="test.yaml"))


def commit(settings: PhoneSettings, label: str, *, trigger: Trigger = Trigger.CLI,
           fingerprint: tuple[str, ...] = ("f",)) -> RunReport:
    """A run committing one changed `keys` section, recorded as a run would be."""
    from provd.core.documents import parse_document

    report = RunReport(trigger=trigger, started=now_iso(), url=f"http://x/{label}")
    report.run = settings.store.begin_run(trigger, report.started)
    doc = parse_document(f'<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'.encode(),
                         source=label, max_bytes=1 << 20, sections=settings.catalog.sections)
    settings.apply_documents([doc], report, fingerprint=fingerprint)
    return report


def finish(settings: PhoneSettings, report: RunReport) -> None:
    report.finished = now_iso()
    assert report.run is not None
    settings.store.finish_run(report.run, report.to_json())


def test_a_gated_commit_is_pending_and_the_next_keeps_its_target(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    base = settings.store.current_generation()
    first = commit(settings, "a", fingerprint=("a1",))
    pending = settings.store.pending()
    assert pending is not None and pending.generation == first.generation and pending.target == base
    assert pending.fingerprint == ("a1",) and pending.deadline == pytest.approx(pending.committed_at + 300)
    second = commit(settings, "b", fingerprint=("b1",))
    replaced = settings.store.pending()
    assert replaced is not None and replaced.generation == second.generation and replaced.target == base


def test_ungated_commits_and_rollbacks_end_the_probation(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    base = settings.store.current_generation()
    commit(settings, "a")
    assert settings.store.pending() is not None
    settings.rollback(base)  # a manual rollback
    assert settings.store.pending() is None
    commit(settings, "b")
    ungated = phone(tmp_path, gated=False)  # health.check removed from the configuration
    commit(ungated, "c")
    assert ungated.store.pending() is None


def test_an_automatic_rollback_quarantines_in_its_own_commit(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    base = settings.store.current_generation()
    before = settings.configuration_xml(backup=True)
    commit(settings, "a", fingerprint=("d1", "d2"))
    failed = settings.store.pending()
    assert failed is not None
    gen, sections = settings.rollback(failed.target, failed=failed._replace(last_failure="no"))
    assert gen is not None and sections == ["keys"]
    assert settings.store.pending() is None and settings.store.quarantined() == [("d1", "d2")]
    assert settings.configuration_xml(backup=True) == before
    assert settings.store.history()[-1].trigger is Trigger.AUTO_ROLLBACK
    assert base < gen


def test_an_automatic_rollback_of_what_is_no_longer_pending_writes_nothing(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a")
    failed = settings.store.pending()
    assert failed is not None
    commit(settings, "b")  # replaced meanwhile
    generations = settings.store.current_generation()
    with pytest.raises(StoreConflict, match="no longer waiting"):
        settings.rollback(failed.target, failed=failed)
    assert settings.store.current_generation() == generations and settings.store.quarantined() == []


def test_update_pending_is_compare_and_set(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a")
    pending = settings.store.pending()
    assert pending is not None
    assert not settings.store.update_pending(pending.generation + 1, None)
    assert settings.store.pending() == pending
    counted = pending._replace(checks=3, last_failure="exit 1")
    assert settings.store.update_pending(pending.generation, counted)
    assert settings.store.pending() == counted
    assert settings.store.update_pending(pending.generation, None, event={"event": "confirmed"}, confirmed=True)
    assert settings.store.pending() is None
    assert settings.store.outbox()[-1].body == {"event": "confirmed"}


def test_confirming_releases_the_documents_from_quarantine(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a", fingerprint=("q",))
    failed = settings.store.pending()
    assert failed is not None
    settings.rollback(failed.target, failed=failed)
    assert settings.store.quarantined() == [("q",)]
    commit(settings, "a", fingerprint=("q",))  # forced
    forced = settings.store.pending()
    assert forced is not None
    settings.store.update_pending(forced.generation, None, confirmed=True)
    assert settings.store.quarantined() == []


def test_quarantine_keeps_the_newest_and_each_once(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    for i in range(KEEP + 5):
        commit(settings, f"k{i}", fingerprint=(f"d{i}",))
        failed = settings.store.pending()
        assert failed is not None
        settings.store.update_pending(failed.generation, None, quarantine=failed.fingerprint)
    settings.store.update_pending(0, None, quarantine=("never",))  # not pending: nothing remembered
    commit(settings, "again", fingerprint=(f"d{KEEP}",))
    failed = settings.store.pending()
    assert failed is not None
    settings.store.update_pending(failed.generation, None, quarantine=failed.fingerprint)
    kept = settings.store.quarantined()
    assert len(kept) == KEEP and len(set(kept)) == KEEP and kept[-1] == (f"d{KEEP}",)
    assert ("d0",) not in kept and ("never",) not in kept


def test_an_unreadable_pending_state_is_an_error_and_left_alone(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a")
    path = settings.store.path
    settings.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '{\"generation\": \"x\"}' WHERE key = 'health.pending'")
    conn.close()
    again = phone(tmp_path)
    with pytest.raises(StoreError, match="pending health state is unreadable"):
        again.store.pending()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'health.pending'").fetchone()[0] == \
            '{"generation": "x"}'
    conn.close()


def test_a_commit_queues_its_report_and_the_finished_run_completes_it(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    report = commit(settings, "a")
    rows = [r for r in settings.store.outbox() if r.run == report.run]
    assert len(rows) == 1 and not rows[0].ready and rows[0].body["generation"] == report.generation
    head = settings.store.next_report()
    assert head is None or head.run != report.run  # not ready: the run has not finished
    report.warnings.append("hook x failed")
    finish(settings, report)
    rows = [r for r in settings.store.outbox() if r.run == report.run]
    assert len(rows) == 1 and rows[0].ready and rows[0].body["warnings"] == ["hook x failed"]


def test_a_run_without_a_commit_is_queued_when_recorded(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    report = RunReport(trigger=Trigger.CLI, started=now_iso(), outcome=Outcome.FAILED, errors=["down"])
    report.run = settings.store.begin_run(Trigger.CLI, report.started)
    assert all(r.run != report.run for r in settings.store.outbox())
    finish(settings, report)
    queued = settings.store.next_report()
    assert queued is not None and queued.run == report.run and queued.body["errors"] == ["down"]


def test_nothing_is_queued_without_report_url(tmp_path: Path) -> None:
    settings = phone(tmp_path, report=False)
    finish(settings, commit(settings, "a"))
    settings.store.queue_event({"event": "confirmed"})
    assert settings.store.outbox() == [] and settings.store.dropped() == 0


def test_the_outbox_is_bounded_and_counts_what_it_dropped(tmp_path: Path) -> None:
    settings = phone(tmp_path, max_pending=3)
    for i in range(5):
        settings.store.queue_event({"event": "confirmed", "n": i})
    queued = settings.store.outbox()
    assert [r.body["n"] for r in queued] == [2, 3, 4] and settings.store.dropped() == 2
    head = settings.store.next_report()
    assert head is not None and head.body["n"] == 2
    settings.store.delivered(head.id, told_dropped=2)
    assert [r.body["n"] for r in settings.store.outbox()] == [3, 4] and settings.store.dropped() == 0
    settings.store.delivered(head.id, told_dropped=0)  # again: no error, nothing else removed
    assert len(settings.store.outbox()) == 2


def test_next_report_skips_a_run_still_in_progress(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a")  # committed, not yet recorded as finished
    settings.store.queue_event({"event": "confirmed"})
    head = settings.store.next_report()
    assert head is not None and head.body == {"event": "confirmed"}


def test_a_killed_run_after_its_commit_is_completed_as_interrupted(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    report = commit(settings, "a")
    path = settings.store.path
    settings.close()
    with sqlite3.connect(path) as conn:  # its process is gone: a pid no process has
        row = conn.execute("SELECT report FROM runs WHERE id = ?", (report.run,)).fetchone()
        placeholder = {**json.loads(row[0]), "pid": 2**22 + 7}
        conn.execute("UPDATE runs SET report = ? WHERE id = ?", (json.dumps(placeholder), report.run))
    conn.close()
    again = phone(tmp_path)
    assert again.store.mark_interrupted() == [report.run]
    rows = [r for r in again.store.outbox() if r.run == report.run]
    assert len(rows) == 1 and rows[0].ready
    assert rows[0].body["generation"] == report.generation and rows[0].body["outcome"] == Outcome.INTERRUPTED.value
    errors = rows[0].body["errors"]
    assert isinstance(errors, list) and any("interrupted" in str(e) for e in errors)


def test_pending_round_trips_through_the_store(tmp_path: Path) -> None:
    settings = phone(tmp_path)
    commit(settings, "a", fingerprint=("x" * 64, "y" * 64))
    pending = settings.store.pending()
    assert pending is not None and Pending.from_json(pending.to_json()) == pending


def test_vendor_apply_is_gated_too(tmp_path: Path) -> None:
    from provd.run import restore

    settings = phone(tmp_path)
    report = restore.apply_path(settings, VENDOR / "music.xml")
    pending = settings.store.pending()
    assert pending is not None and pending.generation == report.generation and len(pending.fingerprint) == 1
