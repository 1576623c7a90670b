"""The HTTP(S) adapter on httpx: the only module that imports it, and where its exceptions become provd's.

One `HttpClient` per run: a connection pool (HTTP/2 over TLS where the server offers it, so a reference
file's siblings share one connection), TLS verification against the system CAs plus `http.ca_file`, an
optional client certificate, connect/read timeouts plus a total per file, and the per-file and per-run
size caps enforced while the body streams in — a server cannot make the phone hold more than the cap in
memory. Redirects (at most 5) are followed here, hop by hop, not by httpx: each target is checked like any
URL, an HTTPS file is never fetched over plain HTTP after a redirect (a downgrade an attacker on the path
could otherwise force), and credentials stay with the origin they were given for.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Generator
from types import TracebackType

import httpx

from provd.core.urls import check_url, redact, split_credentials, with_credentials
from provd.errors import (
    ConfigError,
    FetchConnectionError,
    FetchRedirectError,
    FetchStatusError,
    FetchTimeout,
    FetchTLSError,
    FetchTooLarge,
    FetchURLError,
    one_line,
)
from provd.ports import HttpOptions, HttpResponse, RunBudget, Validators  # the values of the HTTP port

MAX_REDIRECTS = 5


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


def _ssl_context(options: HttpOptions) -> ssl.SSLContext:
    return _cached_ssl_context(options.ca_file, options.client_cert, options.client_key)


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
    def __init__(self, options: HttpOptions) -> None:
        self._options = options
        per_op = min(10.0, options.timeout_s)
        self._client = httpx.AsyncClient(
            verify=_ssl_context(options),
            http2=True,
            follow_redirects=False,  # `_get` follows them, checking every hop
            timeout=httpx.Timeout(connect=per_op, read=per_op, write=per_op, pool=options.timeout_s),
            limits=httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency),
            headers={"User-Agent": options.user_agent},
            trust_env=False,  # a phone's environment is not the place for proxies or extra CAs
        )

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.aclose()

    async def get(self, url: str, *, validators: Validators | None, budget: RunBudget) -> HttpResponse:
        """GET `url` (credentials in its userinfo are used for Basic/Digest on its origin only, and only
        when that origin asks), following redirects.

        Raises:
            FetchError and its subclasses; FetchStatusError for anything but 200 and a 304 to validators;
            FetchRedirectError for a redirect from HTTPS to plain HTTP.
        """
        shown = redact(url)
        check_url(url)  # no byte leaves before the URL is known to be one
        headers = {}
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        try:
            async with asyncio.timeout(self._options.timeout_s):
                return await self._get(url, shown, headers, validators is not None, budget)
        except TimeoutError as exc:
            raise FetchTimeout(f"no complete answer within {self._options.timeout_s:g} s", url=shown) from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"timed out ({type(exc).__name__})", url=shown) from exc
        except httpx.InvalidURL as exc:
            raise FetchURLError(f"not a valid URL: {one_line(str(exc))}", url=shown) from exc
        except httpx.UnsupportedProtocol as exc:
            raise FetchURLError(one_line(str(exc)), url=shown) from exc
        except httpx.ConnectError as exc:
            if _is_tls(exc):
                raise FetchTLSError(f"TLS failed: {one_line(_tls_reason(exc))}", url=shown) from exc
            raise FetchConnectionError(f"cannot connect: {one_line(str(exc))}", url=shown) from exc
        except httpx.HTTPError as exc:  # the rest of httpx's tree: reset, truncated body, protocol errors
            raise FetchConnectionError(f"{type(exc).__name__}: {one_line(str(exc)) or 'connection lost'}",
                                       url=shown) from exc

    def _request(self, url: str, headers: dict[str, str], shown: str) -> httpx.Request:
        try:
            return self._client.build_request("GET", url, headers=headers)
        except UnicodeError as exc:  # idna's IDNAError: a host name IDNA 2008 refuses (`xn--`)
            raise FetchURLError(f"not a valid URL: {one_line(str(exc))}", url=shown) from exc

    async def _get(self, url: str, shown: str, headers: dict[str, str], conditional: bool,
                   budget: RunBudget) -> HttpResponse:
        current = url  # the hop being fetched, with the credentials that apply to it
        for _ in range(MAX_REDIRECTS + 1):
            clean, creds = split_credentials(current)
            auth = _ChallengeAuth(*creds) if creds else None
            resp = await self._client.send(self._request(clean, headers, shown), auth=auth, stream=True,
                                           follow_redirects=False)
            try:
                target = resp.next_request.url if resp.next_request is not None else None
                if target is None:
                    return await self._body(resp, current, shown, conditional, budget)
            finally:
                await resp.aclose()
            current = self._next_hop(current, str(target), shown)
        raise FetchURLError(f"more than {MAX_REDIRECTS} redirects", url=shown)

    @staticmethod
    def _next_hop(current: str, location: str, shown: str) -> str:
        """Where a redirect from `current` may go: a URL provd would fetch, never from HTTPS down to HTTP;
        `current`'s credentials go along only to the same origin (RFC 6454), as `urls.with_credentials`."""
        try:
            check_url(location)
        except FetchURLError as exc:
            raise FetchRedirectError(f"redirect refused: {exc}", url=shown, location=exc.url) from exc
        if current.lower().startswith("https:") and location.lower().startswith("http:"):
            raise FetchRedirectError(f"redirected to {redact(location)}: refused, a redirect from HTTPS to "
                                     f"plain HTTP would fetch the file unprotected", url=shown,
                                     location=redact(location))
        return with_credentials(location, current)

    async def _body(self, resp: httpx.Response, url: str, shown: str, conditional: bool,
                    budget: RunBudget) -> HttpResponse:
        cap = self._options.max_file_bytes
        # After redirects the message says where the answer came from; `url` stays the file asked for.
        via = f" (from {redact(url)}, after redirects)" if redact(url) != shown else ""
        if resp.status_code == 304 and conditional:
            await resp.aread()  # read to the end, or the pool drops the HTTP/1.1 connection
            return HttpResponse(url, 304, b"", resp.headers.get("etag"), resp.headers.get("last-modified"))
        if resp.status_code != 200:
            raise FetchStatusError(one_line(f"HTTP {resp.status_code} {resp.reason_phrase}").rstrip() + via,
                                   url=shown, status=resp.status_code, retry_after=_retry_after(resp))
        declared = resp.headers.get("content-length")  # h11/h2 themselves refuse a truncated body
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise FetchTooLarge(f"file is {declared} bytes, over http.max_file_bytes ({cap}){via}", url=shown)
        chunks = []
        size = 0
        async for chunk in resp.aiter_bytes():  # decoded: the cap holds for a gzip bomb too
            size += len(chunk)
            if size > cap:
                raise FetchTooLarge(f"file is over http.max_file_bytes ({cap}){via}", url=shown)
            budget.take(len(chunk), url=shown)
            chunks.append(chunk)
        return HttpResponse(url, 200, b"".join(chunks), resp.headers.get("etag"),
                            resp.headers.get("last-modified"))

    # --- result reports (docs/design.md §10) ---------------------------------------------------------------

    async def post_json(self, url: str, body: bytes, *, timeout_s: float) -> int:
        """POST `body` as `application/json` to `url` (its userinfo answers a Basic/Digest challenge, as for
        GET); the status. Redirects are not followed: a report goes where it was configured, and a 3xx is
        an answer like any non-2xx (the caller keeps the report).

        Raises:
            FetchURLError, FetchTimeout (no answer within `timeout_s`), FetchConnectionError, FetchTLSError.
        """
        shown = redact(url)
        check_url(url)
        clean, creds = split_credentials(url)
        auth = _ChallengeAuth(*creds) if creds else None
        try:
            request = self._client.build_request("POST", clean, content=body,
                                                 headers={"Content-Type": "application/json"})
        except UnicodeError as exc:
            raise FetchURLError(f"not a valid URL: {one_line(str(exc))}", url=shown) from exc
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._client.send(request, auth=auth, follow_redirects=False)
                return resp.status_code
        except TimeoutError as exc:
            raise FetchTimeout(f"no answer within {timeout_s:g} s", url=shown) from exc
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"timed out ({type(exc).__name__})", url=shown) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchURLError(one_line(str(exc)), url=shown) from exc
        except httpx.ConnectError as exc:
            if _is_tls(exc):
                raise FetchTLSError(f"TLS failed: {one_line(_tls_reason(exc))}", url=shown) from exc
            raise FetchConnectionError(f"cannot connect: {one_line(str(exc))}", url=shown) from exc
        except httpx.HTTPError as exc:
            raise FetchConnectionError(f"{type(exc).__name__}: {one_line(str(exc)) or 'connection lost'}",
                                       url=shown) from exc


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


