"""SIP peers in the server namespace: the multicast PnP responder (sipp) and the check-sync NOTIFY sender (sipp,
sipsak), as a PBX plays them.

Owns the sipp scenarios it writes (in the pair's workdir), the tools' message logs and their processes. sipp's
auxiliary ports (control, media) are moved per instance, so a responder and a sender share one namespace.
sipp 3.6.1 quirks honoured: no `-i <ip>` for the responder (a socket bound to an address never receives the
multicast SUBSCRIBE; `-i 0.0.0.0` binds the wildcard and spares the hostname lookup), throw-away `ereg` captures
all go to `dummy`, `[len]` pads Content-Length and counts the final CRLF.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.peers.http import PeerStartError
from tests.support.peers.netns import IP, PNP_GROUP, Capture, NetnsPair, NsProcess, Side, WirePacket, nettools_argv

PNP_PORT = 5060
CHECK_SYNC_FROM_PORT = 5070  # the PBX's source port in the lab and in PROTOCOLS §2.2
# Final responses the sipp sender recognises by name; any other still ends up in the result (from its message log).
KNOWN_STATUSES = (202, 400, 401, 403, 404, 405, 407, 415, 480, 481, 486, 488, 489, 500, 501, 503, 200)


class PnpMode(Enum):
    NOTIFY = "notify"  # sipp: 200 OK, then NOTIFY in the SUBSCRIBE's dialog (same Call-ID), body as given
    OTHER_CALL_ID = "other-call-id"  # sipp: the NOTIFY carries a fresh Call-ID (FreeSWITCH snom-pnpd.pl)
    EXTERNAL_BODY = "external-body"  # sipp: `message/external-body;access-type="URL";URL="<body>"` (RFC 4483)
    OTHER_PORT = "other-port"  # Python: 200 OK from 5060, NOTIFY from an ephemeral port (pnpserv.py, pnpd.lua)
    SILENT = "silent"  # sipp: receives and logs, never answers


@dataclass(frozen=True)
class SippMessage:
    """One entry of sipp's -trace_msg log."""

    timestamp: str  # sipp's wall-clock stamp, "2026-01-31 12:00:00.123456"
    sent: bool
    text: str  # the SIP message, lines joined with "\n"

    @property
    def start_line(self) -> str:
        return self.text.split("\n", 1)[0]


_TRACE_SEPARATOR = re.compile(r"^-{20,} (\S+ \S+)$", re.MULTILINE)


def parse_sipp_messages(path: Path) -> list[SippMessage]:
    """sipp's `-trace_msg` file: entries headed by a dashed line with a timestamp, then `UDP message sent (N
    bytes):` or `UDP message received [N] bytes :`, a blank line and the message."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace").replace("\r\n", "\n")
    parts = _TRACE_SEPARATOR.split(text)
    out = []
    for timestamp, chunk in zip(parts[1::2], parts[2::2], strict=True):
        head, _, message = chunk.lstrip("\n").partition("\n")
        out.append(SippMessage(timestamp=timestamp, sent=" sent " in head, text=message.strip("\n") + "\n"))
    return out


def _sipp_binary() -> str:
    found = shutil.which("sipp")
    if found is None:
        raise PeerStartError("sipp is not installed (sip-tester): run scripts/setup.sh as root (APT_PACKAGES)")
    return found


def _aux_ports(pair: NetnsPair) -> list[str]:
    """Control (-cp, default 8888) and media (-mp, default 6000, also +2) ports distinct per sipp in a pair."""
    offset = pair.port_block()
    return ["-cp", str(18888 + offset), "-mp", str(16000 + offset)]


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


# --- the PnP responder ------------------------------------------------------------------------------------------

_PNP_RECV = """  <recv request="SUBSCRIBE" crlf="true">
    <action>
      <ereg regexp="ua-profile" search_in="hdr" header="Event:" check_it="true" assign_to="dummy"/>
      <ereg regexp="MAC(%3[aA])?([0-9A-Fa-f]{12})" search_in="msg" check_it="true" assign_to="dummy,dummy,mac"/>
      <ereg regexp="^ *(.*)$" search_in="hdr" header="From:" check_it="true" assign_to="dummy,sub_from"/>
      <ereg regexp="^ *(.*)$" search_in="hdr" header="To:" check_it="true" assign_to="dummy,sub_to"/>
      <ereg regexp="&lt;(sip:[^&gt;]*)&gt;" search_in="hdr" header="Contact:" check_it="true"
            assign_to="dummy,contact"/>
      <log message="SUBSCRIBE mac=[$mac] contact=[$contact]"/>
    </action>
  </recv>
"""


def _pnp_scenario(mode: PnpMode, notify_delay_ms: int) -> str:
    if mode is PnpMode.SILENT:
        body = '  <recv request="SUBSCRIBE"/>\n  <pause milliseconds="86400000"/>\n'
    else:
        call_id = "Call-ID: pnp-[pid]-[call_number]@[srv_ip]" if mode is PnpMode.OTHER_CALL_ID else "[last_Call-ID:]"
        # A NOTIFY outside the SUBSCRIBE's dialog: its 200 OK would carry a Call-ID sipp knows no call for,
        # so that scenario ends after sending (once, no retransmits) instead of waiting for the answer.
        notify_retrans, after = ('', '') if mode is PnpMode.OTHER_CALL_ID else \
            (' retrans="500"', '  <recv response="200"/>\n')
        body = f"""{_PNP_RECV}  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]pnp[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[srv_ip]:[local_port]>
      Expires: 0
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{notify_delay_ms}"/>
  <send{notify_retrans}>
    <![CDATA[

      NOTIFY [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [srv_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: [$sub_to];tag=[pid]pnp[call_number]
      To: [$sub_from]
      {call_id}
      CSeq: 1 NOTIFY
      Contact: <sip:[srv_ip]:[local_port]>
      Event: ua-profile;profile-type="device";vendor="OEM";model="OEM";version="1"
      Subscription-State: terminated;reason=timeout
      Content-Type: [ctype]
      Content-Length: [len]

      [body]
    ]]>
  </send>
{after}"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- tests/support/peers/sip.py: ua-profile PnP responder, mode {mode.value} -->
<scenario name="ua-profile PnP responder ({mode.value})">
{body}</scenario>
"""


@dataclass(frozen=True)
class PnpResponder:
    mode: PnpMode
    body: str
    content_type: str
    process: NsProcess
    capture: Capture  # every UDP datagram on the server veth since before the responder started
    message_log: Path  # sipp: -trace_msg (see `messages`); Python responder: JSON lines

    @property
    def startup_s(self) -> float | None:
        return self.process.ready_after_s

    def subscribes(self) -> list[WirePacket]:
        """The SUBSCRIBEs that reached the server, retransmits included, in arrival order."""
        return [p for p in self.capture.packets() if not p.outgoing and p.payload.startswith(b"SUBSCRIBE ")]

    def wait_subscribes(self, count: int = 1, timeout: float = 5.0) -> list[WirePacket]:
        return self.capture.wait_for(lambda p: not p.outgoing and p.payload.startswith(b"SUBSCRIBE "), count, timeout)

    def sent(self) -> list[WirePacket]:
        """The SIP messages the responder sent (200 OKs and NOTIFYs), retransmits included."""
        return [p for p in self.capture.packets() if p.outgoing and _SIP_START.match(p.payload)]

    def messages(self) -> list[SippMessage]:
        """sipp's own log of what it received and sent (empty for the Python responder)."""
        return parse_sipp_messages(self.message_log) if self.mode is not PnpMode.OTHER_PORT else []

    def wait_finished(self, timeout: float = 10.0) -> int:
        """The responder's exit code once its calls are done: 0 = every NOTIFY was answered 200 (sipp, Python);
        a scenario that failed (e.g. its NOTIFY never answered) exits non-zero.

        Raises:
            subprocess.TimeoutExpired: still running (SILENT never finishes).
        """
        return self.process.wait(timeout)

    def log_text(self) -> str:
        return self.process.log_text()


class PnpResponderFactory(Protocol):
    def __call__(self, body: str = "", *, mode: PnpMode | str = PnpMode.NOTIFY, content_type: str | None = None,
                 calls: int | None = 1, notify_delay_ms: int = 100) -> PnpResponder:
        """Start a PnP responder on 0.0.0.0:5060 in the server namespace (the group is joined there).

        Args:
            body: the NOTIFY body: the provisioning URL, or any text (a body that is not a URL: just pass one);
                for EXTERNAL_BODY the URL that goes into the Content-Type's `URL=` parameter.
            mode: see `PnpMode`.
            content_type: defaults to `application/url` (EXTERNAL_BODY: the message/external-body pointer).
            calls: SUBSCRIBE dialogs to answer before exiting (sipp -m); None = until teardown.
            notify_delay_ms: pause between the 200 OK and the NOTIFY.
        """
        ...


def start_pnp_responder(pair: NetnsPair, body: str = "", *, mode: PnpMode | str = PnpMode.NOTIFY,
                        content_type: str | None = None, calls: int | None = 1,
                        notify_delay_ms: int = 100) -> PnpResponder:
    mode = PnpMode(mode)
    capture = pair.capture()  # before the responder: no datagram is missed
    wire_body = body
    if mode is PnpMode.EXTERNAL_BODY:
        content_type = content_type or f'message/external-body;access-type="URL";URL="{body}"'
        wire_body = "Content-Type: application/url\r\n"  # the phantom headers of the external part (RFC 4483)
    content_type = content_type or "application/url"
    if mode is PnpMode.OTHER_PORT:
        log = pair.unique_path("pnp-python.jsonl")
        argv = nettools_argv("pnp-respond", "--srv-ip", pair.server_ip, "--body", body, "--content-type",
                             content_type, "--notify-delay", str(notify_delay_ms / 1000), "--calls",
                             str(calls or 0), "--log", str(log))
        process = pair.start(Side.SERVER, "pnp-python", argv, ready_line=True)
        process.wait_line("ready")
    else:
        scenario = pair.unique_path(f"pnp-{mode.value}.xml")
        scenario.write_text(_pnp_scenario(mode, notify_delay_ms))
        log = pair.unique_path("pnp-sipp-messages.log")
        argv = [_sipp_binary(), "-sf", str(scenario), "-i", "0.0.0.0", "-p", str(PNP_PORT), "-nd",
                "-key", "srv_ip", pair.server_ip, "-key", "body", wire_body, "-key", "ctype", content_type,
                "-trace_msg", "-message_file", str(log), "-trace_logs", "-log_file",
                str(pair.unique_path("pnp-sipp-actions.log")), "-trace_err", "-error_file",
                str(pair.unique_path("pnp-sipp-errors.log")), *_aux_ports(pair)]
        if calls is not None and mode is not PnpMode.SILENT:
            argv += ["-m", str(calls)]
        process = pair.start(Side.SERVER, "pnp-sipp", argv)
        process.wait_bound("udp", PNP_PORT)
    return PnpResponder(mode=mode, body=body, content_type=content_type, process=process, capture=capture,
                        message_log=log)


@pytest.fixture
def pnp_responder(netns: NetnsPair) -> PnpResponderFactory:
    """Factory: `pnp_responder(url, mode=PnpMode.NOTIFY, calls=1)` → `PnpResponder`."""
    return functools.partial(start_pnp_responder, netns)


# --- the PnP responder over IPv6 -------------------------------------------------------------------------------

PNP_GROUP6 = "ff02::175"  # IANA FF0X::175 "all SIP servers", link scope: provd's default multicast.group6


def capture6(pair: NetnsPair, side: Side = Side.SERVER) -> Capture:
    """`pair.capture()` of the IPv6/UDP datagrams only: every one on one side's veth from now on, in the same
    `WirePacket` shape (`ttl` = the hop limit)."""
    return pair.capture(side=side, family=6)


def join_group6(pair: NetnsPair, group: str = PNP_GROUP6) -> None:
    """The server kernel joins `group` on its veth (`autojoin`, as netns.py does for 224.0.1.75): a socket bound to
    [::]:5060, such as sipp's, then receives the IPv6 SUBSCRIBE."""
    subprocess.run([IP, "-n", pair.server_ns, "addr", "add", f"{group}/128", "dev", pair.server_if, "autojoin"],
                   check=True, capture_output=True)


def leave_group4(pair: NetnsPair) -> None:
    """The server stops hearing 224.0.1.75 (a dual-stack sipp on [::] would otherwise answer over IPv4 too)."""
    subprocess.run([IP, "-n", pair.server_ns, "addr", "del", f"{PNP_GROUP}/32", "dev", pair.server_if],
                   check=True, capture_output=True)


def start_pnp_responder6(pair: NetnsPair, body: str, *, mode: PnpMode | str = PnpMode.NOTIFY,
                         malformed: str = "", notify_delay_ms: int = 100) -> PnpResponder:
    """A PnP responder on [::]:5060 in the server namespace answering the IPv6 SUBSCRIBE to `PNP_GROUP6`.

    sipp (NOTIFY, OTHER_CALL_ID, EXTERNAL_BODY) binds the wildcard (`-i ::`, dual stack: see `leave_group4`)
    with the group joined by `join_group6`; OTHER_PORT is `nettools.py pnp6-respond`, which joins the group on
    its own socket and sends the NOTIFY from an ephemeral port, after `malformed` (sent as is) if given.
    `capture` records IPv6 only (`capture6`)."""
    mode = PnpMode(mode)
    capture = capture6(pair)
    content_type = "application/url"
    if mode is PnpMode.OTHER_PORT:
        log = pair.unique_path("pnp6-python.jsonl")
        argv = nettools_argv("pnp6-respond", "--iface", pair.server_if, "--group", PNP_GROUP6, "--srv-ip",
                             pair.server_ip6, "--body", body, "--malformed", malformed, "--notify-delay",
                             str(notify_delay_ms / 1000), "--log", str(log))
        process = pair.start(Side.SERVER, "pnp6-python", argv, ready_line=True)
        process.wait_line("ready")
    else:
        join_group6(pair)
        wire_body = body
        if mode is PnpMode.EXTERNAL_BODY:
            content_type = f'message/external-body;access-type="URL";URL="{body}"'
            wire_body = "Content-Type: application/url\r\n"
        scenario = pair.unique_path(f"pnp6-{mode.value}.xml")
        scenario.write_text(_pnp_scenario(mode, notify_delay_ms))
        log = pair.unique_path("pnp6-sipp-messages.log")
        argv = [_sipp_binary(), "-sf", str(scenario), "-i", "::", "-p", str(PNP_PORT), "-nd",
                "-key", "srv_ip", f"[{pair.server_ip6}]", "-key", "body", wire_body, "-key", "ctype", content_type,
                "-trace_msg", "-message_file", str(log), "-trace_err", "-error_file",
                str(pair.unique_path("pnp6-sipp-errors.log")), *_aux_ports(pair)]
        if mode is not PnpMode.SILENT:
            argv += ["-m", "1"]
        process = pair.start(Side.SERVER, "pnp6-sipp", argv)
        process.wait_until(lambda: _bound6(process.pid, PNP_PORT), f"bound to udp6 {PNP_PORT}")
    return PnpResponder(mode=mode, body=body, content_type=content_type, process=process, capture=capture,
                        message_log=log)


def _bound6(pid: int, port: int) -> bool:
    """Whether `pid` holds a UDP socket on `port` in /proc/PID/net/udp6 (its own namespace's table; the IPv4
    `bound_ports` reads /proc/PID/net/udp, where sipp's [::] socket does not appear)."""
    inodes = set()
    with contextlib.suppress(OSError):  # the process may be gone: the caller polls its exit
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        for line in Path(f"/proc/{pid}/net/udp6").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


# --- the check-sync sender ----------------------------------------------------------------------------------------


def notify_sync_body(url: str | None) -> str:
    """The Auerswald check-sync body (FORMAT §2.4); url None: `<checkSync/>` without a url (keep the old one)."""
    inner = f"<url>{url}</url>" if url is not None else ""
    return f'<?xml version="1.0" encoding="utf-8"?>\n<notifySync><checkSync>{inner}</checkSync></notifySync>\n'


def settings_snippet_body(url: str = "") -> str:
    """A settings patch as a NOTIFY body (applied like a manual restore): one leaf of `provisioning`."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f"<configuration><provisioning><url>{url}</url></provisioning></configuration>\n")


@dataclass(frozen=True)
class CheckSyncResult:
    tool: str  # "sipp" or "sipsak"
    status: int | None  # the final response's code; None: no answer within the timeout
    status_line: str | None  # "SIP/2.0 200 OK"
    exit_code: int | None  # the tool's; None if it had to be stopped
    sent: str  # sipp: the NOTIFY as it logged it; sipsak: the prepared file (sipsak adds a Via on top)
    output: str  # the tool's stdout/stderr (sipp: its action log, "STATUS nnn")
    elapsed_s: float


_SIP_START = re.compile(rb"SIP/2\.0 \d{3} |[A-Z]+ \S+ SIP/2\.0\r\n")
_STATUS_LINE = re.compile(r"^\s*(SIP/2\.0 (\d{3})[^\r\n]*)", re.MULTILINE)


def _sender_scenario(event: str | None, has_body: bool) -> str:
    event_line = "      Event: [event]\n" if event is not None else ""
    body_lines = "      Content-Type: [ctype]\n      Content-Length: [len]\n\n      [body]\n" if has_body \
        else "      Content-Length: 0\n\n"
    # A run of optional recvs, the last one mandatory: whichever final response comes ends the scenario.
    optional = ' optional="true"'
    recvs = "".join(
        f'  <recv response="{code}"{optional if code != KNOWN_STATUSES[-1] else ""} next="done">'
        f'<action><log message="STATUS {code}"/></action></recv>\n' for code in KNOWN_STATUSES)
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- tests/support/peers/sip.py: out-of-dialog NOTIFY check-sync, as a PBX sends it -->
<scenario name="check-sync NOTIFY sender">
  <send retrans="500">
    <![CDATA[

      NOTIFY sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:pbx@[local_ip]>;tag=[pid]cs[call_number]
      To: <sip:[service]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 NOTIFY
      Contact: <sip:pbx@[local_ip]:[local_port]>
{event_line}{body_lines}    ]]>
  </send>
{recvs}  <label id="done"/>
</scenario>
"""


class CheckSyncSender:
    """Sends one check-sync NOTIFY per call from the server namespace and returns what came back."""

    def __init__(self, pair: NetnsPair) -> None:
        self.pair = pair

    def sipp(self, event: str | None = "check-sync", *, body: str | None = None, content_type: str | None = None,
             user: str = "1001", to_ip: str | None = None, to_port: int = 5060, from_ip: str | None = None,
             from_port: int = CHECK_SYNC_FROM_PORT, timeout: float = 5.0) -> CheckSyncResult:
        """A NOTIFY with From tag, Max-Forwards, Contact, Content-Length (as Asterisk sends it), retransmitted
        (T1 0.5 s) until a final response or `timeout`.

        Args:
            event: the Event header value, e.g. "check-sync;reboot=true"; None: no Event header.
            body: e.g. `notify_sync_body(url)`, `settings_snippet_body()`; content_type defaults to
                application/xml when there is a body.
            to_ip/to_port: the phone (default: the client address, 5060); from_ip: a server-side address (see
                `NetnsPair.add_server_ip`), from_port: sipp's source port.
        """
        pair = self.pair
        scenario = pair.unique_path("checksync.xml")
        scenario.write_text(_sender_scenario(event, body is not None))
        messages = pair.unique_path("checksync-sipp-messages.log")
        actions = pair.unique_path("checksync-sipp-actions.log")
        argv = [_sipp_binary(), f"{to_ip or pair.client_ip}:{to_port}", "-sf", str(scenario),
                "-i", from_ip or pair.server_ip, "-p", str(from_port), "-m", "1", "-nd", "-s", user,
                "-key", "event", event or "", "-key", "body", (body or "").rstrip("\n"),
                "-key", "ctype", content_type or "application/xml",
                "-trace_msg", "-message_file", str(messages), "-trace_logs", "-log_file", str(actions),
                "-recv_timeout", str(int(timeout * 1000)), *_aux_ports(pair)]  # -timeout never fired here
        start = time.monotonic()
        process = pair.start(Side.SERVER, "checksync-sipp", argv)
        exit_code = _wait(process, timeout + 5)
        elapsed = time.monotonic() - start
        logged = parse_sipp_messages(messages)
        sent = next((m.text for m in logged if m.sent), "")
        answers = [m.start_line for m in logged if not m.sent and _STATUS_LINE.match(m.start_line)]
        finals = [line for line in answers if not line.startswith("SIP/2.0 1")]
        line = finals[0] if finals else None
        return CheckSyncResult(tool="sipp", status=int(line.split()[1]) if line else None, status_line=line,
                               exit_code=exit_code, sent=sent, elapsed_s=elapsed,
                               output=actions.read_text(errors="replace") if actions.exists() else "")

    def sipsak(self, event: str | None = "check-sync", *, body: str | None = None, content_type: str | None = None,
               message: str | None = None, user: str = "1001", to_ip: str | None = None, to_port: int = 5060,
               from_ip: str | None = None, from_port: int = CHECK_SYNC_FROM_PORT, hostname: str | None = None,
               symmetric: bool = False, timeout: float = 5.0) -> CheckSyncResult:
        """`sipsak -f FILE -s sip:USER@PHONE` with a NOTIFY file as administrators write it: no Via (sipsak adds
        its own on top, `;rport;alias`), no From tag, no Max-Forwards, no Content-Length, LF line ends (sipsak
        inserts the CRs).

        sipsak sends from an ephemeral port and listens on `from_port` (named in its Via) unless `symmetric`
        (-S); a reply to either reaches it. `hostname` goes into the Via (default from_ip; "127.0.0.1" shows a
        Via that names no reachable host, as on a box whose hostname resolves to loopback).
        """
        pair = self.pair
        to_ip, from_ip = to_ip or pair.client_ip, from_ip or pair.server_ip
        if message is None:
            lines = [f"NOTIFY sip:{user}@{to_ip}:{to_port} SIP/2.0", f"From: <sip:pbx@{from_ip}>",
                     f"To: <sip:{user}@{to_ip}>", f"Call-ID: {secrets.token_hex(8)}@{from_ip}", "CSeq: 1 NOTIFY"]
            if event is not None:
                lines.append(f"Event: {event}")
            if body is not None:
                lines.append(f"Content-Type: {content_type or 'application/xml'}")
            message = "\n".join(lines) + "\n\n" + (body or "")
        path = pair.unique_path("checksync-sipsak.txt")
        path.write_text(message)
        sipsak = shutil.which("sipsak")
        if sipsak is None:
            raise PeerStartError("sipsak is not installed: run scripts/setup.sh as root (APT_PACKAGES)")
        # T1 scaled so sipsak's own give-up (64 x T1 for a non-INVITE) falls at `timeout`.
        argv = [sipsak, "-f", str(path), "-s", f"sip:{user}@{to_ip}:{to_port}", "-H", hostname or from_ip,
                "--local-ip", from_ip, "-l", str(from_port), "--timer-t1", str(max(10, int(timeout * 1000 / 64))),
                "-vv", *(["-S"] if symmetric else [])]
        start = time.monotonic()
        process = pair.start(Side.SERVER, "checksync-sipsak", argv)
        exit_code = _wait(process, timeout + 5)
        elapsed = time.monotonic() - start
        output = process.log_text()
        lines_found = [match.group(1) for match in _STATUS_LINE.finditer(output)]
        finals = [line for line in lines_found if not line.startswith("SIP/2.0 1")]
        line = finals[-1].strip() if finals else None
        return CheckSyncResult(tool="sipsak", status=int(line.split()[1]) if line else None, status_line=line,
                               exit_code=exit_code, sent=message, output=output, elapsed_s=elapsed)


def _wait(process: NsProcess, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.stop()
        return None


@pytest.fixture
def check_sync(netns: NetnsPair) -> CheckSyncSender:
    """`check_sync.sipp(event=…, body=…)` / `check_sync.sipsak(…)` → `CheckSyncResult` (status, status_line…)."""
    return CheckSyncSender(netns)


# --- the check-sync sender on loopback, either family -----------------------------------------------------------


def _free_udp_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def sipp_check_sync_loopback(workdir: Path, to_ip: str, to_port: int, *, from_ip: str, event: str = "check-sync",
                             timeout: float = 5.0) -> CheckSyncResult:
    """sipp sending one check-sync NOTIFY (the scenario `CheckSyncSender.sipp` uses) over loopback, outside any
    namespace: `to_ip`/`from_ip` are `::1` or `127.0.0.1`. An IPv6 destination goes to sipp in brackets; its
    `[local_ip]` and `[remote_ip]` keywords bracket IPv6 themselves (Via `[::1]:port`)."""
    stamp = secrets.token_hex(4)
    scenario = workdir / f"checksync-{stamp}.xml"
    scenario.write_text(_sender_scenario(event, False))
    messages, actions = workdir / f"checksync-{stamp}-messages.log", workdir / f"checksync-{stamp}-actions.log"
    remote = f"[{to_ip}]:{to_port}" if ":" in to_ip else f"{to_ip}:{to_port}"
    argv = [_sipp_binary(), remote, "-sf", str(scenario), "-i", from_ip, "-p", str(_free_udp_port(from_ip)),
            "-m", "1", "-nd", "-s", "1001", "-key", "event", event, "-key", "body", "", "-key", "ctype",
            "application/xml", "-trace_msg", "-message_file", str(messages), "-trace_logs", "-log_file", str(actions),
            "-recv_timeout", str(int(timeout * 1000)), "-cp", str(_free_udp_port(from_ip)),
            "-mp", str(_free_udp_port(from_ip))]
    start = time.monotonic()
    try:
        exit_code: int | None = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                               timeout=timeout + 5, cwd=workdir).returncode
    except subprocess.TimeoutExpired:
        exit_code = None
    elapsed = time.monotonic() - start
    logged = parse_sipp_messages(messages)
    sent = next((m.text for m in logged if m.sent), "")
    finals = [m.start_line for m in logged if not m.sent and _STATUS_LINE.match(m.start_line)
              and not m.start_line.startswith("SIP/2.0 1")]
    line = finals[0] if finals else None
    return CheckSyncResult(tool="sipp", status=int(line.split()[1]) if line else None, status_line=line,
                           exit_code=exit_code, sent=sent, elapsed_s=elapsed,
                           output=actions.read_text(errors="replace") if actions.exists() else "")
