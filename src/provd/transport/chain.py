"""Fetching one provisioning URL with its reference chain (docs/design.md §1 step 3, §4).

Depth-first in document order: a reference file's entries are resolved against the file's own URL (after
redirects, with the credentials it was fetched with: they go along to entries on the same origin only),
their markers replaced first, fetched concurrently and returned strictly in order. The
concurrency bound is the connection pool's (`http.concurrency` connections): over HTTP/2 one connection
carries every sibling at once, so a reference file with 8 entries costs one round trip, not two.
A URL that appears again on its own path is a loop; depth, file count and bytes are
limited. Any failure fails the whole chain: the caller commits nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from provd import xmltree
from provd.core import markers, urls
from provd.core.documents import Document, parse_document
from provd.errors import FetchURLError, ProvdError, ReferenceChainError
from provd.model import Device, DocumentKind, FileRecord, Progress
from provd.ports import HttpClient, RunBudget, Validators
from provd.transport.cache import HttpCache
from provd.transport.files import read_capped


class Catalog(Protocol):
    """What the chain needs of the schema catalog (provd.settings.catalog.Catalog); transport does not import
    settings (the import contract in pyproject.toml)."""

    @property
    def sections(self) -> frozenset[str]: ...

    def file_schema(self, name: str) -> xmltree.Schema: ...


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_files: int
    max_file_bytes: int
    max_run_bytes: int
    concurrency: int


@dataclass
class FetchedFile:
    """One file of the chain while it is fetched (filled in as the download and parse go); `record()` is
    what the report keeps of it."""

    url: str  # where the file came from: after redirects (markers replaced), password redacted
    document: Document | None  # None when the file failed
    status: int | None  # 200, 304 (cached), None for file:// or failure
    size: int
    cached: bool
    error: str | None = None
    requested: str | None = None  # the URL asked for, when redirects led elsewhere
    sha256: str = ""  # of the body, for the quarantine (docs/design.md §10)

    def record(self) -> FileRecord:
        return FileRecord(self.url, self.document.kind if self.document else None, self.status, self.size,
                          self.cached, self.requested, self.error)


class ChainFetcher:
    def __init__(self, *, client: HttpClient, cache: HttpCache | None, device: Device, catalog: Catalog,
                 limits: Limits, progress: Progress) -> None:
        self._client = client
        self._cache = cache
        self._device = device
        self._catalog = catalog
        self._limits = limits
        self._progress = progress
        self._budget = RunBudget(limits.max_run_bytes)
        self._count = 0
        self.files: list[FetchedFile] = []  # every file touched, in completion order, for the report

    async def fetch(self, url: str) -> list[FetchedFile]:
        """The documents of `url` and its chain, depth-first in document order (references included).

        Raises:
            ProvdError: the first failure (FetchError, DocumentError, ReferenceChainError).
        """
        target = markers.replace_markers(url, self._device)
        urls.check_url(target)
        try:
            return await self._expand(target, (), 0)
        except BaseExceptionGroup as group:
            raise _first_provd_error(group) from None

    async def _expand(self, url: str, path: tuple[str, ...], depth: int) -> list[FetchedFile]:
        shown = urls.redact(url)
        if depth > self._limits.max_depth:
            raise ReferenceChainError(f"references nested deeper than references.max_depth "
                                      f"({self._limits.max_depth})", url=shown)
        self._count += 1
        if self._count > self._limits.max_files:
            raise ReferenceChainError(f"more than references.max_files ({self._limits.max_files}) files",
                                      url=shown)
        entry = FetchedFile(shown, None, None, 0, False)
        self.files.append(entry)
        try:
            body, final_url, entry.status, entry.cached = await self._download(url)
            entry.size = len(body)
            entry.sha256 = hashlib.sha256(body).hexdigest()
            if final_url != url:
                entry.requested, entry.url = shown, urls.redact(final_url)
            doc = parse_document(body, source=entry.url, max_bytes=self._limits.max_file_bytes,
                                 sections=self._catalog.sections)
        except ProvdError as exc:
            entry.error = str(exc)
            raise
        entry.document = doc
        self._progress(f"  {entry.status or 'file'} {entry.url} {entry.size} bytes"
                       f"{' (cached)' if entry.cached else ''} [{doc.kind.value}]")
        if doc.kind is not DocumentKind.REFERENCE:
            return [entry]
        children = self._references(doc, final_url)
        for child in children:
            if child in (*path, url):
                raise ReferenceChainError(f"reference loop: {urls.redact(child)} refers back to itself "
                                          f"through {' → '.join(urls.redact(p) for p in (*path, url))}", url=shown)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._expand(child, (*path, url), depth + 1)) for child in children]
        return [entry, *(f for task in tasks for f in task.result())]

    def _references(self, doc: Document, base: str) -> list[str]:
        self._catalog.file_schema("provisioning_references").check(doc.root, source=doc.source)
        out = []
        for el in doc.root:
            text = markers.replace_markers((el.text or "").strip(), self._device)
            out.append(urls.resolve(text, base))
        return out

    async def _download(self, url: str) -> tuple[bytes, str, int | None, bool]:
        """(body, final URL, status, from cache)."""
        parts = urlsplit(url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise FetchURLError("a file: URL must name a local file", url=url)
            path = Path(url2pathname(parts.path))
            data = await asyncio.to_thread(read_capped, path, self._limits.max_file_bytes)
            self._budget.take(len(data), url=url)
            return data, url, None, False
        entry = self._cache.lookup(url) if self._cache else None
        validators = Validators(entry.etag, entry.last_modified) if entry else None
        response = await self._client.get(url, validators=validators, budget=self._budget)
        if response.status == 304 and entry is not None and self._cache is not None:
            body = await asyncio.to_thread(self._cache.read, entry)
            if body is not None:
                return body, response.url, 304, True
            response = await self._client.get(url, validators=None, budget=self._budget)
        if self._cache is not None:
            await asyncio.to_thread(self._cache.store, url, response.etag, response.last_modified, response.body)
        return response.body, response.url, response.status, False


def _first_provd_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first provd error inside a (nested) exception group; anything else is a bug and re-raised."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_provd_error(exc)
        if isinstance(exc, ProvdError):
            return exc
    raise group


