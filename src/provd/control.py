"""The client side of the control socket (`runtime_dir/provd.sock`, JSON lines): one request line, then
the daemon's answer lines until it closes the connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path


class NoDaemon(Exception):
    """Nothing listens on the socket: the caller runs in-process instead."""


def exchange(path: Path, message: dict[str, object], *, timeout: float | None = None) -> Iterator[dict[str, object]]:
    """Send `message`, yield each answer line as it arrives.

    Raises:
        NoDaemon: no socket, or nobody listening.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise NoDaemon(str(exc)) from exc
    except OSError:
        sock.close()
        raise
    with sock:
        sock.settimeout(timeout)
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as stream:
            for line in stream:
                if line.strip():
                    answer = json.loads(line)
                    if isinstance(answer, dict):
                        yield answer
