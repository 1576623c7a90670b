"""`provd confirm` (docs/design.md §10): the generation waiting on its health check confirmed by hand, in the
daemon's queue or, without a daemon, in this process. Light: no asyncio, as `provd apply`."""

from __future__ import annotations

import time

from provd import log
from provd.core.health import confirmation
from provd.settings.phone import PhoneSettings

_log = log.get(__name__)


def confirm_pending(phone: PhoneSettings, *, by: str) -> int | None:
    """Confirm what is pending (a `confirmed` event queued with it); the generation, None when nothing was.

    Raises:
        StoreError: the state cannot be read or written.
    """
    pending = phone.store.pending()
    if pending is None:
        return None
    if not phone.store.update_pending(pending.generation, None, event=confirmation(pending, by=by, now=time.time()),
                                      confirmed=True):
        return None  # a commit or a rollback came first
    _log.info("health: generation %d confirmed by %s", pending.generation, by)
    return pending.generation
