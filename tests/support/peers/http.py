"""Real HTTP peers for end-to-end fetch tests, started once per session: nginx (HTTP, HTTPS with HTTP/2, TLS with
a wrong-host certificate, mutual TLS, Basic auth), lighttpd (Digest auth) and the fault server (`faults.py`).

All listen on 127.0.0.1 on free ports picked at run time (nginx's plain, Basic and HTTPS servers on [::1] too, the
same port: `*6_url`) and keep their config, certificates, logs and temp
files in one tmp tree; they share one document root. This module owns the processes it starts and stops each
by PID at teardown; it never touches a system nginx/lighttpd, their config or well-known ports.
Use: `from tests.support.peers.http import http_peers, served  # noqa: F401` in a conftest, then the
fixtures.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.support.polling import wait_for_matches

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
BIND_ATTEMPTS = 3
USER = "phone"
PASSWORD = "pr0v-secret"
REALM = "provd"
HOPS = 6
FAULTS = Path(__file__).with_name("faults.py")
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
IPV6_LOOPBACK = "[::1]"


class PeerStartError(RuntimeError):
    """A peer did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class AccessLogEntry:
    """One line of nginx's access log (JSON, see `_LOG_FORMAT`); empty strings where nginx had no value."""

    server_port: int
    scheme: str
    protocol: str  # $server_protocol: "HTTP/1.1", "HTTP/2.0"
    request: str  # $request: "GET /x.xml HTTP/1.1"
    method: str
    uri: str  # $request_uri, with the query
    status: int
    bytes_sent: int
    user_agent: str
    if_none_match: str
    if_modified_since: str
    connection: int  # nginx's connection serial number: equal on two lines = the same (kept-alive) connection
    connection_requests: int
    ssl_client_verify: str  # "SUCCESS", "NONE", "FAILED:…", "" on plain HTTP
    remote_user: str
    remote_addr: str = ""  # $remote_addr: "127.0.0.1", "::1", "2001:db8:7b::50" (the family the request came over)


@dataclass(frozen=True)
class HttpPeers:
    """The running peers. Every `*_url` is an origin without trailing slash whose `/` is `root` (faults: see
    `faults.py`); write files under `root` at any time (`Served.write` keeps ETags honest, see there).
    `root/hello.xml` (`<keys/>`) is there from the start: the target of /redirect/1."""

    root: Path
    http_url: str  # nginx, keep-alive; also /status/{404,500,503,429}, /redirect/1, /hops/6 … /hops/0, and
    # /goto?to=URL (302 to URL as given; every nginx port has it, Basic auth's too: `return` runs before auth)
    https_url: str  # nginx TLS (HTTP/1.1 and HTTP/2), certificate for 127.0.0.1 and localhost
    https_wrong_host_url: str  # nginx TLS, certificate for wrong.example only
    mtls_url: str  # nginx TLS requiring a client certificate from the CA; without one: HTTP 400
    digest_url: str  # lighttpd, Digest (MD5) for digest_user/digest_password
    basic_url: str  # nginx, Basic for the same user/password
    fault_url: str  # the fault server
    http6_url: str  # the http_url server on [::1] ("http://[::1]:PORT"); also /to6/{http,https}/PORT/PATH →
    # 302 to http(s)://[::1]:PORT/PATH on every nginx port
    https6_url: str  # the https_url server on [::1]; its certificate names ::1 as well
    basic6_url: str  # the basic_url server on [::1]
    ca_file: Path
    client_cert: Path
    client_key: Path
    digest_user: str
    digest_password: str
    nginx_access_log: Path

    @property
    def basic_user(self) -> str:
        return self.digest_user

    @property
    def basic_password(self) -> str:
        return self.digest_password

    def ssl_context(self, *, client_cert: bool = False) -> ssl.SSLContext:
        """A client context trusting only the test CA, optionally presenting the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def access_log(self) -> list[AccessLogEntry]:
        """Every request nginx has logged so far, oldest first (all nginx ports share the log)."""
        text = self.nginx_access_log.read_text(encoding="utf-8")
        return [AccessLogEntry(**json.loads(line)) for line in text.splitlines() if line.endswith("}")]

    def wait_for_log(self, predicate: Callable[[AccessLogEntry], bool], count: int = 1,
                     timeout: float = 5.0) -> list[AccessLogEntry]:
        """The matching entries once at least `count` match. nginx writes a line just *after* sending the
        response, so a client can read the log before its own request is in it: wait, don't just read.

        Raises:
            TimeoutError: fewer than `count` entries matched within `timeout` seconds.
        """
        return wait_for_matches(self.access_log, predicate, count, timeout, "access-log entries")


@dataclass(frozen=True)
class Served:
    """A fresh directory under the peers' root for one test, and its base URLs (each ending in '/')."""

    path: Path
    http_url: str
    https_url: str
    mtls_url: str
    basic_url: str
    digest_url: str
    fault_file_url: str  # fault server /file/<dir>/: counts requests per path, strong ETags
    fault_url: str  # fault server /<dir>/: prefix for fault routes, e.g. fault_url + "slow?ms=50"
    http6_url: str = ""  # http_url, https_url, basic_url over IPv6 loopback: "http://[::1]:PORT/<dir>/"
    https6_url: str = ""
    basic6_url: str = ""

    def write(self, relpath: str, content: str | bytes) -> Path:
        """Write a file atomically (no peer sees it half-written), with new validators if it existed.

        nginx's ETag is mtime-in-seconds + size, so rewriting a file within the same second with content of
        the same length would keep its ETag and earn a wrong 304; the mtime is pushed a second on to avoid it.
        """
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        before = target.stat().st_mtime_ns // 10**9 if target.exists() else None
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        staging.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(staging, target)
        if before is not None and target.stat().st_mtime_ns // 10**9 <= before:
            os.utime(target, ns=((before + 1) * 10**9, (before + 1) * 10**9))
        return target


@pytest.fixture(scope="session")
def http_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPeers]:
    with running_http_peers(tmp_path_factory.mktemp("http-peers")) as peers:
        yield peers


@pytest.fixture
def served(http_peers: HttpPeers, request: pytest.FixtureRequest) -> Served:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.") + "-" + uuid.uuid4().hex[:8]
    path = http_peers.root / name
    path.mkdir()
    return Served(path=path, http_url=f"{http_peers.http_url}/{name}/", https_url=f"{http_peers.https_url}/{name}/",
                  mtls_url=f"{http_peers.mtls_url}/{name}/", basic_url=f"{http_peers.basic_url}/{name}/",
                  digest_url=f"{http_peers.digest_url}/{name}/",
                  fault_file_url=f"{http_peers.fault_url}/file/{name}/", fault_url=f"{http_peers.fault_url}/{name}/",
                  http6_url=f"{http_peers.http6_url}/{name}/", https6_url=f"{http_peers.https6_url}/{name}/",
                  basic6_url=f"{http_peers.basic6_url}/{name}/")


@contextlib.contextmanager
def running_http_peers(base: Path) -> Iterator[HttpPeers]:
    """Start every peer under `base` (an empty directory), yield them, stop them all, even on error."""
    dirs = _Dirs(base)
    certs = _make_certs(dirs.etc)
    sha1 = b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    (dirs.etc / "htpasswd").write_text(f"{USER}:{{SHA}}{sha1}\n")  # nginx reads {SHA}; no htpasswd tool needed
    ha1 = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode()).hexdigest()
    (dirs.etc / "htdigest").write_text(f"{USER}:{REALM}:{ha1}\n")
    (dirs.root / "hello.xml").write_text("<keys/>\n")  # the target of /redirect/1
    with contextlib.ExitStack() as stack:
        # The fault server first: its Python start-up is the slowest, and it overlaps nginx's and lighttpd's.
        faults = stack.enter_context(_spawn("faults", [sys.executable, "-I", str(FAULTS), str(dirs.root)],
                                            dirs.logs / "faults.log", port_on_stdout=True))
        nginx_ports, _ = _start_with_free_ports(stack, 5, lambda ports: _start_nginx(dirs, certs, ports))
        (lighttpd_port,), _ = _start_with_free_ports(stack, 1, lambda ports: _start_lighttpd(dirs, ports[0]))
        fault_port = faults.read_port()
        http, https, wrong, mtls, basic = nginx_ports
        yield HttpPeers(
            root=dirs.root, http_url=_origin("http", http), https_url=_origin("https", https),
            https_wrong_host_url=_origin("https", wrong), mtls_url=_origin("https", mtls),
            digest_url=_origin("http", lighttpd_port), basic_url=_origin("http", basic),
            fault_url=_origin("http", fault_port), http6_url=_origin("http", http, IPV6_LOOPBACK),
            https6_url=_origin("https", https, IPV6_LOOPBACK), basic6_url=_origin("http", basic, IPV6_LOOPBACK),
            ca_file=certs.ca, client_cert=certs.client_cert,
            client_key=certs.client_key, digest_user=USER, digest_password=PASSWORD,
            nginx_access_log=dirs.logs / "nginx-access.log")


def _origin(scheme: str, port: int, host: str = "127.0.0.1") -> str:
    return f"{scheme}://{host}:{port}"


class _Dirs:
    def __init__(self, base: Path) -> None:
        self.root = base / "root"  # served: nothing else may live here (keys, htpasswd)
        self.etc = base / "etc"
        self.logs = base / "logs"
        self.tmp = base / "tmp"
        for path in (self.root, self.etc, self.logs, self.tmp):
            path.mkdir()


@dataclass(frozen=True)
class _Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    wrong_cert: Path
    wrong_key: Path
    client_cert: Path
    client_key: Path


def _make_certs(etc: Path) -> _Certs:
    ca = trustme.CA(organization_name="provd test CA")
    ca.cert_pem.write_to_path(str(etc / "ca.pem"))
    paths: list[Path] = []
    for name, identities in (("server", ("127.0.0.1", "localhost", "::1")), ("wrong", ("wrong.example",)),
                             ("client", ("client.provd.test",))):
        leaf = ca.issue_cert(*identities)
        (etc / f"{name}.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(etc / f"{name}.key"))
        paths += [etc / f"{name}.pem", etc / f"{name}.key"]
    return _Certs(etc / "ca.pem", *paths)


def _free_ports(count: int) -> list[int]:
    """Ports free right now. Another process may take one before the server binds it: callers retry."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:  # all bound at once, so the kernel hands out distinct ports
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_with_free_ports(stack: contextlib.ExitStack, count: int,
                           start: Callable[[list[int]], contextlib.AbstractContextManager[_Process]],
                           ) -> tuple[list[int], _Process]:
    for attempt in range(BIND_ATTEMPTS):
        ports = _free_ports(count)
        with contextlib.ExitStack() as attempt_stack:
            process = attempt_stack.enter_context(start(ports))
            try:
                process.wait_listening(ports)
            except PeerStartError as exc:
                if "in use" not in str(exc) or attempt == BIND_ATTEMPTS - 1:
                    raise
                continue
            stack.push(attempt_stack.pop_all())
            return ports, process
    raise AssertionError("unreachable")


def _nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path=SBIN)
    if found is None:
        raise PeerStartError("nginx is not installed: run scripts/setup.sh as root (APT_PACKAGES)")
    return found


def _nginx_has_http2_directive(nginx: str) -> bool:
    """nginx 1.25.1 replaced `listen … http2` (now deprecated, with a warning) by `http2 on;`."""
    banner = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", banner)
    return match is not None and tuple(map(int, match.groups())) >= (1, 25, 1)


# escape=json makes every line a JSON object; numeric variables are always set, so they go unquoted.
_LOG_FORMAT = (
    '{"server_port":$server_port,"scheme":"$scheme","protocol":"$server_protocol","request":"$request",'
    '"method":"$request_method","uri":"$request_uri","status":$status,"bytes_sent":$bytes_sent,'
    '"user_agent":"$http_user_agent",'
    '"if_none_match":"$http_if_none_match","if_modified_since":"$http_if_modified_since",'
    '"connection":$connection,"connection_requests":$connection_requests,'
    '"ssl_client_verify":"$ssl_client_verify","remote_user":"$remote_user","remote_addr":"$remote_addr"}'
)


def _nginx_locations() -> str:
    hops = "".join(f"        location = /hops/{n} {{ return 302 /hops/{n - 1}; }}\n" for n in range(HOPS, 0, -1))
    return f"""        location = /status/404 {{ return 404 "not found\\n"; }}
        location = /status/500 {{ return 500 "internal error\\n"; }}
        location = /status/503 {{ add_header Retry-After 7 always; return 503 "unavailable\\n"; }}
        location = /status/429 {{ add_header Retry-After 3 always; return 429 "too many requests\\n"; }}
        location = /redirect/1 {{ return 302 /hello.xml; }}
        location = /goto {{ return 302 $arg_to; }}
        location ~ ^/to6/(https?)/([0-9]+)(/.*)$ {{ return 302 $1://[::1]:$2$3; }}
{hops}        location = /hops/0 {{ default_type application/xml; return 200 "<keys/>"; }}
"""


def _nginx_conf(dirs: _Dirs, certs: _Certs, ports: list[int], new_http2: bool) -> str:
    http, https, wrong, mtls, basic = ports
    locations = _nginx_locations()

    def tls_server(port: int, cert: Path, key: Path, extra: str = "", *, ipv6: bool = False) -> str:
        hosts = ["127.0.0.1", "[::1]"] if ipv6 else ["127.0.0.1"]
        listen = "\n        ".join(f"listen {host}:{port} ssl;" for host in hosts) + "\n        http2 on;" \
            if new_http2 else "\n        ".join(f"listen {host}:{port} ssl http2;" for host in hosts)
        return f"""    server {{
        {listen}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
{extra}{locations}    }}
"""

    mtls_extra = f"        ssl_client_certificate {certs.ca};\n        ssl_verify_client on;\n"
    basic_extra = f'        auth_basic "{REALM}";\n        auth_basic_user_file {dirs.etc / "htpasswd"};\n'
    temp = "\n".join(f"    {kind}_temp_path {dirs.tmp / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # One process (no master/workers): the PID we started is the whole server, and stopping it stops all.
    return f"""daemon off;
master_process off;
pid {dirs.tmp / "nginx.pid"};
error_log {dirs.logs / "nginx-error.log"} notice;
events {{ worker_connections 512; }}
http {{
    types {{ application/xml xml; text/plain txt; application/json json; text/html html; }}
    default_type application/octet-stream;
    log_format peers escape=json '{_LOG_FORMAT}';
    access_log {dirs.logs / "nginx-access.log"} peers;
{temp}
    root {dirs.root};
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{http};
        listen [::1]:{http};
{locations}    }}
    server {{
        listen 127.0.0.1:{basic};
        listen [::1]:{basic};
{basic_extra}{locations}    }}
{tls_server(https, certs.server_cert, certs.server_key, ipv6=True)}\
{tls_server(wrong, certs.wrong_cert, certs.wrong_key)}\
{tls_server(mtls, certs.server_cert, certs.server_key, mtls_extra)}}}
"""


def _start_nginx(dirs: _Dirs, certs: _Certs, ports: list[int]) -> contextlib.AbstractContextManager[_Process]:
    nginx = _nginx_binary()
    conf = dirs.etc / "nginx.conf"
    conf.write_text(_nginx_conf(dirs, certs, ports, _nginx_has_http2_directive(nginx)))
    # -e: the error log before the config is read (the compiled-in /var/log/nginx may not be writable).
    return _spawn("nginx", [nginx, "-p", str(dirs.tmp), "-c", str(conf), "-e",
                                    str(dirs.logs / "nginx-error.log")], dirs.logs / "nginx.out",
                          extra_logs=[dirs.logs / "nginx-error.log"])


def _start_lighttpd(dirs: _Dirs, port: int) -> contextlib.AbstractContextManager[_Process]:
    lighttpd = shutil.which("lighttpd") or shutil.which("lighttpd", path=SBIN)
    if lighttpd is None:
        raise PeerStartError("lighttpd is not installed: run scripts/setup.sh as root (APT_PACKAGES)")
    conf = dirs.etc / "lighttpd.conf"
    error_log = dirs.logs / "lighttpd-error.log"
    # stat-cache off: tests rewrite files and expect the next request to see them. No delay (lighttpd's
    # default, against password guessing) before answering wrong credentials: it costs a second per probe.
    conf.write_text(f"""server.modules = ("mod_auth", "mod_authn_file")
server.document-root = "{dirs.root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{error_log}"
server.stat-cache-engine = "disable"
server.tag = "lighttpd"
server.feature-flags = ("auth.delay-invalid-creds" => "disable")
mimetype.assign = (".xml" => "application/xml", ".txt" => "text/plain", ".json" => "application/json")
auth.backend = "htdigest"
auth.backend.htdigest.userfile = "{dirs.etc / "htdigest"}"
auth.require = ("/" => ("method" => "digest", "realm" => "{REALM}", "require" => "valid-user"))
""")
    return _spawn("lighttpd", [lighttpd, "-D", "-f", str(conf)], dirs.logs / "lighttpd.out",
                          extra_logs=[error_log])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, even by SIGKILL (no teardown then)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def peer_failure(name: str, pid: int, logs: list[Path], what: str) -> PeerStartError:
    """The error for a peer that did not come up, with the last lines of each of its logs."""
    tails = []
    for log in logs:
        with contextlib.suppress(OSError):
            tails.append(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    return PeerStartError(f"{name} (pid {pid}) {what}\n" + "\n".join(tails))


def stop_popen(popen: subprocess.Popen[bytes]) -> None:
    """TERM, a bounded wait, then KILL: a peer that ignores TERM does not hang the teardown."""
    if popen.stdout is not None:
        popen.stdout.close()
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


class _Process:
    """One child process started by `_spawn`, and the logs to show when it fails."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], logs: list[Path]) -> None:
        self.name = name
        self.popen = popen
        self.logs = logs

    def stop(self) -> None:
        stop_popen(self.popen)

    def failure(self, what: str) -> PeerStartError:
        return peer_failure(self.name, self.popen.pid, self.logs, what)

    def read_port(self) -> int:
        """The port the child prints on its first stdout line, within START_TIMEOUT_S."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], START_TIMEOUT_S)
        line = self.popen.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            raise self.failure(f"printed no port within {START_TIMEOUT_S} s (exit {self.popen.poll()})")
        return int(line)

    def wait_listening(self, ports: list[int]) -> None:
        """Poll until this process listens on every port; fail early if it exits.

        A TCP connect would not do: it also succeeds when some other process took the port first.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        while not set(ports) <= _listening_ports(self.popen.pid):
            if self.popen.poll() is not None:
                raise self.failure(f"exited with {self.popen.returncode}")
            if time.monotonic() > deadline:
                raise self.failure(f"not listening on {ports} after {START_TIMEOUT_S} s")
            time.sleep(0.005)


@contextlib.contextmanager
def _spawn(name: str, argv: list[str], log: Path, *, extra_logs: list[Path] | None = None,
           port_on_stdout: bool = False) -> Iterator[_Process]:
    """Start `argv` with stdout and stderr in `log`; on exit stop it by PID and reap it, whatever happened."""
    with log.open("ab") as out:  # append: a retried start keeps the failed attempt's diagnostics
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if port_on_stdout else out,
                                 stderr=out, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    process = _Process(name, popen, [log, *(extra_logs or [])])
    try:
        yield process
    finally:
        process.stop()


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` holds a listening socket on (Linux /proc: fd inodes ∩ /proc/net/tcp{,6})."""
    inodes = set()
    with contextlib.suppress(OSError):  # the process may be gone: the caller polls its exit
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):  # tcp6: a kernel without IPv6
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()  # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
