"""The NTP adapter: the only module that imports ntplib. One query per server, in a worker thread with a
timeout (ntplib blocks), NTPv4 (ntplib defaults to version 2)."""

from __future__ import annotations

import asyncio
import socket

import ntplib

from provd.core.clock import NtpSample
from provd.errors import NtpUnavailable


async def query(server: str, *, timeout: float) -> NtpSample:
    """Raises: NtpUnavailable."""
    client = ntplib.NTPClient()
    try:
        reply = await asyncio.wait_for(
            asyncio.to_thread(client.request, server, version=4, timeout=timeout), timeout + 1.0)
    except (TimeoutError, ntplib.NTPException, socket.gaierror, OSError) as exc:
        raise NtpUnavailable(f"{server}: {exc or 'no answer'}") from exc
    return NtpSample(server=server, mode=int(reply.mode), leap=int(reply.leap), stratum=int(reply.stratum),
                     tx_time=float(reply.tx_time), offset=float(reply.offset))
