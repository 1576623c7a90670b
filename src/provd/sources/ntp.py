"""The NTP adapter: the only module that imports ntplib. One query per server, in a worker thread with a
timeout (ntplib blocks), NTPv4 (ntplib defaults to version 2).

A server is a host name, an IPv4 or IPv6 address, optionally with a port (`core.urls.split_host_port`:
`2001:db8::1`, `[2001:db8::1]:123`, `fe80::1%eth0`); ntplib's getaddrinfo picks the socket's family.
"""

from __future__ import annotations

import asyncio
import socket

import ntplib

from provd.core.clock import NtpSample
from provd.core.urls import split_host_port
from provd.errors import NtpUnavailable

NTP_PORT = 123


async def query(server: str, *, timeout: float) -> NtpSample:
    """Raises: NtpUnavailable (no answer, a name that does not resolve, a server that is no host or address)."""
    try:
        host, port = split_host_port(server, default_port=NTP_PORT)
    except ValueError as exc:
        raise NtpUnavailable(f"{server}: not an NTP server: {exc}") from exc
    client = ntplib.NTPClient()
    try:
        reply = await asyncio.wait_for(
            asyncio.to_thread(client.request, host, version=4, port=port, timeout=timeout), timeout + 1.0)
    except (TimeoutError, ntplib.NTPException, socket.gaierror, OSError, UnicodeError) as exc:
        # OSError: no route (ENETUNREACH on a link without that family), a zone naming no interface.
        # UnicodeError: the IDNA codec inside getaddrinfo refusing a name.
        raise NtpUnavailable(f"{server}: {exc or 'no answer'}") from exc
    return NtpSample(server=server, mode=int(reply.mode), leap=int(reply.leap), stratum=int(reply.stratum),
                     tx_time=float(reply.tx_time), offset=float(reply.offset))
