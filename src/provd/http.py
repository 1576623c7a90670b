"""The HTTP(S) adapter on httpx: the only module that imports it, and where its exceptions become provd's.

One `HttpClient` per run: a connection pool (HTTP/2 over TLS where the server offers it, so a reference
file's siblings share one connection), TLS verification against the system CAs plus `http.ca_file`, an
optional client certificate, at most 5 redirects, connect/read timeouts plus a total per file, and the
per-file and per-run size caps enforced while the body streams in — a server cannot make the phone hold
more than the cap in memory.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType

import httpx

from provd.core.urls import redact, split_credentials
from provd.errors import (
    ConfigError,
    FetchConnectionError,
    FetchStatusError,
    FetchTimeout,
    FetchTLSError,
    FetchTooLarge,
    FetchURLError,
)

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class HttpSettings:
    timeout_s: float
    max_file_bytes: int
    concurrency: int
    user_agent: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class Validators:
    """What a conditional request sends back (DESIGN §7)."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class HttpResponse:
    url: str  # after redirects: references resolve against where the file really came from
    status: int  # 200, or 304 when `validators` matched
    body: bytes
    etag: str | None
    last_modified: str | None


class RunBudget:
    """The bytes one run may still download (`http.max_run_bytes`), shared by all its files."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int, *, url: str) -> None:
        self.used += n
        if self.used > self.limit:
            raise FetchTooLarge(f"the run downloaded more than http.max_run_bytes ({self.limit})", url=url)


class _ChallengeAuth(httpx.Auth):
    """Credentials from the URL's userinfo, answered as Basic or Digest — whichever the server asks for.
    Nothing is sent before the server challenges, so a password never crosses a connection that does not
    ask for it."""

    def __init__(self, user: str, password: str) -> None:
        self._digest = httpx.DigestAuth(user, password)
        self._basic = httpx.BasicAuth(user, password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        if response.status_code != 401:
            return
        schemes = [c.split(" ", 1)[0].lower() for c in response.headers.get_list("www-authenticate")]
        if "digest" in schemes:
            flow = self._digest.auth_flow(request)
            next(flow)
            try:
                retry = flow.send(response)
            except StopIteration:
                return
            yield retry
        elif "basic" in schemes:
            yield next(self._basic.auth_flow(request))


def _ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    return _cached_ssl_context(settings.ca_file, settings.client_cert, settings.client_key)


@functools.cache
def _cached_ssl_context(ca_file: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """One context per process and TLS configuration: loading the system CAs takes ~18 ms and a few MB,
    which every run of the daemon would otherwise pay again (the configuration is read at start)."""
    ctx = ssl.create_default_context()
    try:
        if ca_file:
            ctx.load_verify_locations(ca_file)
        if client_cert:
            ctx.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS material: {exc}", path=ca_file or client_cert) from exc
    return ctx


class HttpClient:
    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        per_op = min(10.0, settings.timeout_s)
        self._client = httpx.AsyncClient(
            verify=_ssl_context(settings),
            http2=True,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(connect=per_op, read=per_op, write=per_op, pool=settings.timeout_s),
            limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency),
            headers={"User-Agent": settings.user_agent},
            trust_env=False,  # a phone's environment is not the place for proxies or extra CAs
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.aclose()

    async def get(self, url: str, *, validators: Validators | None, budget: RunBudget) -> HttpResponse:
        """GET `url` (credentials in its userinfo are used for Basic/Digest, never sent in the clear).

        Raises:
            FetchError and its subclasses; FetchStatusError for anything but 200 and a 304 to validators.
        """
        shown = redact(url)
        clean, creds = split_credentials(url)
        headers = {}
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        auth = _ChallengeAuth(*creds) if creds else None
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                return await self._get(clean, shown, headers, auth, validators is not None, budget)
        except TimeoutError as exc:
            raise FetchTimeout(f"no complete answer within {self._settings.timeout_s:g} s", url=shown) from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"timed out ({type(exc).__name__})", url=shown) from exc
        except httpx.TooManyRedirects as exc:
            raise FetchURLError(f"more than {MAX_REDIRECTS} redirects", url=shown) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchURLError(str(exc), url=shown) from exc
        except httpx.ConnectError as exc:
            if _is_tls(exc):
                raise FetchTLSError(f"TLS failed: {_tls_reason(exc)}", url=shown) from exc
            raise FetchConnectionError(f"cannot connect: {exc}", url=shown) from exc
        except httpx.HTTPError as exc:  # the rest of httpx's tree: reset, truncated body, protocol errors
            raise FetchConnectionError(f"{type(exc).__name__}: {exc or 'connection lost'}", url=shown) from exc

    async def _get(self, url: str, shown: str, headers: dict[str, str], auth: httpx.Auth | None,
                   conditional: bool, budget: RunBudget) -> HttpResponse:
        cap = self._settings.max_file_bytes
        async with self._client.stream("GET", url, headers=headers, auth=auth) as resp:
            final = str(resp.url)
            if resp.status_code == 304 and conditional:
                await resp.aread()  # read to the end, or the pool drops the HTTP/1.1 connection
                return HttpResponse(final, 304, b"", resp.headers.get("etag"), resp.headers.get("last-modified"))
            if resp.status_code != 200:
                raise FetchStatusError(f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip(), url=shown,
                                       status=resp.status_code, retry_after=_retry_after(resp))
            declared = resp.headers.get("content-length")  # h11/h2 themselves refuse a truncated body
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise FetchTooLarge(f"file is {declared} bytes, over http.max_file_bytes ({cap})", url=shown)
            chunks = []
            size = 0
            async for chunk in resp.aiter_bytes():  # decoded: the cap holds for a gzip bomb too
                size += len(chunk)
                if size > cap:
                    raise FetchTooLarge(f"file is over http.max_file_bytes ({cap})", url=shown)
                budget.take(len(chunk), url=shown)
                chunks.append(chunk)
            return HttpResponse(final, 200, b"".join(chunks), resp.headers.get("etag"),
                                resp.headers.get("last-modified"))


def _retry_after(resp: httpx.Response) -> float | None:
    from provd.core.backoff import parse_retry_after

    return parse_retry_after(resp.headers.get("retry-after"), resp.headers.get("date"))


def _causes(exc: BaseException) -> Generator[BaseException, None, None]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_tls(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) for e in _causes(exc)) or "SSL" in str(exc)


def _tls_reason(exc: BaseException) -> str:
    for e in _causes(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return e.verify_message or str(e)
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
    return str(exc)


