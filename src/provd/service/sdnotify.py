"""systemd's notify protocol: one datagram to `$NOTIFY_SOCKET` (READY=1, WATCHDOG=1, STOPPING=1, STATUS=…).
Without the variable (not under systemd) every call does nothing."""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")

    def send(self, *fields: str) -> None:
        if not self._address:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        # Never block the daemon on its service manager: a notify socket nobody reads fills up, and a
        # blocking sendto would then stop the event loop. A full or vanished socket loses the message.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, target)


def watchdog_interval() -> float | None:
    """Half of `$WATCHDOG_USEC` in seconds, when this process is the one systemd watches."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
