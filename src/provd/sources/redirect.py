"""The Redirect Service client (docs/design.md §6): GET the `redirect.url` template, markers replaced, over HTTPS.
`200` with a body whose first non-blank line is an absolute URL → found; `204`/`404` → this device is not
registered; anything else → the source failed (reported) and discovery goes on. The answered URL passes
`urls.check_url` here, so a URL provd could never fetch (`http://2001:db8::1/`, an IPv6 address without its
brackets) fails this source with the reason instead of failing the run later."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provd.core.urls import check_url, redact
from provd.errors import FetchError, FetchStatusError, FetchURLError
from provd.ports import HttpClient, RunBudget

_ABSOLUTE = re.compile(r"^https?://[^/\s]+\S*$", re.IGNORECASE)


@dataclass(frozen=True)
class RedirectOutcome:
    url: str | None
    registered: bool
    detail: str


async def ask(client: HttpClient, url: str, *, max_bytes: int) -> RedirectOutcome:
    """Raises: FetchError (the service failed: not a 200/204/404, or no usable URL in a 200)."""
    try:
        response = await client.get(url, validators=None, budget=RunBudget(max_bytes))
    except FetchStatusError as exc:
        if exc.status in (204, 404):
            return RedirectOutcome(None, False, f"HTTP {exc.status}: this device is not registered")
        raise
    text = response.body.decode("utf-8", "replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not _ABSOLUTE.match(first):
        raise FetchError(f"answered 200 without an absolute URL (first line {redact(first)[:80]!r})",
                         url=redact(url))
    try:
        check_url(first)
    except FetchURLError as exc:
        raise FetchError(f"answered 200 with a URL provd cannot fetch: {exc}", url=redact(url)) from exc
    return RedirectOutcome(first, True, "HTTP 200")
