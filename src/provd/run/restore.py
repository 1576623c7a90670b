"""The manual doors (docs/design.md §2): a restore as a run (`provd apply FILE`: one file read, a reference
file refused, applied and committed through `PhoneSettings`, the run recorded in the store either way) and
the offline check of a file (`provd validate`). No fetch, no discovery, no asyncio: both stay light. The
hooks are the caller's next step (`hooks.after_commit`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from provd.core import quarantine
from provd.core.documents import Document, Door, parse_document, refuse_reference
from provd.errors import ProvdError, StoreError
from provd.model import FileRecord, Outcome, Progress, RunReport, SectionChange, Source, Trigger, quiet
from provd.settings.apply import check_document
from provd.settings.phone import PhoneSettings, now_iso
from provd.transport.files import read_capped


def apply_path(phone: PhoneSettings, path: Path, *, progress: Progress = quiet) -> RunReport:
    """`provd apply` in this process: manual provisioning ("restore backup"). Failures are raised (the CLI
    prints them); the run is recorded either way.

    Raises:
        RefusedDocument, DocumentError, StoreError.
    """
    return apply_data(phone, None, name=str(path), url=path.resolve().as_uri(), path=path, progress=progress)


def apply_data(phone: PhoneSettings, data: bytes | None, *, name: str, url: str, path: Path | None = None,
               progress: Progress = quiet) -> RunReport:
    """`apply` of a file's bytes read elsewhere (the daemon gets them from `provd apply` over the control
    socket and never opens a client's path), or of `path` read here when `data` is None.

    Raises:
        RefusedDocument, DocumentError, StoreError.
    """
    max_bytes = phone.config.http.max_file_bytes
    report = RunReport(trigger=Trigger.APPLY, started=now_iso(), source=Source.EXPLICIT, url=url)
    report.run = phone.store.begin_run(Trigger.APPLY, report.started)
    failed = False
    sizes: list[int] = []
    digests: list[str] = []  # the file's SHA-256, should its generation be rolled back (docs/design.md §10)

    def load() -> Document:
        # A path is read again for a re-apply after a commit conflict rather than kept: holding a 4 MiB
        # file's bytes for the whole apply would add them to its peak memory.
        if data is not None:
            raw = data
        else:
            assert path is not None, "apply_data needs the bytes or the path"
            raw = read_capped(path, max_bytes)
        sizes.append(len(raw))
        if phone.config.health.check:  # only a gated commit keeps it (OpenSSL's hashlib costs apply its import)
            digests[:] = quarantine.fingerprint([raw])
        return parse_document(raw, source=name, max_bytes=max_bytes, sections=phone.catalog.sections)

    try:
        doc = load()
        report.files = [FileRecord(url, doc.kind, None, sizes[0], False)]
        refuse_reference(doc, Door.MANUAL_RESTORE)
        phone.apply_documents([doc], report, progress=progress, again=lambda: [load()],
                             fingerprint=tuple(digests))
    except ProvdError as exc:
        report.outcome = Outcome.FAILED
        report.errors.append(str(exc))
        failed = True
        raise
    except BaseException:
        failed = True
        raise
    finally:
        report.finished = now_iso()
        if failed:
            with contextlib.suppress(StoreError):  # the first failure is the one to tell (a full disk)
                phone.store.finish_run(report.run, report.to_json())
        else:
            phone.store.finish_run(report.run, report.to_json())
    return report


def validate_path(phone: PhoneSettings, path: Path) -> tuple[Document, list[SectionChange]]:
    """`provd validate FILE`: the file parsed (with the size cap of local files) and checked: a patch
    against the factory defaults, a reference or operations file against its own schema.

    Raises:
        DocumentError: unreadable, too large, not well-formed, or invalid as a whole.
    """
    max_bytes = phone.config.http.max_file_bytes
    doc = parse_document(read_capped(path, max_bytes), source=str(path), max_bytes=max_bytes,
                         sections=phone.catalog.sections)
    return doc, check_document(phone.catalog, doc)
