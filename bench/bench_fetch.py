"""Benchmark of the fetch phase over a delayed link (docs/design.md §1 step 3, §7 conditional fetch): a reference file
listing 8 settings patches, served by nginx over HTTPS (HTTP/2) and plain HTTP in one network namespace and
fetched by provd's ChainFetcher in another, 25 ms each way (50 ms RTT). A script, not a test: it prints the
fetch phase's wall time in RTTs and a second, unchanged run's body bytes against their targets, and exits 0
even when a target is missed (1 only when the bench itself failed, 2 when a precondition is missing).

    .venv/bin/python bench/bench_fetch.py [--runs 5] [--emulation auto|netem|tun] [--keep] [-v]   (as root)

The delay is `tc qdisc … netem delay 25ms` on both ends of a veth pair. On a kernel without sch_netem (and no
module to load) `--emulation auto` falls back to a userspace delay line: a TUN device in each namespace, joined
by a child process of this script that holds every packet 25 ms before handing it to the other side — the same
per-packet delay, said so in the output. The two namespaces are the tests' (tests/support/peers/netns.py):
only what it creates is touched, a pair of namespaces named for this process, their links and 10.123.0.0/24
inside them, never the host's own interfaces or routes; processes are stopped by PID and the namespaces
deleted at exit, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import ctypes
import fcntl
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchlib import Row, print_table

if TYPE_CHECKING:
    from tests.support.peers.netns import NetnsPair

FILES = 8
MAC = "00:09:52:00:00:0E"
NGINX = "/usr/sbin/nginx"
TARGET_RTTS = 4
ONE_BY_ONE_RTTS = 10
TARGET_SHARE = 2.0  # per cent
CLIENT_TIMEOUT_S = 120.0


class BenchError(Exception):
    """The bench itself failed (setup, a worker, a peer): no figures."""


class Precondition(BenchError):
    """Something the bench needs is missing (root, a package, a kernel feature)."""


# ---------------------------------------------------------------------------------------------------------------
# The served tree: a reference file and 8 settings patches of a few KB each


LUA = """\
-- Xtension key {n}: busy lamp field and speed dial for extension {ext}, with a pickup on long press.
local EXTENSION = "{ext}"
local PICKUP_PREFIX = "*8"
local state = "unknown"
local last_change = 0

local function led_for(dialog_state)
  if dialog_state == "confirmed" then
    return "red", false
  elseif dialog_state == "early" or dialog_state == "trying" then
    return "red", true
  elseif dialog_state == "terminated" then
    return "green", false
  end
  return "off", false
end

local function notify(data, uri, handle)
  local x = xml.eval(data)
  if not data or not x then
    return
  end
  for _, dlg in ipairs(x) do
    local s = dlg:find("state")
    if s and s[1] then
      state = s[1]
      last_change = os.time()
      local colour, blink = led_for(state)
      key.setLed(colour, blink)
    end
  end
end

local function subscribe()
  sip.subscribe(EXTENSION, notify)
end

function onKeyUp(pressed_ms)
  if pressed_ms and pressed_ms > 800 and (state == "early" or state == "trying") then
    phone.dial(PICKUP_PREFIX .. EXTENSION)
  elseif state == "confirmed" then
    dialog.show("Extension " .. EXTENSION .. " is on the phone since " .. os.date("%H:%M", last_change))
  else
    phone.dial(EXTENSION)
  end
end

function onKeyLongPress()
  dialog.show("Xtension {n}: " .. EXTENSION .. " (" .. state .. ")")
end

subscribe()
"""


def patch_xml(n: int) -> bytes:
    """One settings patch: Xtension key `n` with a BLF/speed-dial Lua script (~2 KB, a realistic body)."""
    code = LUA.format(n=n, ext=200 + n)
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<keys>\n  <phoneXtensions>\n'
            f'    <key keyNumber="{n}" label="Ext {200 + n}">\n      <keyConfiguration>\n        <lua>\n'
            f"          <code>\n{code}          </code>\n        </lua>\n      </keyConfiguration>\n    </key>\n"
            f"  </phoneXtensions>\n</keys>\n").encode()


def reference_xml() -> bytes:
    urls = "".join(f"  <url>f{n}.xml</url>\n" for n in range(1, FILES + 1))
    return f'<?xml version="1.0" encoding="utf-8"?>\n<referencedSettings>\n{urls}</referencedSettings>\n'.encode()


def write_tree(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "provisioning.xml").write_bytes(reference_xml())
    for n in range(1, FILES + 1):
        (root / f"f{n}.xml").write_bytes(patch_xml(n))


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def provd_argv() -> list[str]:
    """The console script next to this interpreter (as a user runs it), else `python -m provd`."""
    script = Path(sys.executable).parent / "provd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "provd"]


def write_config(path: Path, state: Path, ca: Path, concurrency: int) -> None:
    """A provd configuration (JSON is YAML): fixed MAC, interface lo, the test CA, no NTP precondition."""
    config = {
        "device": {"type": "D400", "serial": "0123456789", "mac": MAC, "interface": "lo"},
        "paths": {"state_dir": str(state), "runtime_dir": str(state / "run")},
        "ntp": {"required": False},
        "http": {"ca_file": str(ca), "concurrency": concurrency},
    }
    path.write_text(json.dumps(config, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Worker modes, run by this script in the namespaces: `_client` (one fetch), `_probe` (RTT), `_delay` (TUN line)


def client_main(config_path: str, url: str, process: str) -> int:
    """One fetch phase built as the engine builds it (provision.http_options, provision.limits, HttpCache in
    state_dir/http-cache), timed from the call to ChainFetcher.fetch to its return.
    Prints one JSON object: wall ms, the process's CPU ms in that time (all threads), each file's completion
    time (ms after the call) and the files' report.

    `process` "daemon": first an untimed GET of a refused loopback port through a throwaway HttpClient, so
    what a process does once (httpcore imports its anyio backend on the first connection, ~20 ms) is done, as
    in a daemon that has run before; "fresh": nothing before, as `provd start` without a daemon."""
    from provd import __version__
    from provd import config as provd_config
    from provd.errors import FetchError
    from provd.ports import RunBudget
    from provd.run import device, provision
    from provd.settings.catalog import Catalog
    from provd.transport.cache import HttpCache
    from provd.transport.chain import ChainFetcher
    from provd.transport.http import HttpClient

    cfg = provd_config.load(config_path)
    catalog = Catalog()
    started = time.perf_counter()
    catalog.file_schema("provisioning_references")  # compiled once per process: a daemon has it already
    schema_ms = (time.perf_counter() - started) * 1000
    dev = device.device_from_config(cfg)
    done: list[float] = []
    t0 = 0.0

    def progress(_line: str) -> None:
        done.append((time.perf_counter() - t0) * 1000)

    async def fetch() -> tuple[float, float, list[dict[str, object]]]:
        nonlocal t0
        settings = provision.http_options(cfg, device.user_agent(cfg, dev, __version__))
        if process == "daemon":
            async with HttpClient(settings) as earlier:
                with contextlib.suppress(FetchError):
                    await earlier.get("http://127.0.0.1:9/", validators=None, budget=RunBudget(1))
        async with HttpClient(settings) as client:
            fetcher = ChainFetcher(client=client, cache=HttpCache(cfg.paths.state_dir / "http-cache"), device=dev,
                                   catalog=catalog, limits=provision.limits(cfg), progress=progress)
            cpu = time.process_time()
            t0 = time.perf_counter()
            files = await fetcher.fetch(url)
            wall = (time.perf_counter() - t0) * 1000
            cpu = (time.process_time() - cpu) * 1000
        return wall, cpu, [f.record().to_json() for f in files]

    wall, cpu, files = asyncio.run(fetch())
    print(json.dumps({"ms": wall, "cpu_ms": cpu, "done_ms": done, "schema_ms": schema_ms, "files": files}))
    return 0


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_echo(host: str, seq: int, timeout: float) -> float:
    """One ICMP echo over a raw socket (no `ping` binary needed): the round trip in ms."""
    ident = os.getpid() & 0xFFFF
    payload = b"provd-bench-fetch".ljust(48, b".")
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, inet_checksum(header + payload), ident, seq) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(timeout)
        started = time.perf_counter()
        sock.sendto(packet, (host, 0))
        while True:
            data = sock.recv(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident and rseq == seq:
                return (time.perf_counter() - started) * 1000


def tcp_connect_ms(host: str, port: int, timeout: float) -> float:
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=timeout):
        return (time.perf_counter() - started) * 1000


def probe_main(host: str, ports: list[int], count: int, wait_s: float) -> int:
    """Wait until the server accepts on `ports`, then measure ICMP echo and TCP connect times (ms)."""
    deadline = time.monotonic() + wait_s
    for port in ports:
        while True:
            try:
                tcp_connect_ms(host, port, 1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    print(json.dumps({"error": f"{host}:{port} does not accept connections after {wait_s:g} s"}))
                    return 1
                time.sleep(0.05)
    icmp = [icmp_echo(host, seq, 2.0) for seq in range(1, count + 1)]
    tcp = {str(port): [tcp_connect_ms(host, port, 2.0) for _ in range(count)] for port in ports}
    print(json.dumps({"icmp_ms": icmp, "tcp_ms": tcp}))
    return 0


CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(name: str) -> int:
    """A TUN device `name` in the current network namespace, which exists as long as the descriptor is open."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class DelayLine:
    """One direction of the wire: every packet read from `src` is written to `dst` `delay` seconds later, in
    order (what `netem delay` does on an egress queue; no loss, no rate limit)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, src: int, dst: int, delay: float) -> None:
        self._loop, self._src, self._dst, self._delay = loop, src, dst, delay
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self.packets = 0
        loop.add_reader(src, self._readable)

    def _readable(self) -> None:
        while True:
            try:
                packet = os.read(self._src, 65536)
            except BlockingIOError:
                break
            self._queue.append((self._loop.time() + self._delay, packet))
            self.packets += 1
        if self._queue and self._timer is None:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time() + 0.0002  # asyncio may wake a hair early; do not spin for it
        while self._queue and self._queue[0][0] <= now:
            _, packet = self._queue.popleft()
            with contextlib.suppress(OSError):  # what the receiving stack refuses is lost, as on a wire
                os.write(self._dst, packet)
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)


def delay_main(ns_a: str, dev_a: str, ns_b: str, dev_b: str, delay_ms: float) -> int:
    enter_netns(ns_a)
    fd_a = open_tun(dev_a)
    enter_netns(ns_b)
    fd_b = open_tun(dev_b)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        DelayLine(loop, fd_a, fd_b, delay_ms / 1000)
        DelayLine(loop, fd_b, fd_a, delay_ms / 1000)
        print("ready", flush=True)
        await stop.wait()

    asyncio.run(serve())
    return 0


# ---------------------------------------------------------------------------------------------------------------
# The lab: two namespaces, a delayed link, nginx; torn down at exit


NGINX_CONF = """\
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    types {{ application/xml xml; }}
    default_type application/octet-stream;
    log_format bench '$connection\\t$connection_requests\\t$server_protocol\\t$ssl_protocol\\t$status\\t'
                     '$body_bytes_sent\\t$request_uri';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    root {tree};
    server {{
        listen {ip}:80;
    }}
    server {{
        listen {ip}:443 ssl http2;   # nginx 1.22: http2 is a listen parameter
        ssl_certificate {cert};
        ssl_certificate_key {cert};
        ssl_protocols TLSv1.2 TLSv1.3;   # 1.22 leaves TLSv1.3 out by default
    }}
}}
"""


@dataclass(frozen=True)
class LogLine:
    connection: int
    requests: int
    protocol: str
    tls: str
    status: int
    body: int
    uri: str


class AccessLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def take(self) -> list[LogLine]:
        """The lines written since the last call."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        out = []
        for line in complete.decode().splitlines():
            c, r, proto, tls, status, body, uri = line.split("\t")
            out.append(LogLine(int(c), int(r), proto, tls, int(status), int(body), uri))
        return out


@dataclass
class Lab:
    """The shared namespace pair of the tests (tests/support/peers/netns.py: two namespaces, a veth between
    them, every process stopped by PID and both namespaces deleted at the end), with the delay added here."""

    work: Path
    delay_ms: float
    emulation: str = ""
    netem_error: str = ""
    _pair: NetnsPair | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def pair(self) -> NetnsPair:
        assert self._pair is not None, "Lab.up() first"
        return self._pair

    @property
    def server_ip(self) -> str:
        return self.pair.server_ip

    def close(self) -> None:
        """Stop what was started, then delete the namespaces (which removes their links). Idempotent."""
        self._stack.close()

    def up(self, emulation: str) -> None:
        # Imported here, not at the top: the `_client` worker's start-up is measured ("fresh process").
        from tests.support.peers.http import PeerStartError
        from tests.support.peers.netns import running_netns

        (self.work / "netns").mkdir()
        try:
            self._pair = self._stack.enter_context(running_netns(self.work / "netns"))
        except PeerStartError as exc:
            raise BenchError(str(exc)) from exc
        if emulation in ("auto", "netem"):
            try:
                self._netem_on_veth()
                self.emulation = f"veth pair + tc netem delay {self.delay_ms:g}ms on both ends"
                return
            except Precondition as exc:
                if emulation == "netem":
                    raise
                self.netem_error = str(exc)
        self._tun_line()
        why = f"tc netem unavailable: {self.netem_error}" if self.netem_error else "--emulation tun"
        self.emulation = f"TUN pair + userspace delay line, {self.delay_ms:g} ms each way ({why})"

    def _netem_on_veth(self) -> None:
        errors = []
        for ns, dev in ((self.pair.server_ns, self.pair.server_if), (self.pair.client_ns, self.pair.client_if)):
            proc = self._netem(ns, dev)
            if proc.returncode != 0 and shutil.which("modprobe"):
                loaded = sh("modprobe", "sch_netem", check=False)
                errors.append(f"modprobe sch_netem: exit {loaded.returncode} {loaded.stderr.strip()}".strip())
                proc = self._netem(ns, dev)
            if proc.returncode != 0:
                errors.insert(0, f"`tc qdisc add dev {dev} root netem delay {self.delay_ms:g}ms`: "
                                 f"{proc.stderr.strip()}")
                if not shutil.which("modprobe"):
                    errors.append("no modprobe")
                raise Precondition("; ".join([*errors, "the kernel has no sch_netem and none could be loaded"]))

    def _netem(self, ns: str, dev: str) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay",
                  f"{self.delay_ms:g}ms", check=False)

    def _tun_line(self) -> None:
        """The pair's addresses move from the veth (deleted: undelayed, it would be a second path) to a TUN
        device in each namespace, joined by the delay line."""
        pair = self.pair
        sh("ip", "-n", pair.server_ns, "link", "del", pair.server_if)
        t_srv, t_cli = f"pfbs{os.getpid()}", f"pfbc{os.getpid()}"
        with (self.work / "delay-line.log").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "_delay", pair.server_ns, t_srv, pair.client_ns,
                 t_cli, str(self.delay_ms)], stdout=subprocess.PIPE, stderr=err)
        self._stack.callback(_stop, proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            raise BenchError(f"the delay line did not start: {(self.work / 'delay-line.log').read_text().strip()}")
        for ns, dev, ip in ((pair.server_ns, t_srv, pair.server_ip), (pair.client_ns, t_cli, pair.client_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/{pair.prefix}", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def start_nginx(self, tree: Path, cert: Path) -> AccessLog:
        from tests.support.peers.http import PeerStartError
        from tests.support.peers.netns import Side

        prefix = self.work / "nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=prefix, tree=tree, cert=cert, ip=self.server_ip))
        nginx = self.pair.start(Side.SERVER, "nginx", [NGINX, "-p", str(prefix), "-c", str(conf), "-e",
                                                       str(prefix / "nginx-error.log"), "-g", "daemon off;"],
                                extra_logs=[prefix / "nginx-error.log"])
        try:
            nginx.wait_bound("tcp", 80, 443)
        except PeerStartError as exc:
            raise BenchError(str(exc)) from exc
        return AccessLog(prefix / "access.log")

    def in_client(self, *argv: str, timeout: float = CLIENT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return self.pair.run_in_client(argv, timeout=timeout)

    def worker(self, *args: str) -> dict[str, object]:
        proc = self.in_client(sys.executable, str(Path(__file__).resolve()), *args)
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = None
        if proc.returncode != 0 or not isinstance(data, dict):
            raise BenchError(f"worker {args[0]} failed (exit {proc.returncode}): "
                             f"{proc.stdout.strip()} {proc.stderr.strip()}")
        return data


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Scenario:
    label: str
    scheme: str
    concurrency: int
    warm: bool = True
    judged: bool = True  # against <= TARGET_RTTS; the one-by-one baselines are the contrast
    process: str = "daemon"  # see client_main


SCENARIOS = [
    Scenario("HTTPS (h2), http.concurrency 4 (default)", "https", 4),
    Scenario("HTTPS (h2), concurrency 4, fresh process (provd start, no daemon)", "https", 4, warm=False,
             process="fresh"),
    Scenario("HTTP/1.1, http.concurrency 4 (default)", "http", 4),
    Scenario("HTTP/1.1, http.concurrency 8", "http", 8),
    Scenario("HTTPS (h2), http.concurrency 8", "https", 8),
    # http.concurrency bounds connections: over HTTP/2 one connection still multiplexes every sibling.
    Scenario("HTTPS (h2), http.concurrency 1 (one connection, multiplexed)", "https", 1, warm=False),
    Scenario("HTTP/1.1, one by one (http.concurrency 1)", "http", 1, warm=False, judged=False),
]


@dataclass(frozen=True)
class Run:
    ms: float
    cpu_ms: float
    done_ms: list[float]
    schema_ms: float
    statuses: list[object]
    lines: list[LogLine]

    @property
    def body_bytes(self) -> int:
        return sum(line.body for line in self.lines)

    @property
    def connections(self) -> int:
        return len({line.connection for line in self.lines})


@dataclass
class Result:
    scenario: Scenario
    cold: list[Run] = field(default_factory=list)
    warm: list[Run] = field(default_factory=list)


def one_run(lab: Lab, log: AccessLog, config: Path, url: str, process: str) -> Run:
    log.take()
    data = lab.worker("_client", str(config), url, process)
    lines = log.take()
    files = data.get("files")
    done = data.get("done_ms")
    ms, cpu_ms, schema_ms = data.get("ms"), data.get("cpu_ms"), data.get("schema_ms")
    if not (isinstance(files, list) and isinstance(done, list) and isinstance(ms, float)
            and isinstance(cpu_ms, float) and isinstance(schema_ms, float)):
        raise BenchError(f"worker answered {data!r}")
    statuses = [f.get("status") for f in files if isinstance(f, dict)]
    if len(files) != FILES + 1:
        raise BenchError(f"{url}: {len(files)} files fetched, expected {FILES + 1}")
    return Run(ms, cpu_ms, [float(x) for x in done], schema_ms, statuses, lines)


def measure(lab: Lab, log: AccessLog, scenario: Scenario, runs: int, ca: Path) -> Result:
    result = Result(scenario)
    url = f"{scenario.scheme}://{lab.server_ip}/provisioning.xml"
    for i in range(runs):
        state = lab.work / "clients" / f"{scenario.scheme}-c{scenario.concurrency}-{scenario.process}-{i}"
        state.mkdir(parents=True)
        config = state.with_suffix(".json")
        write_config(config, state, ca, scenario.concurrency)
        result.cold.append(one_run(lab, log, config, url, scenario.process))
        if scenario.warm:
            result.warm.append(one_run(lab, log, config, url, scenario.process))
    return result


def median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.ms)
    return ordered[(len(ordered) - 1) // 2]


# ---------------------------------------------------------------------------------------------------------------
# Reporting




def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {platform.node()} {platform.machine()}, kernel {platform.release()}, "
            f"nproc {len(os.sched_getaffinity(0))}, load average {load}; Python {platform.python_version()}")


def versions() -> str:
    import h2
    import httpcore
    import httpx

    nginx = sh(NGINX, "-v", check=False).stderr.strip().removeprefix("nginx version: ")
    return f"httpx {httpx.__version__}, httpcore {httpcore.__version__}, h2 {h2.__version__}, {nginx}"


def rtt_rows(results: list[Result], rtt: float) -> list[Row]:
    rows = []
    for res in results:
        sc = res.scenario
        for kind, runs in (("cold", res.cold), ("warm", res.warm)):
            if not runs:
                continue
            ms = statistics.median(r.ms for r in runs)
            rtts = ms / rtt
            if sc.judged:
                target, met = f"<= {TARGET_RTTS} RTT", round(rtts) <= TARGET_RTTS
            else:
                target, met = f">= {ONE_BY_ONE_RTTS} RTT", rtts >= ONE_BY_ONE_RTTS
            rows.append(Row(f"{sc.label}, {kind}", f"{ms:.0f} ms = {rtts:.2f} RTT", target, met))
    return rows


def share_rows(results: list[Result]) -> list[Row]:
    rows = []
    for res in results:
        if not res.warm:
            continue
        cold, warm = res.cold[0].body_bytes, res.warm[0].body_bytes
        share = 100.0 * warm / cold if cold else float("inf")
        worst = max(100.0 * w.body_bytes / c.body_bytes if c.body_bytes else float("inf")
                    for c, w in zip(res.cold, res.warm, strict=True))
        rows.append(Row(f"body bytes, 2nd run / 1st, {res.scenario.label}",
                        f"{warm} / {cold} B = {share:.1f} % (worst of {len(res.warm)}: {worst:.1f} %)",
                        f"<= {TARGET_SHARE:g} %", share <= TARGET_SHARE and worst <= TARGET_SHARE))
    return rows


def describe(run: Run, rtt: float) -> str:
    protocols = sorted({f"{line.protocol}{'/' + line.tls if line.tls != '-' else ''}" for line in run.lines})
    statuses = collections.Counter(line.status for line in run.lines)
    done = " ".join(f"{d / rtt:.2f}" for d in run.done_ms)
    return (f"{', '.join(protocols)}; {run.connections} connection(s) for {len(run.lines)} requests; "
            f"statuses {dict(sorted(statuses.items()))}; client CPU {run.cpu_ms:.0f} ms of {run.ms:.0f}; "
            f"files done at RTT: {done}")


def end_to_end(lab: Lab, ca: Path) -> tuple[Row, str]:
    """`provd start --url … --json` in the client namespace: the whole path (fetch, apply, commit)."""
    state = lab.work / "clients" / "e2e"
    state.mkdir(parents=True)
    config = state.with_suffix(".json")
    write_config(config, state, ca, 4)
    url = f"https://{lab.server_ip}/provisioning.xml"
    started = time.perf_counter()
    proc = lab.in_client(*provd_argv(), "--config", str(config), "start", "--url", url, "--json")
    wall = time.perf_counter() - started
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return (Row("`provd start --url … --json` (end to end)", f"exit {proc.returncode}, no report", "applied",
                    False), proc.stderr.strip())
    files = report.get("files") or []
    outcome = report.get("outcome")
    detail = (f"outcome {outcome}, exit {proc.returncode}, {len(files)} files, sections changed "
              f"{report.get('sections_changed')}, generation {report.get('generation')}, errors "
              f"{report.get('errors')}, wall {wall:.2f} s incl. start-up")
    met = proc.returncode == 0 and outcome == "applied" and len(files) == FILES + 1
    return Row("`provd start --url … --json` (end to end)", f"{outcome}, {len(files)} files", "applied", met), detail


# ---------------------------------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, lab: Lab) -> int:
    import trustme

    work = lab.work
    tree = work / "tree"
    write_tree(tree)
    ca = trustme.CA()
    ca_file, cert_file = work / "ca.pem", work / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    files = [tree / "provisioning.xml", *(tree / f"f{n}.xml" for n in range(1, FILES + 1))]
    checked = subprocess.run([*provd_argv(), "validate", *map(str, files)], capture_output=True, text=True,
                             check=False)
    if checked.returncode != 0:
        raise BenchError(f"the served files do not validate: {checked.stdout}{checked.stderr}")
    tree_bytes = sum(f.stat().st_size for f in files)

    lab.up(args.emulation)
    ca.issue_cert(lab.server_ip).private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    log = lab.start_nginx(tree, cert_file)
    probe = lab.worker("_probe", lab.server_ip, "80,443", "5")
    icmp = probe.get("icmp_ms")
    tcp = probe.get("tcp_ms")
    if not (isinstance(icmp, list) and isinstance(tcp, dict)):
        raise BenchError(f"probe answered {probe!r}")
    rtt = statistics.median(float(x) for x in icmp)
    connect = statistics.median(float(x) for x in tcp["80"])

    print(f"provd fetch benchmark: a reference file listing {FILES} patches ({tree_bytes} bytes in all), "
          f"median of {args.runs} runs each", flush=True)
    print(f"link: {lab.emulation}", flush=True)
    results = []
    for scenario in SCENARIOS:
        if args.verbose:
            print(f"  measuring {scenario.label} ...", file=sys.stderr, flush=True)
        results.append(measure(lab, log, scenario, args.runs, ca_file))
    e2e_row, e2e_detail = end_to_end(lab, ca_file)

    expected = args.delay_ms * 2
    rows = [
        Row("RTT, ICMP echo (first; median of 5)", f"{float(icmp[0]):.1f} ms; {rtt:.1f} ms",
            f"~{expected:g} ms", abs(rtt - expected) <= 0.2 * expected),
        Row("TCP connect to :80, median of 5", f"{connect:.1f} ms = {connect / rtt:.2f} RTT", "", None),
        *rtt_rows(results, rtt),
        *share_rows(results),
        e2e_row,
    ]
    print(machine())
    print(versions())
    print_table(rows)
    print("RTT figures: wall time from the call of ChainFetcher.fetch() to its return / the median ICMP RTT. "
          "ok when it rounds to <= 4 (4 round trips, under half an RTT of local work: TLS, h2, parsing, cache "
          "writes). Each run is a new client process with a new HttpClient and, cold, an empty cache; before "
          "the timed call it has done once what a daemon does once (reference XSD compiled, median "
          f"{statistics.median(r.cold[0].schema_ms for r in results):.0f} ms; httpcore's backend imported), "
          "except in the 'fresh process' row.")
    print("where the time goes (the median run of each):")
    for res in results:
        for kind, runs in (("cold", res.cold), ("warm", res.warm)):
            if runs:
                print(f"  {res.scenario.label}, {kind}: {describe(median_run(runs), rtt)}")
    print(f"  end to end: {e2e_detail}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["_client"]:
        return client_main(argv[1], argv[2], argv[3])
    if argv[:1] == ["_probe"]:
        return probe_main(argv[1], [int(p) for p in argv[2].split(",")], int(argv[3]), 10.0)
    if argv[:1] == ["_delay"]:
        return delay_main(argv[1], argv[2], argv[3], argv[4], float(argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="repetitions per scenario (median reported)")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay (default 25)")
    parser.add_argument("--emulation", choices=("auto", "netem", "tun"), default="auto",
                        help="netem: tc netem only; tun: the userspace delay line; auto: netem, else tun")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        if os.geteuid() != 0:
            raise Precondition("run as root (network namespaces)")
        for tool in ("ip", "tc", NGINX):
            if not shutil.which(tool):
                raise Precondition(f"{tool} not found (Debian packages iproute2, nginx)")
    except Precondition as exc:
        print(f"bench_fetch: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab of tests/support/peers (not in workers)
    work = Path(tempfile.mkdtemp(prefix="provd-bench-fetch-"))
    lab = Lab(work, args.delay_ms)
    atexit.register(lab.close)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    try:
        return bench(args, lab)
    except Precondition as exc:
        print(f"bench_fetch: {exc}", file=sys.stderr)
        return 2
    except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"bench_fetch: failed: {exc} (logs in {work})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        lab.close()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
