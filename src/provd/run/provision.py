"""One provisioning run, in named steps: preconditions → discover (unless a URL is given) → fetch the chain →
apply it to a working copy → commit once → hooks; the report recorded in the store at the end.

All or nothing (docs/design.md §1 step 5): a failed download, parse or type check commits nothing; a section that
fails migration or validation is rejected alone (docs/design.md §5). The run's report is stored either way. When
to run is the daemon's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from provd import __version__, log, xmltree
from provd.config import Config
from provd.core import quarantine
from provd.core.documents import Document, Door, parse_document, refuse_reference
from provd.core.markers import replace_markers
from provd.core.quarantine import Fingerprint
from provd.core.urls import check_url, redact
from provd.errors import (
    DiscoveryError,
    FetchConnectionError,
    FetchTimeout,
    FetchTLSError,
    PreconditionsNotMet,
    ProvdError,
)
from provd.model import Device, DocumentKind, Outcome, Progress, RunReport, Source, Trigger, quiet
from provd.ports import HttpClient, HttpOptions, Ports
from provd.run import device, hooks
from provd.run.wiring import real_ports
from provd.settings.phone import PhoneSettings, now_iso
from provd.sources import discovery, preconditions
from provd.transport.cache import HttpCache
from provd.transport.chain import ChainFetcher, FetchedFile, Limits

_log = log.get(__name__)


def http_options(config: Config, user_agent: str) -> HttpOptions:
    return HttpOptions(
        timeout_s=config.http.timeout_s,
        max_file_bytes=config.http.max_file_bytes,
        concurrency=config.http.concurrency,
        user_agent=user_agent,
        ca_file=config.http.ca_file,
        client_cert=config.http.client_cert,
        client_key=config.http.client_key,
    )


def limits(config: Config) -> Limits:
    return Limits(
        max_depth=config.references.max_depth,
        max_files=config.references.max_files,
        max_file_bytes=config.http.max_file_bytes,
        max_run_bytes=config.http.max_run_bytes,
        concurrency=config.http.concurrency,
    )


async def run(phone: PhoneSettings, *, trigger: Trigger, url: str | None = None, restore: bytes | None = None,
              dry_run: bool = False, reboot: bool = False, force: bool = False, progress: Progress = quiet,
              wait_until: float | None = None, ports: Ports | None = None) -> RunReport:
    """One provisioning run. With `url` (CLI --url, a check-sync URL) discovery is skipped; with `restore`
    (a check-sync settings snippet) nothing is fetched; otherwise the preconditions are awaited and the URL
    discovered. After a commit the change hooks run; `reboot` then runs the reboot hook if one is
    configured. Never raises a ProvdError: it lands in the report.

    Documents exactly like those of a run that was rolled back are not applied again (outcome `quarantined`,
    docs/design.md §10) unless `force` (`provd start --force`); a dry run computes them anyway, with a warning.

    `wait_until` (monotonic seconds, on `ports.clock`) bounds the wait for the preconditions; the run then ends
    `waiting`. `ports`: the outside world (tests pass fakes); the real one by default.
    """
    report = RunReport(trigger=trigger, started=now_iso(), dry_run=dry_run)
    report.run = phone.store.begin_run(trigger, report.started)
    origin = "check-sync body" if restore is not None else redact(url) if url is not None else "discovery"
    _log.info("run #%s started: trigger %s, url %s%s", report.run, trigger.value, origin,
              " (dry run)" if dry_run else "")
    try:
        if restore is not None:
            documents, again = _restore_documents(phone, restore, report)
            digests = quarantine.fingerprint([restore])
        else:
            documents, again, digests = await _discover_and_fetch(phone, url, report, progress, wait_until,
                                                                  ports if ports is not None else real_ports())
        if _quarantined(phone, digests, report, progress, force=force):
            return _finish(phone, report)
        _apply_and_commit(phone, documents, again, report, progress, digests)
        await asyncio.to_thread(hooks.after_commit, phone.config, report, reboot=reboot)
    except PreconditionsNotMet as exc:
        report.outcome = Outcome.WAITING
        report.errors.append(str(exc))
        report.retryable = True
        progress(str(exc))
    except ProvdError as exc:
        report.outcome = Outcome.FAILED
        report.errors.append(str(exc))
        report.retryable = exc.retryable
        report.retry_after_s = getattr(exc, "retry_after", None)
        progress(f"failed: {exc}")
    except asyncio.CancelledError:  # provd is stopping: nothing was committed, say so, stop
        report.outcome = Outcome.FAILED
        committed = f"generation {report.generation} was committed before" if report.generation else \
            "nothing was committed"
        report.errors.append(f"cancelled: provd stopped during the run; {committed}")
        _finish(phone, report, cancelled=True)
        raise
    return _finish(phone, report)


Again = Callable[[], list[Document]]


def _restore_documents(phone: PhoneSettings, restore: bytes, report: RunReport) -> tuple[list[Document], Again]:
    """Step for a check-sync settings snippet: it is the document, applied as a manual restore.

    Raises:
        RefusedDocument: a reference file. DocumentError.
    """
    report.source, report.url = Source.EXPLICIT, "check-sync body"

    def parse_restore() -> list[Document]:
        return [parse_document(restore, source="check-sync body",
                               max_bytes=phone.config.http.max_file_bytes, sections=phone.catalog.sections)]

    documents = parse_restore()
    refuse_reference(documents[0], Door.MANUAL_RESTORE)
    return documents, parse_restore


async def _discover_and_fetch(phone: PhoneSettings, url: str | None, report: RunReport, progress: Progress,
                              wait_until: float | None, ports: Ports) -> tuple[list[Document], Again, Fingerprint]:
    """Steps preconditions → discover (unless `url` is given) → fetch: the documents to apply, in order, and
    the fingerprint of every file fetched (references too), in document order.

    Raises:
        PreconditionsNotMet, DiscoveryError, FetchError, DocumentError, ReferenceChainError.
    """
    config = phone.config
    dev = device.device_from_config(config)
    if url is not None:
        report.source, report.url = Source.EXPLICIT, redact(replace_markers(url, dev))
        check_url(replace_markers(url, dev))  # a URL that is none fails here, before any network I/O
    async with ports.http(http_options(config, device.user_agent(config, dev, __version__))) as client:
        ctx = discovery.Context(config=config, device=dev, switches=phone.discovery_switches(),
                                client=client, progress=progress, ports=ports)
        await preconditions.wait_for_preconditions(ctx, deadline=wait_until, ask_dhcp=url is None)
        candidates = (url,) if url is not None else await _discover(ctx, report)
        documents, digests = await _fetch(phone, client, dev, candidates, report, progress)
    return documents, _unconsumed(phone, documents), digests


async def _discover(ctx: discovery.Context, report: RunReport) -> tuple[str, ...]:
    """Raises: DiscoveryError when every source came up empty."""
    found = await discovery.discover(ctx)
    report.attempts = list(found.attempts)
    report.source = found.source
    if not found.candidates:
        raise DiscoveryError("no provisioning URL: every source came up empty (see attempts)")
    return found.candidates


def _quarantined(phone: PhoneSettings, digests: Fingerprint, report: RunReport, progress: Progress, *,
                 force: bool) -> bool:
    """Step quarantine (docs/design.md §10): True when these exact documents were rolled back and the run must
    not apply them again; the report then says so and how to insist."""
    known = phone.store.quarantined()
    if not quarantine.is_quarantined(digests, known, force=force):
        if force and digests in known:
            report.warnings.append("these documents were rolled back before; applied anyway (--force)")
        return False
    text = ("quarantined: these exact documents were rolled back after a failed health check; not applied "
            "again until one of them changes (or provd start --force)")
    if report.dry_run:
        report.warnings.append(text)
        return False
    report.outcome = Outcome.QUARANTINED
    report.errors.append(text)
    progress(text)
    return True


def _apply_and_commit(phone: PhoneSettings, documents: list[Document], again: Again, report: RunReport,
                      progress: Progress, digests: Fingerprint) -> None:
    """Steps apply → commit (one generation, or the diff of a dry run).

    Raises:
        DocumentError, StoreConflict, StoreError.
    """
    phone.apply_documents(documents, report, progress=progress, again=again, fingerprint=digests)


def _unconsumed(phone: PhoneSettings, documents: list[Document]) -> Callable[[], list[Document]]:
    """The documents again, as they are now, for a re-apply after a commit conflict (docs/design.md §2): applying
    consumes them (a merge moves the patch's entries), so their XML is kept as bytes (smaller than a copy
    of the trees) and parsed again only if needed."""
    kept = [(xmltree.to_bytes(doc.root), doc.source) for doc in documents]
    limit = max([phone.config.http.max_file_bytes, *(len(data) for data, _ in kept)])

    def again() -> list[Document]:
        return [parse_document(data, source=source, max_bytes=limit, sections=phone.catalog.sections)
                for data, source in kept]

    return again


def _finish(phone: PhoneSettings, report: RunReport, *, cancelled: bool = False) -> RunReport:
    report.finished = now_iso()
    assert report.run is not None
    phone.store.finish_run(report.run, report.to_json())
    _log_outcome(report, cancelled=cancelled)
    return report


def _log_outcome(report: RunReport, *, cancelled: bool) -> None:
    """The outcome line an administrator looks for (docs/design.md §9), then the report's warnings and errors as
    the CLI prints them (a hook that failed is one of the warnings)."""
    errors = list(report.errors)
    run = f"run #{report.run}"
    changed = ", ".join(report.sections_changed)
    if cancelled:
        _log.warning("%s %s", run, "; ".join(errors))
        errors = []
    elif report.outcome is Outcome.FAILED:
        _log.error("%s failed: %s", run, "; ".join(errors) or "no reason recorded")
        errors = []
    elif report.outcome is Outcome.QUARANTINED:
        _log.warning("%s quarantined: %s", run, "; ".join(errors))
        errors = []
    elif report.outcome is Outcome.WAITING:
        _log.info("%s waiting: %s", run, "; ".join(errors))
        errors = []
    elif report.dry_run:
        _log.info("%s dry run: %s; nothing committed", run,
                  f"would change {changed}" if changed else "nothing would change")
    elif report.generation is not None:
        _log.info("%s applied: generation %d, sections %s", run, report.generation, changed)
    else:
        _log.info("%s unchanged: nothing to commit", run)
    for warning in report.warnings:
        _log.warning("%s: %s", run, warning)
    for error in errors:  # a section rejected while the others were applied
        _log.error("%s: %s", run, error)


async def _fetch(phone: PhoneSettings, client: HttpClient, dev: Device, candidates: tuple[str, ...],
                 report: RunReport, progress: Progress) -> tuple[list[Document], Fingerprint]:
    """Fetch the first candidate that answers (a scheme-less DHCP result is tried as https, then http)."""
    config = phone.config
    for index, candidate in enumerate(candidates):
        fetcher = ChainFetcher(client=client, cache=HttpCache(config.paths.state_dir / "http-cache"), device=dev,
                               catalog=phone.catalog, limits=limits(config), progress=progress)
        report.url = redact(replace_markers(candidate, dev))
        progress(f"fetch {report.url}")
        try:
            files = await fetcher.fetch(candidate)
        except (FetchConnectionError, FetchTLSError, FetchTimeout) as exc:
            _log_files(report, fetcher.files)
            first_failed = len(fetcher.files) == 1
            if first_failed and index + 1 < len(candidates):
                report.warnings.append(f"{exc}; trying {redact(candidates[index + 1])}")
                continue
            report.files = [f.record() for f in fetcher.files]
            raise
        except ProvdError:
            _log_files(report, fetcher.files)
            report.files = [f.record() for f in fetcher.files]  # as far as it got
            raise
        _log_files(report, files)
        report.files = [f.record() for f in files]  # document order: the order they were applied in
        return ([f.document for f in files if f.document and f.document.kind is not DocumentKind.REFERENCE],
                tuple(f.sha256 for f in files))
    raise DiscoveryError("no candidate URL")


def _log_files(report: RunReport, files: list[FetchedFile]) -> None:
    """One line per file touched (its URL already redacted): status, bytes, cached, or why it failed."""
    for f in files:
        if f.error is not None:  # the error names the URL too: say it once
            _log.info("run #%s file %s: failed: %s", report.run, f.url, f.error.removeprefix(f"{f.url}: "))
        elif f.document is None:
            _log.info("run #%s file %s: not completed (another file failed first)", report.run, f.url)
        else:
            _log.info("run #%s file %s: status %s, %d bytes, cached %s, %s", report.run, f.url,
                      f.status if f.status is not None else "local", f.size, "yes" if f.cached else "no",
                      f.document.kind.value)
