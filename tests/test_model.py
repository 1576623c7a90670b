"""The run report's typed records (provd.model) and their JSON at the edge (docs/design.md §8): the shapes stay
exactly as the store, `--json` and the control socket have them, and a report read back is the same report."""

from __future__ import annotations

import json

import pytest

from provd.model import (
    Attempt,
    AttemptResult,
    ChangeAction,
    DocumentKind,
    FileRecord,
    Outcome,
    RunReport,
    SectionChange,
    SectionDiff,
    Source,
    Trigger,
)


def full_report(*, dry_run: bool, outcome: Outcome) -> RunReport:
    return RunReport(
        trigger=Trigger.CHECK_SYNC, started="2026-01-01T00:00:00.000+00:00", dry_run=dry_run, outcome=outcome,
        finished="2026-01-01T00:00:01.000+00:00", run=7, source=Source.DHCP, url="https://p.example/a.xml",
        attempts=[Attempt(Source.DHCP, AttemptResult.FOUND, "option 66", "https://u:***@p.example/a.xml",
                          ("https://u:pw@p.example/a.xml",)),
                  Attempt(Source.REDIRECT, AttemptResult.SKIPPED, "dhcp found a URL first")],
        files=[FileRecord("https://p.example/a.xml", DocumentKind.REFERENCE, 200, 120, False),
               FileRecord("https://p.example/b.xml", DocumentKind.PATCH, 304, 99, True, requested="http://x/b.xml"),
               FileRecord("https://p.example/c.xml", None, None, 0, False, error="c.xml: HTTP 404")],
        sections_changed=["keys"], generation=None if dry_run else 3,
        changes=[SectionChange("keys", ChangeAction.MERGED, "b.xml", warnings=("w",), migrated=("1→2: x",)),
                 SectionChange("nope", ChangeAction.REJECTED, "b.xml", errors=("unknown",))],
        diff=[SectionDiff("keys", ("/keys/key[@keyNumber='1']",), (), ("/keys/x",))] if dry_run else [],
        warnings=["w"], errors=["unknown"], retryable=True if outcome is Outcome.FAILED else None,
        retry_after_s=30.0 if outcome is Outcome.FAILED else None)


def test_report_json_shape() -> None:
    out = full_report(dry_run=True, outcome=Outcome.FAILED).to_json()
    assert list(out) == ["run", "trigger", "dry_run", "outcome", "started", "finished", "source", "url", "attempts",
                         "files", "sections_changed", "generation", "changes", "warnings", "errors", "diff",
                         "retryable", "retry_after_s"]
    assert out["trigger"] == "check-sync" and out["source"] == "dhcp" and out["outcome"] == "failed"
    assert out["attempts"] == [
        {"source": "dhcp", "result": "found", "detail": "option 66", "url": "https://u:***@p.example/a.xml"},
        {"source": "redirect", "result": "skipped", "detail": "dhcp found a URL first"}]
    assert out["files"] == [
        {"url": "https://p.example/a.xml", "type": "reference", "status": 200, "bytes": 120, "cached": False},
        {"url": "https://p.example/b.xml", "type": "patch", "status": 304, "bytes": 99, "cached": True,
         "requested": "http://x/b.xml"},
        {"url": "https://p.example/c.xml", "type": None, "status": None, "bytes": 0, "cached": False,
         "error": "c.xml: HTTP 404"}]
    assert out["changes"] == [
        {"section": "keys", "action": "merged", "source": "b.xml", "migrated": ["1→2: x"], "warnings": ["w"]},
        {"section": "nope", "action": "rejected", "source": "b.xml", "errors": ["unknown"]}]
    assert out["diff"] == [{"section": "keys", "added": ["/keys/key[@keyNumber='1']"], "changed": [],
                            "removed": ["/keys/x"]}]


@pytest.mark.parametrize(("dry_run", "outcome"), [
    pytest.param(False, Outcome.APPLIED, id="applied"),
    pytest.param(True, Outcome.UNCHANGED, id="dry-run"),
    pytest.param(False, Outcome.FAILED, id="failed"),
    pytest.param(False, Outcome.WAITING, id="waiting"),
])
def test_report_read_back_is_the_same_json(dry_run: bool, outcome: Outcome) -> None:
    out = json.loads(json.dumps(full_report(dry_run=dry_run, outcome=outcome).to_json()))
    assert RunReport.from_json(out).to_json() == out


@pytest.mark.parametrize(("stored", "outcome"), [
    pytest.param({"trigger": "cli", "started": "t", "outcome": "running", "pid": 1, "pid_start": 2},
                 Outcome.RUNNING, id="store-placeholder"),
    pytest.param({"trigger": "boot", "started": "t", "outcome": "interrupted", "pid": 1, "errors": ["interrupted"]},
                 Outcome.INTERRUPTED, id="interrupted"),
    pytest.param({"outcome": "failed", "errors": ["internal error"], "finished": "t"}, Outcome.FAILED,
                 id="daemon-failure-record"),
])
def test_partial_reports_read_back(stored: dict[str, object], outcome: Outcome) -> None:
    report = RunReport.from_json(stored)
    assert report.outcome is outcome
    assert report.errors == stored.get("errors", [])


def test_attempt_keeps_the_error_out_of_the_json() -> None:
    from provd.errors import DhcpUnavailable, DiscoveryError, ProvdError

    exc = DhcpUnavailable("DHCPINFORM on eth0: permission denied")
    attempt = Attempt(Source.DHCP, AttemptResult.FAILED, str(exc), error=exc)
    assert attempt.to_json() == {"source": "dhcp", "result": "failed", "detail": str(exc)}
    assert isinstance(attempt.error, DiscoveryError) and isinstance(attempt.error, ProvdError)
    assert attempt.error.retryable
