"""The exception tree of provd: every failure a user can meet is one of these, with structured fields.

    ProvdError
    ├── ConfigError                 the daemon configuration (YAML) is unreadable or wrong
    ├── DocumentError               a provisioning file (or a stored section) is not acceptable
    │   ├── DocumentTooLarge        over http.max_file_bytes, refused before parsing
    │   ├── UnsafeDocument          DOCTYPE, entities: refused, never expanded
    │   ├── MalformedDocument       not well-formed XML
    │   ├── UnknownDocumentType     root element names no known file type or section
    │   ├── SchemaError             fails its XSD
    │   ├── MigrationError          a migration step could not be applied
    │   └── OperationError          an operations entry failed (bad XPath, wrong selection)
    ├── FetchError                  a download failed (retryable unless said otherwise)
    │   ├── FetchTimeout            connect, read or total time ran out
    │   ├── FetchConnectionError    refused, reset, truncated body, protocol error
    │   ├── FetchTLSError           certificate verification or handshake failed
    │   ├── FetchStatusError        an HTTP status that is not 200/304 (`status`, `retry_after`)
    │   ├── FetchTooLarge           over http.max_file_bytes or http.max_run_bytes while streaming
    │   └── FetchURLError           a URL provd will not fetch (scheme, syntax); not retryable
    │       └── FetchRedirectError  a redirect provd will not follow (HTTPS → HTTP); `location`
    ├── ReferenceChainError         a reference chain is unusable: loop, depth, file count; not retryable
    ├── DiscoveryError              no provisioning URL could be found
    │   ├── PreconditionsNotMet     network or valid time still missing when a bounded wait ended
    │   └── SourceUnavailable       one source could not be asked at all (its attempt says `failed`)
    │       ├── DhcpUnavailable     no permission for port 68, no such interface, lease file unreadable
    │       ├── NtpUnavailable      one NTP server gave no usable answer (timeout, DNS, socket error)
    │       └── MulticastUnavailable  the SIP multicast socket could not be set up (port taken, no address)
    ├── RefusedDocument             a well-formed file of a type this door does not take (reference in apply)
    ├── StoreError                  the settings store cannot be opened, is corrupt, or a write failed
    │   ├── UnknownGeneration       rollback to a generation that is not kept
    │   ├── StoreFull               the disk under state_dir is full: nothing was written
    │   ├── StoreReadOnly           state_dir is read-only (a read-only mount): reads work, writes do not
    │   └── StoreConflict           a section this commit writes was committed by another writer since it was read
    ├── UnknownSection              `show` of a section provd does not have
    └── ControlError                the control socket: a bad request, a daemon that answers wrongly or not
        │                           at all, a second daemon, a runtime_dir that cannot be used
        └── NoDaemon                nothing listens on the socket: the CLI then works in-process

`retryable` says whether trying the same thing again later may succeed (network-ish failures); none of
the settings-engine errors are. Every message is one line (`one_line`): libxml2 and httpx put newlines
into theirs, and the CLI prints an error as exactly one `provd: error: …` line.
"""

from __future__ import annotations

import re

_BREAKS = re.compile(r"\s*[\r\n\v\f\x85\u2028\u2029]+\s*(?=([,.;:)]?))")


def one_line(text: str) -> str:
    """`text` with its line breaks (and the blanks around them) collapsed into one space: foreign
    diagnostics such as libxml2's `Char 0x0 out of allowed range\\n, line 46` enter provd's errors here."""
    if not _BREAKS.search(text):
        return text
    return _BREAKS.sub(lambda m: "" if m.group(1) else " ", text).strip()


class ProvdError(Exception):
    """Base of all provd errors; `str()` is the one-line message the CLI prints."""

    retryable: bool = False

    def __str__(self) -> str:
        return one_line(super().__str__())  # the guarantee, whoever built the message


class ConfigError(ProvdError):
    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class DocumentError(ProvdError):
    """A document failed; `source` names the file or URL, `line` and `xpath` the place when known."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        xpath: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.xpath = xpath
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source or "<document>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.message}"
        if self.xpath:
            text += f" (at {self.xpath})"
        return text


class DocumentTooLarge(DocumentError):
    pass


class UnsafeDocument(DocumentError):
    pass


class MalformedDocument(DocumentError):
    pass


class UnknownDocumentType(DocumentError):
    pass


class SchemaError(DocumentError):
    pass


class MigrationError(DocumentError):
    pass


class OperationError(DocumentError):
    pass


class FetchError(ProvdError):
    """A download failed; `url` names it (credentials removed)."""

    retryable = True

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class FetchTimeout(FetchError):
    pass


class FetchConnectionError(FetchError):
    pass


class FetchTLSError(FetchError):
    pass


class FetchStatusError(FetchError):
    def __init__(self, message: str, *, url: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after
        # A 4xx other than 408/429 will not heal by itself; the daemon still retries on its schedule.
        self.retryable = status >= 500 or status in (408, 429)


class FetchTooLarge(FetchError):
    retryable = False


class FetchURLError(FetchError):
    retryable = False


class FetchRedirectError(FetchURLError):
    """`url` answered with a redirect to `location` that provd refuses to follow."""

    def __init__(self, message: str, *, url: str, location: str) -> None:
        super().__init__(message, url=url)
        self.location = location


class ReferenceChainError(ProvdError):
    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url


class DiscoveryError(ProvdError):
    retryable = True


class PreconditionsNotMet(DiscoveryError):
    """Only with a deadline (`--wait`): the daemon waits for ever."""


class SourceUnavailable(DiscoveryError):
    """A source of the URL (or of the time) could not be asked at all; discovery reports it as that
    source's `failed` attempt and goes on with the next."""


class DhcpUnavailable(SourceUnavailable):
    """DHCP could not be asked at all (no permission for port 68, no such interface, lease unreadable)."""


class NtpUnavailable(SourceUnavailable):
    """No usable answer from one NTP server (timeout, DNS, socket error)."""


class MulticastUnavailable(SourceUnavailable):
    """The SIP multicast socket could not be set up (port taken, no such address)."""


class RefusedDocument(ProvdError):
    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class StoreError(ProvdError):
    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class UnknownGeneration(StoreError):
    pass


class StoreFull(StoreError):
    retryable = True  # space may be freed


class StoreReadOnly(StoreError):
    pass


class StoreConflict(StoreError):
    """Another writer committed a section this commit writes after this one read it (docs/design.md §2, one writer)."""

    retryable = True


class UnknownSection(ProvdError):
    pass


class ControlError(ProvdError):
    pass


class NoDaemon(ControlError):
    """Nothing listens on the control socket: the caller works in-process instead."""
