"""The result-report sender (docs/design.md §10): a task of the daemon's TaskGroup that POSTs the outbox's reports,
oldest first, to `report.url`. It shares nothing with the runner but the store (short reads and writes), so it
never delays a provisioning run. A 2xx forgets the report; anything else keeps it and waits with the daemon's
backoff (core/backoff), or until a new report is queued. One log line per failure, the URL redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random

from provd import __version__, log
from provd.core.backoff import BASE_S, CAP_S, backoff_delay
from provd.core.markers import replace_markers
from provd.core.urls import redact
from provd.errors import ProvdError, StoreError
from provd.ports import Clock, HttpClient, HttpClientFactory, within
from provd.settings.phone import PhoneSettings

_log = log.get(__name__)


class ReportSender:
    def __init__(self, settings: PhoneSettings, changed: asyncio.Event, clock: Clock, rng: random.Random, *,
                 http: HttpClientFactory | None = None, base_s: float = BASE_S, cap_s: float = CAP_S) -> None:
        self._settings = settings
        self._changed = changed
        self._clock = clock
        self._rng = rng
        self._http = http
        self._base_s, self._cap_s = base_s, cap_s
        self.attempt = 0  # failures since the last delivery

    async def serve(self) -> None:
        """Send whatever is ready, then wait for a new report or the backoff; until cancelled."""
        from provd.run import device as device_mod
        from provd.run.provision import http_options

        config = self._settings.config
        url = config.report.url
        if url is None:
            return
        try:
            device = device_mod.device_from_config(config)
        except ProvdError as exc:  # the MAC cannot be read: reports stay queued, the daemon goes on
            _log.error("report delivery off: %s", exc)
            return
        target = replace_markers(url, device)
        factory = self._http
        if factory is None:
            from provd.transport import http

            factory = http.HttpClient
        options = http_options(config, device_mod.user_agent(config, device, __version__))
        extra = {"type": device.type, "serial": device.serial, "mac": device.mac, "firmware": device.firmware}
        async with factory(options) as client:
            while True:
                await self._wait()
                while await self._send_one(client, target, extra):
                    pass

    async def _wait(self) -> None:
        """Until a new report is queued, or (after a failure) the backoff has passed, whichever comes first."""
        if self.attempt == 0:
            await self._changed.wait()
        else:
            delay = backoff_delay(self.attempt, self._rng.random(), base=self._base_s, cap=self._cap_s)
            with contextlib.suppress(TimeoutError):
                await within(self._clock, delay, self._changed.wait())
        self._changed.clear()

    async def _send_one(self, client: HttpClient, target: str, device: dict[str, str]) -> bool:
        """Deliver the oldest ready report; True when one was delivered (try the next)."""
        store = self._settings.store
        try:
            report = store.next_report()
            dropped = store.dropped() if report is not None else 0
        except StoreError as exc:
            self._failed(f"report delivery: store unreadable: {exc}")
            return False
        if report is None:
            return False
        body = dict(report.body)
        body["device"] = device
        body["report_id"] = report.id  # the outbox's number: delivery is at least once, a server can de-duplicate
        if dropped:
            body["dropped"] = dropped
        data = json.dumps(body, separators=(",", ":")).encode()
        try:
            status = await client.post_json(target, data, timeout_s=self._settings.config.report.timeout_s)
        except ProvdError as exc:  # a fetch error, or a URL check failure (bad configuration): one line either way
            self._failed(f"report #{report.id} not delivered to {redact(target)}: {exc}")
            return False
        if not 200 <= status < 300:
            self._failed(f"report #{report.id} not delivered to {redact(target)}: HTTP {status}")
            return False
        try:
            store.delivered(report.id, told_dropped=dropped)
        except StoreError as exc:
            self._failed(f"report #{report.id} delivered but not forgotten (sent again later): {exc}")
            return False
        self.attempt = 0
        return True

    def _failed(self, line: str) -> None:
        self.attempt += 1
        _log.warning("%s (attempt %d)", line, self.attempt)
