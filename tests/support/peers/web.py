"""HTTP(S) peers in the server namespace: the Redirect Service (HTTPS, `nettools.py redirect`) and nginx serving
provisioning files on port 8080, so discovery → fetch → apply runs entirely inside the namespaces. In a pair
with IPv6, nginx listens on the server's IPv6 address too (`ProvHttp.url6`), and the Redirect Service can be
started on it instead (`ipv6=True`: `https://[2001:db8:7b::1]`).

Owns their certificates, configs, logs and processes (stopped by PID). The Redirect Service's behaviour is a JSON
file it re-reads per request, so a test changes it without a restart; every request is logged before the answer.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
import trustme

from tests.support.peers.http import _LOG_FORMAT, AccessLogEntry, _nginx_binary
from tests.support.peers.netns import Ipv6, NetnsPair, NsProcess, Side, nettools_argv

REDIRECT_PORT = 443
PROV_HTTP_PORT = 8080


# --- the Redirect Service --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedirectRequest:
    time: float  # time.monotonic() in the server: the tests' clock
    method: str
    target: str  # path and query as sent: "/?mac=00095200000E&serial=…&type=D400"
    path: str
    query: dict[str, list[str]]  # parsed, percent-decoded
    headers: dict[str, str]


@dataclass(frozen=True)
class RedirectService:
    """HTTPS on the server address (or its IPv6 address), port 443, certificate for that address from the test
    CA (`ca_file`)."""

    origin: str  # "https://10.123.0.1", "https://[2001:db8:7b::1]"
    ca_file: Path
    behaviour_file: Path
    request_log: Path
    process: NsProcess

    @property
    def url_template(self) -> str:
        """A `redirect.url` for provd's config, with the markers the real service's URL carries."""
        return f"{self.origin}/?mac={{mac}}&serial={{serial}}&type={{type}}"

    @property
    def startup_s(self) -> float | None:
        return self.process.ready_after_s

    def set(self, status: int = 200, body: str = "", *, delay_s: float = 0.0,
            content_type: str = "text/plain") -> None:
        """How every following request is answered: 200 with `body` (its first non-blank line the URL), 204,
        404, 500 …; `delay_s` before the answer (the slow service)."""
        _write_behaviour(self.behaviour_file, status, body, delay_s, content_type)

    def requests(self) -> list[RedirectRequest]:
        if not self.request_log.exists():
            return []
        return [RedirectRequest(**json.loads(line)) for line in self.request_log.read_text().splitlines()
                if line.endswith("}")]

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> list[RedirectRequest]:
        """Raises: TimeoutError: fewer than `count` requests within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(found := self.requests()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} requests after {timeout} s: {found}")
            time.sleep(0.005)
        return found


def _write_behaviour(path: Path, status: int, body: str, delay_s: float, content_type: str) -> None:
    staging = path.with_name(f".{uuid.uuid4().hex}")
    staging.write_text(json.dumps({"status": status, "body": body, "delay_s": delay_s, "content_type": content_type}))
    os.replace(staging, path)  # atomic: the server never reads half a file


class RedirectServiceFactory(Protocol):
    def __call__(self, status: int = 200, body: str = "", *, delay_s: float = 0.0,
                 content_type: str = "text/plain", ipv6: bool = False) -> RedirectService:
        """Start the Redirect Service answering as `RedirectService.set` describes; change it with `.set(…)`.
        `ipv6`: on the server's IPv6 address only (the pair must have IPv6)."""
        ...


def start_redirect_service(pair: NetnsPair, status: int = 200, body: str = "", *, delay_s: float = 0.0,
                           content_type: str = "text/plain", ipv6: bool = False) -> RedirectService:
    if ipv6 and pair.ipv6 is Ipv6.OFF:
        raise ValueError("an IPv6 Redirect Service needs a pair with IPv6 (netns6, netns_dual)")
    address = pair.server_ip6 if ipv6 else pair.server_ip
    ca = trustme.CA(organization_name="provd redirect test CA")
    leaf = ca.issue_cert(address)  # an IP SAN: provd reaches the service by address in the namespaces
    ca_file = pair.unique_path("redirect-ca.pem")
    ca.cert_pem.write_to_path(str(ca_file))
    cert, key = pair.unique_path("redirect.pem"), pair.unique_path("redirect.key")
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    log = pair.unique_path("redirect-requests.jsonl")
    behaviour = pair.unique_path("redirect-behaviour.json")
    _write_behaviour(behaviour, status, body, delay_s, content_type)
    argv = nettools_argv("redirect", "--bind", address, "--port", str(REDIRECT_PORT), "--cert", str(cert),
                         "--key", str(key), "--behaviour", str(behaviour), "--log", str(log))
    process = pair.start(Side.SERVER, "redirect", argv, ready_line=True)
    process.wait_line("ready")
    origin = f"https://[{address}]" if ipv6 else f"https://{address}"
    return RedirectService(origin=origin, ca_file=ca_file, behaviour_file=behaviour, request_log=log, process=process)


@pytest.fixture
def redirect_service(netns: NetnsPair) -> RedirectServiceFactory:
    """Factory: `redirect_service(200, "http://…/x.xml\\n")`, `redirect_service(204)`, `redirect_service(delay_s=3)`."""
    return functools.partial(start_redirect_service, netns)


# --- nginx with the provisioning files -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvHttp:
    """nginx on `http://<server ip>:8080/` serving `root` (write files there at any time)."""

    root: Path
    url: str  # ends in "/"
    access_log_path: Path
    process: NsProcess
    url6: str = ""  # "http://[2001:db8:7b::1]:8080/" in a pair with IPv6: the same server

    @property
    def startup_s(self) -> float | None:
        return self.process.ready_after_s

    def write(self, relpath: str, content: str | bytes) -> Path:
        """Write a file atomically under `root`."""
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        staging.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(staging, target)
        return target

    def access_log(self) -> list[AccessLogEntry]:
        text = self.access_log_path.read_text(encoding="utf-8") if self.access_log_path.exists() else ""
        return [AccessLogEntry(**json.loads(line)) for line in text.splitlines() if line.endswith("}")]

    def wait_for_log(self, predicate: Callable[[AccessLogEntry], bool], count: int = 1,
                     timeout: float = 5.0) -> list[AccessLogEntry]:
        """nginx logs a request just after answering it: wait for the line, don't just read.

        Raises:
            TimeoutError: fewer than `count` entries matched within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while len(found := [entry for entry in self.access_log() if predicate(entry)]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} access-log entries after {timeout} s: {found}")
            time.sleep(0.005)
        return found


def start_prov_http(pair: NetnsPair) -> ProvHttp:
    base = pair.workdir / f"nginx-{uuid.uuid4().hex[:8]}"
    root, tmp = base / "root", base / "tmp"
    for path in (root, tmp):
        path.mkdir(parents=True)
    error_log, access_log = base / "error.log", base / "access.log"
    conf = base / "nginx.conf"
    temp = "\n".join(f"    {kind}_temp_path {tmp / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # One process (no master/workers): the PID started is the whole server. Bound to the server address only
    # (and its IPv6 address, in a pair with IPv6).
    listen6 = f"        listen [{pair.server_ip6}]:{PROV_HTTP_PORT};\n" if pair.ipv6 is not Ipv6.OFF else ""
    conf.write_text(f"""daemon off;
master_process off;
pid {tmp / "nginx.pid"};
error_log {error_log} notice;
events {{ worker_connections 128; }}
http {{
    types {{ application/xml xml; text/plain txt; }}
    default_type application/octet-stream;
    log_format peers escape=json '{_LOG_FORMAT}';
    access_log {access_log} peers;
{temp}
    root {root};
    server_tokens off;
    server {{
        listen {pair.server_ip}:{PROV_HTTP_PORT};
{listen6}    }}
}}
""")
    process = pair.start(Side.SERVER, "nginx", [_nginx_binary(), "-p", str(tmp), "-c", str(conf), "-e",
                                                str(error_log)], extra_logs=[error_log])
    process.wait_bound("tcp", PROV_HTTP_PORT)
    url6 = f"http://[{pair.server_ip6}]:{PROV_HTTP_PORT}/" if pair.ipv6 is not Ipv6.OFF else ""
    return ProvHttp(root=root, url=f"http://{pair.server_ip}:{PROV_HTTP_PORT}/", access_log_path=access_log,
                    process=process, url6=url6)


@pytest.fixture
def prov_http(netns: NetnsPair) -> ProvHttp:
    """nginx in the server namespace: `prov_http.write("prov/00095200000E.xml", …)`, `prov_http.url`."""
    return start_prov_http(netns)
