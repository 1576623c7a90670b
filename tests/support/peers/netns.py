"""A pair of network namespaces joined by a veth link — the phone's LAN — and the processes run inside them.

Owns the namespaces it creates (unique names per session and test), every process started through it (stopped
by PID at teardown, even when the test failed) and a wire recorder per request. It never touches the host's
interfaces, routes, /etc/resolv.conf or any namespace it did not create; all addresses exist only inside.

    server ns: veth-srv 10.123.0.1/24 (+ 224.0.1.75 autojoin)  ──  client ns: veth-cli 10.123.0.50/24, no default route

With `ipv6` (Ipv6.DUAL or Ipv6.ONLY) both sides also get 2001:db8:7b::1/64 and ::50/64 and their link-local
addresses, duplicate address detection off (usable at once, as after DAD on a real LAN); Ipv6.ONLY leaves the
client without IPv4 (the server keeps its IPv4 address: a DHCPv4 server there hears nothing).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import pytest

from tests.support.peers.http import PeerStartError, peer_failure, stop_popen
from tests.support.polling import wait_for_matches

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "ip"
SERVER_IP = "10.123.0.1"
CLIENT_IP = "10.123.0.50"
PREFIX = 24
SERVER_IF = "veth-srv"
CLIENT_IF = "veth-cli"
CLIENT_MAC = "00:09:52:00:00:0e"  # Auerswald OUI; <MACADR> expands to 00095200000E
PNP_GROUP = "224.0.1.75"  # sip.mcast.net
SERVER_IP6 = "2001:db8:7b::1"  # RFC 3849 documentation prefix
CLIENT_IP6 = "2001:db8:7b::50"
PREFIX6 = 64
NETTOOLS = Path(__file__).with_name("nettools.py")

# provd-<pid of the pytest process>-<random>-<n>-srv|cli: unique per session and test, and the owner is known.
_SESSION = f"{os.getpid()}-{secrets.token_hex(2)}"
_COUNTER = itertools.count(1)
_NAME = re.compile(r"^provd-(\d+)-[0-9a-f]{4}-\d+-(srv|cli)$")


class Ipv6(Enum):
    OFF = "off"
    DUAL = "dual"
    ONLY = "only"


class Side(Enum):
    SERVER = "server"
    CLIENT = "client"


def nettools_argv(*args: str) -> list[str]:
    """Run `nettools.py` (probes, recorder, small responders) with this venv's python, isolated (`-I`):
    otherwise `tests/support/peers/http.py` would shadow the stdlib `http` package on its sys.path."""
    return [sys.executable, "-I", str(NETTOOLS), *args]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, even by SIGKILL (no teardown then).
    `ip netns exec` execs its command in the same process, so the signal reaches the server itself."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


# --- readiness: what a process holds, seen through its own namespace ------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):  # the process may be gone: callers poll its exit
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    return inodes


def bound_ports(pid: int, proto: str) -> set[int]:
    """Local ports of `pid`'s sockets: `proto` "udp" / "udp6" (any bound socket) or "tcp" / "tcp6" (listening
    only), IPv4 or IPv6. /proc/PID/net/* shows the table of the process's own network namespace, not the
    caller's."""
    inodes = _socket_inodes(pid)
    ports = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()  # sl local_address rem_address st … inode
            if fields[9] in inodes and (proto.startswith("udp") or fields[3] == "0A"):  # 0A = TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def has_packet_socket(pid: int) -> bool:
    """Whether `pid` holds an AF_PACKET socket (ISC dhcpd's LPF receive socket)."""
    inodes = _socket_inodes(pid)
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]:
            if line.split()[-1] in inodes:
                return True
    return False


class NsProcess:
    """One process started in a namespace; stopped by PID (SIGTERM, then SIGKILL) and reaped at teardown."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], logs: Sequence[Path]) -> None:
        self.name = name
        self.popen = popen
        self.logs = list(logs)
        self.started = time.monotonic()
        self.ready_after_s: float | None = None  # measured start-up time, set by the wait_* methods

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        stop_popen(self.popen)

    def wait(self, timeout: float) -> int:
        """Its exit code once it has exited on its own.

        Raises:
            subprocess.TimeoutExpired: still running after `timeout` seconds.
        """
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        return "\n".join(log.read_text(errors="replace") for log in self.logs if log.exists())

    def failure(self, what: str) -> PeerStartError:
        return peer_failure(self.name, self.pid, self.logs, what)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll `ready` until it holds; fail early, with the logs, if the process exits first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.popen.poll() is not None:
                raise self.failure(f"exited with {self.popen.returncode} before {what}")
            if time.monotonic() > deadline:
                raise self.failure(f"not {what} after {timeout} s")
            time.sleep(0.002)
        self.ready_after_s = time.monotonic() - self.started

    def wait_bound(self, proto: str, *ports: int, timeout: float = START_TIMEOUT_S) -> None:
        self.wait_until(lambda: set(ports) <= bound_ports(self.pid, proto), f"bound to {proto} {ports}", timeout)

    def wait_line(self, expected: str, timeout: float = START_TIMEOUT_S) -> None:
        """Read stdout (a pipe) until a line equal to `expected` (the child's "I am ready" line)."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.popen.stdout], [], [], max(remaining, 0))
            line = self.popen.stdout.readline() if ready else b""
            if line.strip() == expected.encode():
                self.ready_after_s = time.monotonic() - self.started
                return
            if not line or remaining <= 0:
                raise self.failure(f"did not print {expected!r} within {timeout} s (exit {self.popen.poll()})")


# --- the wire recorder ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WirePacket:
    """One IPv4/UDP datagram seen on an interface (see `nettools.py capture`)."""

    time: float  # time.monotonic() in the recorder: the same clock as the tests'
    outgoing: bool  # sent by this side (else received from the peer)
    src: str
    sport: int
    dst: str
    dport: int
    ttl: int
    payload: bytes

    @property
    def start_line(self) -> str:
        """The first line of the payload (a SIP request or status line)."""
        return self.payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        """The first SIP header `name` (case-insensitive, no compact forms), its value stripped; None if absent."""
        head = self.payload.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        for line in head.split("\r\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def body(self) -> bytes:
        return self.payload.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.payload else b""


class Capture:
    """Every UDP datagram to or from `ports` on one side's veth since the recorder started."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def packets(self) -> list[WirePacket]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.endswith("}"):  # a line being written is skipped until complete
                raw: dict[str, Any] = json.loads(line)
                out.append(WirePacket(time=raw["time"], outgoing=raw["outgoing"], src=raw["src"], sport=raw["sport"],
                                      dst=raw["dst"], dport=raw["dport"], ttl=raw["ttl"],
                                      payload=bytes.fromhex(raw["payload"])))
        return out

    def wait_for(self, predicate: Callable[[WirePacket], bool], count: int = 1,
                 timeout: float = 5.0) -> list[WirePacket]:
        """The matching packets once at least `count` match.

        Raises:
            TimeoutError: fewer than `count` matched within `timeout` seconds.
        """
        return wait_for_matches(self.packets, predicate, count, timeout, "packets")


# --- the pair ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces and the veth between them. `run_in_*` / `spawn_in_*` run argv inside one of them
    (`ip netns exec`); spawned processes are stopped at teardown. `workdir` holds configs and logs."""

    server_ns: str
    client_ns: str
    server_ip: str
    client_ip: str
    prefix: int
    server_if: str
    client_if: str
    client_mac: str  # "00:09:52:00:00:0e"
    workdir: Path
    _stack: contextlib.ExitStack = field(repr=False, compare=False)
    ipv6: Ipv6 = Ipv6.OFF
    _ports: Iterator[int] = field(repr=False, compare=False, default_factory=lambda: itertools.count(0))

    @property
    def client_mac_marker(self) -> str:
        """The MAC as <MACADR>/{mac} expand it: upper case, no separators."""
        return self.client_mac.replace(":", "").upper()

    @property
    def server_ip6(self) -> str:
        return SERVER_IP6

    @property
    def client_ip6(self) -> str:
        return CLIENT_IP6

    def link_local(self, side: Side) -> str:
        """The fe80:: address the kernel gave one side's veth."""
        iface = self.server_if if side is Side.SERVER else self.client_if
        out = self.run(side, [IP, "-6", "-o", "addr", "show", "dev", iface, "scope", "link"], check=True).stdout
        match = re.search(r"inet6 (fe80::[0-9a-f:]+)/", out)
        if match is None:
            raise PeerStartError(f"no link-local address on {iface}: {out.strip()}")
        return match.group(1)

    def ns(self, side: Side) -> str:
        return self.server_ns if side is Side.SERVER else self.client_ns

    def exec_argv(self, side: Side, argv: Sequence[str]) -> list[str]:
        return [IP, "netns", "exec", self.ns(side), *argv]

    def run(self, side: Side, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None,
            check: bool = False, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.exec_argv(side, argv), input=input, capture_output=True, text=True,
                              timeout=timeout, check=check, env=None if env is None else dict(env), cwd=cwd)

    def run_in_client(self, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None,
                      check: bool = False, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run to completion inside the client namespace; stdout/stderr captured as text."""
        return self.run(Side.CLIENT, argv, timeout=timeout, input=input, check=check, env=env, cwd=cwd)

    def run_in_server(self, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None,
                      check: bool = False, env: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(Side.SERVER, argv, timeout=timeout, input=input, check=check, env=env, cwd=cwd)

    def spawn(self, side: Side, argv: Sequence[str], *, stdin: int | IO[Any] | None = subprocess.DEVNULL,
              stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
              env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start argv inside a namespace; it is stopped (SIGTERM, SIGKILL after 5 s) by PID at teardown."""
        popen = subprocess.Popen(self.exec_argv(side, argv), stdin=stdin, stdout=stdout, stderr=stderr,
                                 env=None if env is None else dict(env), cwd=cwd, preexec_fn=_die_with_parent)
        self._stack.callback(NsProcess(argv[0], popen, []).stop)
        return popen

    def spawn_in_client(self, argv: Sequence[str], *, stdin: int | IO[Any] | None = subprocess.DEVNULL,
                        stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
                        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(Side.CLIENT, argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd)

    def spawn_in_server(self, argv: Sequence[str], *, stdin: int | IO[Any] | None = subprocess.DEVNULL,
                        stdout: int | IO[Any] | None = None, stderr: int | IO[Any] | None = None,
                        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(Side.SERVER, argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd)

    def start(self, side: Side, name: str, argv: Sequence[str], *, ready_line: bool = False,
              extra_logs: Sequence[Path] = ()) -> NsProcess:
        """Start a peer: stdout and stderr go to `workdir/<name>.log` (stdout to a pipe when the peer announces
        readiness with a line); its cwd is `workdir` so stray files land there. Stopped at teardown."""
        log = self.unique_path(f"{name}.log")
        with log.open("ab") as out:
            popen = subprocess.Popen(self.exec_argv(side, argv), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if ready_line else out, stderr=out, cwd=self.workdir,
                                     preexec_fn=_die_with_parent)
        process = NsProcess(name, popen, [log, *extra_logs])
        self._stack.callback(process.stop)
        return process

    def unique_path(self, name: str) -> Path:
        """A path in `workdir` that no other peer of this pair uses: `name`, else `name` with a number."""
        path = self.workdir / name
        for n in itertools.count(2):
            if not path.exists():
                path.touch()
                return path
            stem, dot, suffix = name.partition(".")
            path = self.workdir / f"{stem}-{n}{dot}{suffix}"
        raise AssertionError("unreachable")

    def port_block(self) -> int:
        """An offset (0, 10, 20 …) distinct per call: for tools that bind auxiliary ports (sipp's control and
        media ports) so two of them can run in one namespace."""
        return next(self._ports) * 10

    def add_server_ip(self, ip: str) -> None:
        """Another address on the server veth (e.g. a sender that is not on an allowlist)."""
        subprocess.run([IP, "-n", self.server_ns, "addr", "add", f"{ip}/{self.prefix}", "dev", self.server_if],
                       check=True, capture_output=True)

    def capture(self, ports: Iterable[int] = (), side: Side = Side.SERVER, family: int | None = None) -> Capture:
        """Record every UDP datagram to or from `ports` (all UDP when empty) on one side's veth, IPv4 and IPv6
        (`family` 4 or 6: that one only), from now until teardown (`nettools.py capture`, an AF_PACKET
        socket: sees what arrives before any server reads it)."""
        path = self.unique_path(f"capture-{side.value}.jsonl")
        argv = nettools_argv("capture", "--iface", self.server_if if side is Side.SERVER else self.client_if,
                             "--out", str(path), *(f"--port={port}" for port in ports),
                             *([f"--family={family}"] if family else []))
        recorder = self.start(side, f"capture-{side.value}", argv, ready_line=True)
        recorder.wait_line("ready")
        return Capture(path)


def _ip_batch(commands: str, netns: str | None = None) -> None:
    argv = [IP, *(["-n", netns] if netns else []), "-batch", "-"]
    proc = subprocess.run(argv, input=commands, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PeerStartError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}\n{commands}")


def _netns_names() -> list[str]:
    listing = subprocess.run([IP, "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def _netns_pids(name: str) -> list[int]:
    out = subprocess.run([IP, "netns", "pids", name], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split() if pid.isdigit()]


def _sweep_stale() -> None:
    """Delete namespaces this module named for a test process that no longer exists (killed without teardown).
    Namespaces with processes in them are left alone: those processes are not ours to end."""
    for name in _netns_names():
        match = _NAME.match(name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            if not _netns_pids(name):
                subprocess.run([IP, "netns", "del", name], capture_output=True, check=False)
        except PermissionError:
            pass  # that pid exists (another user's process): its owner may still be running


_swept = False


@contextlib.contextmanager
def running_netns(workdir: Path, ipv6: Ipv6 = Ipv6.OFF) -> Iterator[NetnsPair]:
    """Create the pair (≈15 ms; ≈25 ms with IPv6), yield it, then stop every process started through it and
    delete both namespaces (the veth goes with them), whatever happened."""
    global _swept
    if not _swept:
        _swept = True
        _sweep_stale()
    n = next(_COUNTER)
    server_ns, client_ns = f"provd-{_SESSION}-{n}-srv", f"provd-{_SESSION}-{n}-cli"
    with contextlib.ExitStack() as stack:
        stack.callback(_delete_netns, server_ns, client_ns)
        # Created directly inside the namespaces: nothing, not even for a moment, appears among the host's links.
        _ip_batch(f"netns add {server_ns}\nnetns add {client_ns}\n")
        if ipv6 is not Ipv6.OFF:  # before the veth exists, so its addresses (link-local too) skip DAD
            for ns in (server_ns, client_ns):
                subprocess.run([IP, "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                                "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.default.accept_ra=0"],
                               check=True, capture_output=True)
        _ip_batch(f"link add {SERVER_IF} netns {server_ns} type veth peer name {CLIENT_IF} netns {client_ns}\n")
        # autojoin: the server kernel joins 224.0.1.75 on the veth, so a multicast SUBSCRIBE is delivered to a
        # socket bound to 0.0.0.0:5060 (sipp without -i) instead of being dropped.
        _ip_batch(f"link set lo up\nlink set {SERVER_IF} up\naddr add {SERVER_IP}/{PREFIX} dev {SERVER_IF}\n"
                  f"addr add {PNP_GROUP}/32 dev {SERVER_IF} autojoin\n", server_ns)
        # No default route on purpose: provd must pick the interface with IP_MULTICAST_IF / SO_BINDTODEVICE.
        _ip_batch(f"link set lo up\nlink set {CLIENT_IF} address {CLIENT_MAC}\nlink set {CLIENT_IF} up\n"
                  + (f"addr add {CLIENT_IP}/{PREFIX} dev {CLIENT_IF}\n" if ipv6 is not Ipv6.ONLY else ""), client_ns)
        if ipv6 is not Ipv6.OFF:
            _ip_batch(f"addr add {SERVER_IP6}/{PREFIX6} dev {SERVER_IF} nodad\n", server_ns)
            _ip_batch(f"addr add {CLIENT_IP6}/{PREFIX6} dev {CLIENT_IF} nodad\n", client_ns)
        processes = stack.enter_context(contextlib.ExitStack())  # closed first: processes before namespaces
        yield NetnsPair(server_ns=server_ns, client_ns=client_ns, server_ip=SERVER_IP, client_ip=CLIENT_IP,
                        prefix=PREFIX, server_if=SERVER_IF, client_if=CLIENT_IF, client_mac=CLIENT_MAC,
                        workdir=workdir, ipv6=ipv6, _stack=processes)


def _delete_netns(*names: str) -> None:
    for name in names:
        # Safety net: a process started inside by a test (not through spawn/start) would keep the namespace
        # alive after its name is gone. The namespace is this session's own, so whatever runs in it is too.
        for pid in _netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run([IP, "netns", "del", name], capture_output=True, check=False)


def _pair(tmp_path_factory: pytest.TempPathFactory, ipv6: Ipv6) -> Iterator[NetnsPair]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with running_netns(tmp_path_factory.mktemp("netns"), ipv6) as pair:
        yield pair


@pytest.fixture
def netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsPair]:
    """A fresh namespace pair per test (see `NetnsPair`); requires root."""
    yield from _pair(tmp_path_factory, Ipv6.OFF)


@pytest.fixture
def netns6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsPair]:
    """A pair whose client has IPv6 only (Ipv6.ONLY); requires root."""
    yield from _pair(tmp_path_factory, Ipv6.ONLY)


@pytest.fixture
def netns_dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsPair]:
    """A dual-stack pair (Ipv6.DUAL); requires root."""
    yield from _pair(tmp_path_factory, Ipv6.DUAL)
