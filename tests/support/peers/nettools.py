"""Small programs the network bench runs inside its namespaces: `python -I nettools.py COMMAND …`.

Peers: `capture` (wire recorder), `pnp-respond` (SIP PnP responder for what sipp cannot express), `redirect`
(the HTTPS Redirect Service). Phone-side probes for the bench's self-test: `dhcp-inform`, `ntp`, `subscribe`,
`sip-answer`, `http-get`. A peer prints `ready` on stdout once its sockets are bound; a probe prints one JSON
document. Standard library (plus scapy/ntplib where named); never imports provd. Run isolated (`-I`): its own
directory on sys.path would let `tests/support/peers/http.py` shadow the stdlib `http` package.
"""

from __future__ import annotations

import argparse
import json
import secrets
import select
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
PNP_GROUP = "224.0.1.75"
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 481: "Call/Transaction Does Not Exist", 489: "Bad Event",
           500: "Server Internal Error"}


def emit(document: object) -> None:
    print(json.dumps(document), flush=True)


def ready() -> None:
    print("ready", flush=True)


# --- SIP, minimal ------------------------------------------------------------------------------------------------


def sip_split(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Start line, headers in order (name as sent, value stripped), body."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return lines[0], headers, body


def sip_header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name.lower()), None)


def sip_response(data: bytes, status: int, reason: str | None = None, to_tag: str = "") -> bytes:
    """A response echoing Via, From, To (To-tag added if absent and given), Call-ID, CSeq."""
    _, headers, _ = sip_split(data)
    lines = [f"SIP/2.0 {status} {reason or REASONS.get(status, 'Whatever')}"]
    for key, value in headers:
        if key.lower() in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            lines.append(f"{key}: {value}")
        elif key.lower() in ("to", "t"):
            lines.append(f"{key}: {value}" + (f";tag={to_tag}" if to_tag and ";tag=" not in value else ""))
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- capture -----------------------------------------------------------------------------------------------------


def cmd_capture(args: argparse.Namespace) -> int:
    """Append one JSON line per UDP datagram (IPv4 and IPv6, or --family's only) to or from --port on --iface,
    incoming and outgoing; `ttl` is IPv4's TTL or IPv6's hop limit."""
    ports = set(args.port)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    ready()
    with open(args.out, "a", encoding="ascii") as out:
        while True:
            frame, address = sock.recvfrom(65535)
            now = time.monotonic()
            if frame[12:14] == b"\x86\xdd":  # IPv6: see udp6_record in the DHCPv6 block at the end
                record = udp6_record(frame, ports) if args.family != 4 else None
                if record is not None:
                    out.write(json.dumps({"time": now, "outgoing": address[2] == PACKET_OUTGOING, **record}) + "\n")
                    out.flush()
                continue
            if len(frame) < 42 or frame[12:14] != b"\x08\x00" or args.family == 6:
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:  # UDP
                continue
            total = struct.unpack("!H", ip[2:4])[0]
            udp = ip[ihl:total]
            sport, dport, length = struct.unpack("!HHH", udp[:6])
            if ports and sport not in ports and dport not in ports:
                continue
            out.write(json.dumps({"time": now, "outgoing": address[2] == PACKET_OUTGOING,
                                  "src": socket.inet_ntoa(ip[12:16]), "sport": sport,
                                  "dst": socket.inet_ntoa(ip[16:20]), "dport": dport, "ttl": ip[8],
                                  "payload": udp[8:length].hex()}) + "\n")
            out.flush()


# --- DHCP probe --------------------------------------------------------------------------------------------------


def cmd_dhcp_inform(args: argparse.Namespace) -> int:
    """A scapy-built DHCPINFORM from --ip, UDP 68 → 255.255.255.255:67 bound to --iface; prints the DHCPACK's
    BOOTP fields and every option as hex (parsed here, not by scapy, to show the exact bytes), or null."""
    from scapy.layers.dhcp import BOOTP, DHCP

    with open(f"/sys/class/net/{args.iface}/address", encoding="ascii") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    xid = int.from_bytes(secrets.token_bytes(4), "big")
    options: list[Any] = [("message-type", "inform")]
    if args.vendor_class:
        options.append(("vendor_class_id", args.vendor_class.encode()))
    options += [("param_req_list", [int(code) for code in args.prl.split(",")]), "end"]
    payload = bytes(BOOTP(op=1, xid=xid, ciaddr=args.ip, chaddr=mac + b"\0" * 10) / DHCP(options=options))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    deadline = time.monotonic() + args.timeout
    sock.sendto(payload, ("255.255.255.255", 67))
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data, source = sock.recvfrom(4096)
        except TimeoutError:
            break
        if len(data) < 240 or data[0] != 2 or data[4:8] != xid.to_bytes(4, "big"):
            continue
        found: dict[str, str] = {}
        i = 240  # after the magic cookie
        while i < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1
                continue
            length = data[i + 1]
            found[str(data[i])] = data[i + 2:i + 2 + length].hex()
            i += 2 + length
        emit({"from": list(source), "yiaddr": socket.inet_ntoa(data[16:20]), "siaddr": socket.inet_ntoa(data[20:24]),
              "sname": data[44:108].hex(), "file": data[108:236].hex(), "options": found})
        return 0
    emit(None)
    return 1


# --- NTP probe ---------------------------------------------------------------------------------------------------


def cmd_ntp(args: argparse.Namespace) -> int:
    import ntplib

    try:
        reply = ntplib.NTPClient().request(args.host, version=4, port=args.port, timeout=args.timeout)
    except (ntplib.NTPException, OSError) as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    emit({key: getattr(reply, key) for key in ("leap", "stratum", "mode", "version", "offset", "delay", "tx_time",
                                                 "ref_id", "root_delay", "root_dispersion")})
    return 0


# --- SIP probes ----------------------------------------------------------------------------------------------------


def cmd_subscribe(args: argparse.Namespace) -> int:
    """The phone side of multicast PnP: a ua-profile SUBSCRIBE from --port (5060) to 224.0.1.75:5060 with
    IP_MULTICAST_IF = --local-ip and TTL 1, identical copies at --at offsets; every request received is answered
    200 to its source. Prints what was sent and everything received, once a NOTIFY came (--stop-on-notify) or
    the --window closed."""
    uri = f"sip:MAC%3a{args.mac}@{PNP_GROUP}"
    call_id = f"{secrets.token_hex(8)}@{args.local_ip}"
    message = (f"SUBSCRIBE {uri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {args.local_ip}:{args.port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
               f"From: <{uri}>;tag={secrets.token_hex(4)}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n"
               f"CSeq: 1 SUBSCRIBE\r\nContact: <sip:{args.local_ip}:{args.port}>\r\nMax-Forwards: 70\r\n"
               "User-Agent: bench-probe/1\r\nExpires: 0\r\n"
               'Event: ua-profile;profile-type="device";vendor="Auerswald";model="D400";version="1.0"\r\n'
               "Accept: application/url\r\nContent-Length: 0\r\n\r\n").encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.port))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(args.local_ip))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    start = time.monotonic()
    sends = [start + float(offset) for offset in args.at.split(",")]
    received = []
    while (now := time.monotonic()) < start + args.window:
        while sends and sends[0] <= now:
            sock.sendto(message, (PNP_GROUP, 5060))
            sends.pop(0)
        until = min([start + args.window, *sends[:1]])
        readable, _, _ = select.select([sock], [], [], max(until - time.monotonic(), 0))
        if not readable:
            continue
        data, source = sock.recvfrom(65535)
        received.append({"time": time.monotonic() - start, "from": list(source),
                         "data": data.decode("utf-8", "replace")})
        if not data.startswith(b"SIP/2.0"):
            sock.sendto(sip_response(data, 200, to_tag="probe"), source)
            if args.stop_on_notify and data.startswith(b"NOTIFY"):
                break
    emit({"sent": message.decode(), "call_id": call_id, "received": received})
    return 0


def cmd_sip_answer(args: argparse.Namespace) -> int:
    """A check-sync listener stand-in: every request on --bind:--port is answered --status (echoing the
    transaction headers) and printed as a JSON line; stops after --count requests or --timeout seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    ready()
    deadline = time.monotonic() + args.timeout
    count = 0
    while count < args.count and (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], remaining)
        if not readable:
            break
        data, source = sock.recvfrom(65535)
        if data.startswith(b"SIP/2.0"):
            continue
        sock.sendto(sip_response(data, args.status, args.reason, to_tag="phone"), source)
        emit({"from": list(source), "data": data.decode("utf-8", "replace")})
        count += 1
    return 0 if count >= args.count else 1


# --- PnP responder (Python: NOTIFY from another source port) ----------------------------------------------------


def cmd_pnp_respond(args: argparse.Namespace) -> int:
    """Answer each ua-profile SUBSCRIBE on 0.0.0.0:5060 with 200 OK from 5060, then send the NOTIFY from a second
    socket on an ephemeral port (as pnpserv.py, pnpd.lua, snom-pnpd.pl do), retransmitted (T1 0.5 s) until its
    200 arrives on that port. Identical SUBSCRIBE retransmits get the 200 again, no new NOTIFY. Logs every
    datagram as a JSON line to --log; exits 0 after --calls answered NOTIFYs."""
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen.bind(("0.0.0.0", 5060))
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind((args.srv_ip, 0))
    other_port = other.getsockname()[1]
    ready()
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 -- open for the life of the process

    def record(event: str, sock: socket.socket, peer: tuple[str, int], data: bytes) -> None:
        log.write(json.dumps({"time": time.monotonic(), "event": event, "local_port": sock.getsockname()[1],
                              "peer": list(peer), "data": data.decode("utf-8", "replace")}) + "\n")
        log.flush()

    seen: set[tuple[str, str]] = set()
    tags: dict[str, str] = {}  # call-id → our To-tag: a retransmitted SUBSCRIBE gets the same 200
    pending: dict[str, tuple[bytes, tuple[str, int], float, float]] = {}  # call-id → NOTIFY, peer, due, interval
    answered = 0
    while args.calls == 0 or answered < args.calls:
        timeout = min((due for _, _, due, _ in pending.values()), default=time.monotonic() + 3600) - time.monotonic()
        readable, _, _ = select.select([listen, other], [], [], max(timeout, 0))
        for sock in readable:
            data, peer = sock.recvfrom(65535)
            record("recv", sock, peer, data)
            start, headers, _ = sip_split(data)
            if sock is other and start.startswith("SIP/2.0 200"):
                if pending.pop(sip_header(headers, "Call-ID") or "", None) is not None:
                    answered += 1
                continue
            if not start.startswith("SUBSCRIBE") or not (sip_header(headers, "Event") or "").startswith("ua-profile"):
                continue
            call_id = sip_header(headers, "Call-ID") or ""
            to_tag = tags.setdefault(call_id, secrets.token_hex(4))
            response = sip_response(data, 200, to_tag=to_tag)
            listen.sendto(response, peer)
            record("send", listen, peer, response)
            key = (call_id, sip_header(headers, "CSeq") or "")
            if key in seen:
                continue  # a retransmit: answered again, no second NOTIFY
            seen.add(key)
            contact = (sip_header(headers, "Contact") or f"<sip:{peer[0]}:{peer[1]}>").strip("<>")
            body = args.body.encode()
            notify = (f"NOTIFY {contact} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {args.srv_ip}:{other_port};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                      "Max-Forwards: 70\r\n"
                      f"From: {sip_header(headers, 'To')};tag={to_tag}\r\nTo: {sip_header(headers, 'From')}\r\n"
                      f"Call-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nContact: <sip:{args.srv_ip}:{other_port}>\r\n"
                      'Event: ua-profile;profile-type="device";vendor="OEM";model="OEM";version="1"\r\n'
                      "Subscription-State: terminated;reason=timeout\r\n"
                      f"Content-Type: {args.content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            pending[call_id] = (notify, peer, time.monotonic() + args.notify_delay, 0.5)
        now = time.monotonic()
        for call_id, (notify, peer, due, interval) in list(pending.items()):
            if due <= now:
                other.sendto(notify, peer)
                record("send", other, peer, notify)
                if interval > 4:
                    del pending[call_id]  # given up: never answered
                else:
                    pending[call_id] = (notify, peer, now + interval, interval * 2)
    return 0


# --- Redirect Service --------------------------------------------------------------------------------------------


class RedirectHandler(BaseHTTPRequestHandler):
    """Answers every GET as `--behaviour` (JSON, re-read per request) says; logs each request first."""

    server: RedirectServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSON request log replaces the stderr access log

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        with open(self.server.log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"time": time.monotonic(), "method": self.command, "target": self.path,
                                  "path": split.path, "query": parse_qs(split.query, keep_blank_values=True),
                                  "headers": dict(self.headers.items())}) + "\n")
        with open(self.server.behaviour_path, encoding="utf-8") as f:
            behaviour = json.load(f)
        time.sleep(behaviour["delay_s"])  # the "slow" Redirect Service: a delay the test asked for
        body = behaviour["body"].encode() if behaviour["status"] not in (204, 304) else b""
        try:
            self.send_response(behaviour["status"])
            if body or behaviour["status"] not in (204, 304):
                self.send_header("Content-Type", behaviour["content_type"])
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up waiting (the slow case)


class RedirectServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, behaviour_path: str,
                 log_path: str) -> None:
        if ":" in address[0]:  # an IPv6 address: socketserver reads the family before it creates the socket
            self.address_family = socket.AF_INET6
        super().__init__(address, RedirectHandler)
        self.context = context
        self.behaviour_path = behaviour_path
        self.log_path = log_path

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake in the request's thread, not in accept(): a stalled client cannot block others.
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def cmd_redirect(args: argparse.Namespace) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = RedirectServer((args.bind, args.port), context, args.behaviour, args.log)
    ready()
    server.serve_forever()
    return 0


def cmd_http_get(args: argparse.Namespace) -> int:
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    start = time.monotonic()
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout, context=context) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        emit({"error": f"{type(exc).__name__}: {exc}", "elapsed": time.monotonic() - start})
        return 1
    emit({"status": status, "body": body.decode("utf-8", "replace"), "elapsed": time.monotonic() - start})
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nettools.py")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("capture")
    p.add_argument("--iface", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, action="append", default=[])
    p.add_argument("--family", type=int, choices=(4, 6))
    p.set_defaults(run=cmd_capture)
    p = sub.add_parser("dhcp-inform")
    p.add_argument("--iface", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--vendor-class", default="")
    p.add_argument("--prl", default="1,3,6,15,42,43,66,67")
    p.add_argument("--timeout", type=float, default=3.0)
    p.set_defaults(run=cmd_dhcp_inform)
    p = sub.add_parser("ntp")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=123)
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(run=cmd_ntp)
    p = sub.add_parser("subscribe")
    p.add_argument("--local-ip", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--port", type=int, default=5060)
    p.add_argument("--at", default="0", help="send offsets in seconds, comma-separated")
    p.add_argument("--window", type=float, default=3.0)
    p.add_argument("--stop-on-notify", action="store_true")
    p.set_defaults(run=cmd_subscribe)
    p = sub.add_parser("sip-answer")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=5060)
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--reason")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=cmd_sip_answer)
    p = sub.add_parser("pnp-respond")
    p.add_argument("--srv-ip", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--content-type", default="application/url")
    p.add_argument("--notify-delay", type=float, default=0.1)
    p.add_argument("--calls", type=int, default=1, help="0 = unlimited")
    p.add_argument("--log", required=True)
    p.set_defaults(run=cmd_pnp_respond)
    p = sub.add_parser("redirect")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--behaviour", required=True)
    p.add_argument("--log", required=True)
    p.set_defaults(run=cmd_redirect)
    p = sub.add_parser("http-get")
    p.add_argument("--url", required=True)
    p.add_argument("--ca")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(run=cmd_http_get)
    add_ipv6_pnp_commands(sub)
    add_dhcp6_commands(sub)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result



# --- IPv6 multicast PnP: the wire recorder and a responder (issue 10) ----------------------------------------


def cmd_pnp6_respond(args: argparse.Namespace) -> int:
    """An IPv6 PnP responder for what sipp cannot express: joins --group on --iface (IPV6_JOIN_GROUP) on a
    V6ONLY socket [::]:5060, answers each ua-profile SUBSCRIBE 200 from there, then sends --malformed (if given,
    once, as is) and the NOTIFY with --body from a second socket on an ephemeral port, retransmitted (T1 0.5 s)
    until its 200 arrives there. Logs every datagram as a JSON line to --log; exits 0 once the NOTIFY was
    answered, 1 after --timeout seconds."""
    index = socket.if_nametoindex(args.iface)
    listen = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    listen.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen.bind(("::", 5060))
    listen.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                      socket.inet_pton(socket.AF_INET6, args.group) + struct.pack("@I", index))
    other = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    other.bind((args.srv_ip, 0))
    other_port = other.getsockname()[1]
    ready()
    log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 -- open for the life of the process

    def record(event: str, sock: socket.socket, peer: tuple[Any, ...], data: bytes) -> None:
        log.write(json.dumps({"time": time.monotonic(), "event": event, "local_port": sock.getsockname()[1],
                              "peer": list(peer[:2]), "data": data.decode("utf-8", "replace")}) + "\n")
        log.flush()

    host = f"[{args.srv_ip}]"
    deadline = time.monotonic() + args.timeout
    pending: tuple[bytes, tuple[Any, ...], float, float] | None = None  # NOTIFY, peer, due, interval
    while (now := time.monotonic()) < deadline:
        until = min(deadline, pending[2] if pending else deadline)
        readable, _, _ = select.select([listen, other], [], [], max(until - now, 0))
        for sock in readable:
            data, peer = sock.recvfrom(65535)
            record("recv", sock, peer, data)
            start, headers, _ = sip_split(data)
            if sock is other and start.startswith("SIP/2.0 200") and pending is not None:
                return 0
            if not start.startswith("SUBSCRIBE") or not (sip_header(headers, "Event") or "").startswith("ua-profile"):
                continue
            response = sip_response(data, 200, to_tag="pnp6")
            listen.sendto(response, peer)
            record("send", listen, peer, response)
            if pending is not None:
                continue  # a retransmit: answered again, no second NOTIFY
            if args.malformed:
                other.sendto(args.malformed.encode(), peer)
                record("send", other, peer, args.malformed.encode())
            contact = (sip_header(headers, "Contact") or "").strip("<>")
            body = args.body.encode()
            notify = (f"NOTIFY {contact} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {host}:{other_port};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                      "Max-Forwards: 70\r\n"
                      f"From: {sip_header(headers, 'To')};tag=pnp6\r\nTo: {sip_header(headers, 'From')}\r\n"
                      f"Call-ID: {sip_header(headers, 'Call-ID')}\r\nCSeq: 1 NOTIFY\r\n"
                      f"Contact: <sip:{host}:{other_port}>\r\n"
                      'Event: ua-profile;profile-type="device";vendor="OEM";model="OEM";version="1"\r\n'
                      "Subscription-State: terminated;reason=timeout\r\n"
                      f"Content-Type: application/url\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            pending = (notify, peer, time.monotonic() + args.notify_delay, 0.5)
        if pending is not None and pending[2] <= time.monotonic():
            notify, peer, _, interval = pending
            other.sendto(notify, peer)
            record("send", other, peer, notify)
            pending = (notify, peer, time.monotonic() + interval, min(interval * 2, 4.0))
    return 1


def add_ipv6_pnp_commands(sub: Any) -> None:
    """The subcommands above, registered by `main`."""
    p = sub.add_parser("pnp6-respond")
    p.add_argument("--iface", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--srv-ip", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--malformed", default="")
    p.add_argument("--notify-delay", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--log", required=True)
    p.set_defaults(run=cmd_pnp6_respond)


# --- DHCPv6: IPv6 in the recorder, and the scripted responder (tests/support/peers/dhcp6.py) ---------------------

_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: skipped to reach UDP


def udp6_record(frame: bytes, ports: set[int]) -> dict[str, object] | None:
    """The recorder's fields of an IPv6/UDP frame (`ttl` is the hop limit), None for anything else."""
    ip = frame[14:]
    if len(ip) < 40:
        return None
    next_header, offset = ip[6], 40
    while next_header in _IPV6_EXTENSIONS and offset + 2 <= len(ip):
        next_header, offset = ip[offset], offset + (ip[offset + 1] + 1) * 8
    if next_header != 17 or offset + 8 > len(ip):
        return None
    udp = ip[offset:40 + struct.unpack("!H", ip[4:6])[0]]
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    if ports and sport not in ports and dport not in ports:
        return None
    return {"src": socket.inet_ntop(socket.AF_INET6, ip[8:24]), "sport": sport,
            "dst": socket.inet_ntop(socket.AF_INET6, ip[24:40]), "dport": dport, "ttl": ip[7],
            "payload": udp[8:length].hex()}


def _dhcp6_options(data: bytes) -> list[tuple[int, bytes]]:
    found, i = [], 4
    while i + 4 <= len(data):
        code, length = struct.unpack("!HH", data[i:i + 4])
        found.append((code, data[i + 4:i + 4 + length]))
        i += 4 + length
    return found


def _dhcp6_option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


def dhcp6_reply(spec: dict[str, Any], request: bytes) -> bytes:
    """One scripted Reply to `request` (see ScriptedReply in tests/support/peers/dhcp6.py)."""
    if spec["raw"] is not None:
        return bytes.fromhex(spec["raw"])
    xid = request[1:4] if spec["xid"] == "echo" else bytes(b ^ 0x5A for b in request[1:4])
    out = bytes([spec["msg_type"]]) + xid
    if spec["server_id"]:
        out += _dhcp6_option(2, bytes.fromhex("00030001020000000001"))  # DUID-LL of 02:00:00:00:00:01
    client_id = next((value for code, value in _dhcp6_options(request) if code == 1), b"")
    if spec["client_id"] == "echo":
        out += _dhcp6_option(1, client_id)
    elif spec["client_id"] != "none":
        out += _dhcp6_option(1, bytes.fromhex(spec["client_id"]))
    out += bytes.fromhex(spec["options"])
    return out[:spec["truncate"]] if spec["truncate"] is not None else out


def cmd_dhcp6_respond(args: argparse.Namespace) -> int:
    """A DHCPv6 server stand-in on [::]:547 of --iface (joined to ff02::1:2): every Information-Request is
    logged to --log (source, port, hop limit, bytes) and, from the `answer_from`-th on, answered with the
    --script's replies in order, unicast to its source."""
    with open(args.script, encoding="utf-8") as f:
        script = json.load(f)
    index = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    sock.bind(("::", 547))
    group = socket.inet_pton(socket.AF_INET6, "ff02::1:2") + struct.pack("@I", index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    ready()
    seen = 0
    with open(args.log, "a", encoding="ascii") as log:
        while True:
            data, ancillary, _, source = sock.recvmsg(65535, socket.CMSG_SPACE(4))
            hops = next((struct.unpack("@i", value[:4])[0] for level, kind, value in ancillary
                         if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT), None)
            log.write(json.dumps({"time": time.monotonic(), "src": source[0], "sport": source[1], "hop_limit": hops,
                                  "payload": data.hex()}) + "\n")
            log.flush()
            if not data or data[0] != 11:  # Information-Request only
                continue
            seen += 1
            if seen < script["answer_from"]:
                continue
            for spec in script["replies"]:
                sock.sendto(dhcp6_reply(spec, data), source)


def add_dhcp6_commands(sub: Any) -> None:
    p = sub.add_parser("dhcp6-respond")
    p.add_argument("--iface", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--log", required=True)
    p.set_defaults(run=cmd_dhcp6_respond)


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing of the bench's own goes into __pycache__ from inside a namespace
    sys.exit(main(sys.argv[1:]))
