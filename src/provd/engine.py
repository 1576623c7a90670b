"""One provisioning run from a URL: fetch the chain, apply it to a working copy, commit once, report.

All or nothing (DESIGN §1 step 5): a failed download, parse or type check commits nothing; a section that
fails migration or validation is rejected alone (DESIGN §5). The run's report is stored either way.
Discovery and preconditions come before this (their attempts are handed in); the daemon decides when.
"""

from __future__ import annotations

from provd import __version__, device
from provd.cache import HttpCache
from provd.config import Config
from provd.core.documents import DocumentKind
from provd.core.markers import replace_markers
from provd.core.urls import redact
from provd.errors import ProvdError
from provd.fetch import ChainFetcher, Limits
from provd.http import HttpClient, HttpSettings
from provd.local import Progress, Settings, now_iso
from provd.model import Outcome, RunReport


def http_settings(config: Config, user_agent: str) -> HttpSettings:
    return HttpSettings(
        timeout_s=float(config.get("http.timeout_s")),
        max_file_bytes=int(config.get("http.max_file_bytes")),
        concurrency=max(1, int(config.get("http.concurrency"))),
        user_agent=user_agent,
        ca_file=config.get("http.ca_file"),
        client_cert=config.get("http.client_cert"),
        client_key=config.get("http.client_key"),
    )


def limits(config: Config) -> Limits:
    return Limits(
        max_depth=int(config.get("references.max_depth")),
        max_files=int(config.get("references.max_files")),
        max_file_bytes=int(config.get("http.max_file_bytes")),
        max_run_bytes=int(config.get("http.max_run_bytes")),
        concurrency=max(1, int(config.get("http.concurrency"))),
    )


async def run_url(settings: Settings, url: str, *, trigger: str, source: str = "explicit", dry_run: bool = False,
                  attempts: list[dict[str, object]] | None = None, progress: Progress = lambda _line: None,
                  ) -> RunReport:
    """Provision from `url` (markers not yet replaced). Never raises a ProvdError: it lands in the report."""
    config = settings.config
    report = RunReport(trigger=trigger, started=now_iso(), dry_run=dry_run, source=source,
                       attempts=list(attempts or []))
    store = settings.store
    report.run = store.begin_run()
    try:
        dev = device.device_from_config(config)
        async with HttpClient(http_settings(config, device.user_agent(config, dev, __version__))) as client:
            fetcher = ChainFetcher(client=client, cache=HttpCache(config.state_dir / "http-cache"), device=dev,
                                   catalog=settings.catalog, limits=limits(config), progress=progress)
            report.url = redact(replace_markers(url, dev))
            progress(f"fetch {report.url}")
            try:
                files = await fetcher.fetch(url)
            except ProvdError:
                report.files = [f.to_json() for f in fetcher.files]  # as far as it got
                raise
            report.files = [f.to_json() for f in files]  # document order: the order they were applied in
        documents = [f.document for f in files if f.document and f.document.kind is not DocumentKind.REFERENCE]
        settings.apply_documents(documents, report, progress=progress)
    except ProvdError as exc:
        report.outcome = Outcome.FAILED
        report.errors.append(str(exc))
        report.retryable = exc.retryable
        report.retry_after_s = getattr(exc, "retry_after", None)
        progress(f"failed: {exc}")
    report.finished = now_iso()
    store.finish_run(report.run, report.to_json())
    return report
