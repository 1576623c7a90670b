"""DHCPINFORM in a short-lived child process (docs/design.md §6): the only module that imports scapy.

scapy costs ~0.3 s and ~45 MB to import; it builds and parses the BOOTP/DHCP payload here and never enters
the daemon's memory. The socket work is plain: UDP 68 → 255.255.255.255:67 from the interface
(SO_BINDTODEVICE), the unicast DHCPACK read on the same socket, three tries. Usage:

    python -m provd.sources.dhcp_child IFACE ADDRESS MAC VENDOR_CLASS FIRST_WAIT_S

Prints one JSON object: {"answer": {...} | null, "tries": n, "server": ip} or {"error": "..."}.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

from scapy.error import Scapy_Exception
from scapy.layers.dhcp import BOOTP, DHCP  # submodules only: never scapy.all

PARAMETERS = [1, 3, 6, 15, 42, 43, 66, 67]  # option 55 ⊇ {1,3,6,42,43,66,67}
TRIES = 3


def build_inform(xid: int, address: str, mac: bytes, vendor_class: str) -> bytes:
    packet = BOOTP(op=1, htype=1, hlen=6, xid=xid, ciaddr=address, chaddr=mac + b"\x00" * 10) / DHCP(options=[
        ("message-type", "inform"),
        ("param_req_list", PARAMETERS),
        ("vendor_class_id", vendor_class.encode()),
        ("client_id", b"\x01" + mac),
        "end",
    ])
    return bytes(packet)


def parse_ack(data: bytes, xid: int) -> dict[str, object] | None:
    """The parts of a DHCPACK for `xid` that discovery needs (bytes as hex), None for anything else."""
    try:
        packet = BOOTP(data)
    except (Scapy_Exception, ValueError, IndexError, TypeError, struct.error):  # garbage is not our ACK
        return None
    if packet.op != 2 or packet.xid != xid or DHCP not in packet:
        return None
    options: dict[str, object] = {}
    for option in packet[DHCP].options:
        if isinstance(option, tuple) and len(option) >= 2:
            options[str(option[0])] = option[1] if len(option) == 2 else list(option[1:])
    if options.get("message-type") not in (5, "ack"):
        return None

    def raw(name: str) -> str | None:
        value = options.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            value = value.encode("latin-1")
        return bytes(value).hex() if isinstance(value, bytes | bytearray) else None

    ntp = options.get("NTP_server")
    servers = [str(s) for s in (ntp if isinstance(ntp, list) else [ntp] if ntp else [])]
    return {
        "option43": raw("vendor_specific"), "option66": raw("tftp_server_name"), "option67": raw("boot-file-name"),
        "sname": bytes(packet.sname).rstrip(b"\x00").hex() or None,
        "file": bytes(packet.file).rstrip(b"\x00").hex() or None,
        "ntp": servers,
    }


def inform(interface: str, address: str, mac: str, vendor_class: str, first_wait: float) -> dict[str, object]:
    mac_bytes = bytes.fromhex(mac)
    xid = int.from_bytes(os.urandom(4), "big")
    packet = build_inform(xid, address, mac_bytes, vendor_class)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", 68))
        wait = first_wait
        for attempt in range(1, TRIES + 1):
            sock.sendto(packet, ("255.255.255.255", 67))
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, peer = sock.recvfrom(4096)
                except TimeoutError:
                    break
                answer = parse_ack(data, xid)
                if answer is not None:
                    return {"answer": answer, "tries": attempt, "server": peer[0]}
            wait *= 2  # 2/4/8 s for a first wait of 2 s
    return {"answer": None, "tries": TRIES}


def main(argv: list[str]) -> int:
    try:
        interface, address, mac, vendor_class, first_wait = argv
        result = inform(interface, address, mac, vendor_class, float(first_wait))
    except (OSError, ValueError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
