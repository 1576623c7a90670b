"""The DHCPv6 source end to end (docs/design.md §11): `provd.sources.dhcp6.inform` in the client namespace against
ISC dhcpd -6 and the scripted responder in the server namespace; what it sends, as the wire recorder saw it."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

import pytest

from tests.support.peers.dhcp6 import (
    ENTERPRISE,
    Dhcp6Servers,
    ScriptedReply,
    Vendor,
    ntp_option_data,
    option,
)
from tests.support.peers.netns import NetnsPair, Side, WirePacket

VENDOR_CLASS = "auerswald-D400"
MAC = "00:09:52:00:00:0e"
DUID_LL = bytes.fromhex("0003" "0001" "00095200000e")

# Runs inside the client namespace: one exchange (or a cancelled one), one JSON document on stdout.
CLIENT = """
import asyncio, json, socket, sys, time
from provd.core.dhcp6 import url_from_answer
from provd.errors import DhcpUnavailable
from provd.sources.dhcp6 import inform

args = json.loads(sys.argv[1])
mode = args.pop("mode")
read_enterprise = args.pop("read_enterprise")
if args["index"] is None:
    args["index"] = socket.if_nametoindex(args["interface"])

async def cancelled():
    task = asyncio.create_task(inform(**args))
    await asyncio.sleep(0.3)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(0)
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # no SO_REUSEADDR: fails while 546 is still held
    probe.bind(("::", 546))
    probe.close()
    return {"cancelled": task.cancelled(), "others": len(asyncio.all_tasks()) - 1}

start = time.monotonic()
try:
    if mode == "cancel":
        print(json.dumps(asyncio.run(cancelled())))
        sys.exit(0)
    answer, detail = asyncio.run(inform(**args))
except DhcpUnavailable as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
    sys.exit(0)
out = {"detail": detail, "elapsed": time.monotonic() - start, "answer": None}
if answer is not None:
    url = url_from_answer(answer, enterprise=read_enterprise)
    for server in answer.ntp_servers:  # every address it gives must be usable as it stands (zone included)
        if ":" in server:
            socket.getaddrinfo(server, 123, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
    out["answer"] = {"ntp_servers": list(answer.ntp_servers), "notes": list(answer.notes),
                     "vendor": [[e, d.hex()] for e, d in answer.vendor_options],
                     "candidates": list(url.candidates), "url_notes": list(url.notes)}
print(json.dumps(out))
"""


def inform(pair: NetnsPair, *, enterprise: int = 0, first_wait: float = 1.0, read_enterprise: int | None = None,
           link_local: str | None = None, interface: str | None = None, index: int | None = None,
           mode: str = "run", timeout: float = 30.0) -> dict[str, Any]:
    args = {"mode": mode, "interface": interface or pair.client_if, "index": index,
            "link_local": link_local or pair.link_local(Side.CLIENT), "mac": MAC, "vendor_class": VENDOR_CLASS,
            "enterprise": enterprise, "first_wait": first_wait,
            "read_enterprise": enterprise if read_enterprise is None else read_enterprise}
    proc = pair.run_in_client([sys.executable, "-c", CLIENT, json.dumps(args)], timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def reply_from(pair: NetnsPair, tries: int = 1) -> str:
    return f"Reply from {pair.link_local(Side.SERVER)}%{pair.client_if} after {tries} tries"


BOOT = "http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml"


# --- against ISC dhcpd -6 -----------------------------------------------------------------------------------------


def test_url_from_boot_file_url_59(netns6: NetnsPair, dhcp6_server: Dhcp6Servers) -> None:
    server = dhcp6_server(boot_file_url=BOOT)
    result = inform(netns6)
    assert result["detail"] == reply_from(netns6)
    assert result["answer"]["candidates"] == [BOOT]
    assert "Information-request message from " + netns6.link_local(Side.CLIENT) in server.log_text()


def test_option_17_wins_over_59(netns_dual: NetnsPair, dhcp6_server: Dhcp6Servers) -> None:
    dhcp6_server(boot_file_url="http://[2001:db8:7b::1]/fallback.xml",
                 vendors=[Vendor(server="http://[2001:db8:7b::1]:8080", file="prov/<MACADR>.xml")])
    result = inform(netns_dual, enterprise=ENTERPRISE)
    assert result["answer"]["candidates"] == ["http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml"]
    assert f"server from option 17/0x42 (enterprise {ENTERPRISE}): http://[2001:db8:7b::1]:8080" in \
        result["answer"]["url_notes"]


def test_enterprise_filtering(netns6: NetnsPair, dhcp6_server: Dhcp6Servers) -> None:
    dhcp6_server(boot_file_url=BOOT, vendors=[Vendor(enterprise=4491, server="http://cablelabs.example"),
                                              Vendor(enterprise=ENTERPRISE, server="https://ours.example",
                                                     file="p.xml")])
    ours = inform(netns6, enterprise=ENTERPRISE)["answer"]
    assert ours["candidates"] == ["https://ours.example/p.xml"]
    assert sorted(e for e, _ in ours["vendor"]) == [4491, ENTERPRISE]
    nobody = inform(netns6, enterprise=9)["answer"]
    assert nobody["candidates"] == [BOOT]
    assert "option 17 for enterprise 4491 ignored: not 9" in nobody["url_notes"]
    anyone = inform(netns6, enterprise=0)["answer"]
    assert anyone["candidates"][0] in ("http://cablelabs.example", "https://ours.example/p.xml")


def test_ntp_servers_from_56_before_31_link_local_zoned(netns6: NetnsPair, dhcp6_server: Dhcp6Servers) -> None:
    server_ll = netns6.link_local(Side.SERVER)
    dhcp6_server(ntp=ntp_option_data(netns6.server_ip6, fqdns=["ntp.example.com"]), sntp=[server_ll, "2001:db8:7b::2"])
    answer = inform(netns6)["answer"]
    assert answer["ntp_servers"] == [netns6.server_ip6, "ntp.example.com", f"{server_ll}%{netns6.client_if}",
                                     "2001:db8:7b::2"]
    assert answer["candidates"] == []


def test_no_server_none_after_three_tries_with_the_rfc_timing(netns6: NetnsPair) -> None:
    capture = netns6.capture([547])
    result = inform(netns6, first_wait=0.2)
    assert result == {"detail": "no Reply after 3 tries", "elapsed": result["elapsed"], "answer": None}
    assert 0.9 * 1.4 <= result["elapsed"] < 1.4 * 1.1 + 0.5  # RT 0.2 + 0.4 + 0.8 s, each ±10 %
    sent = capture.wait_for(lambda p: p.dport == 547, count=3)
    assert len(sent) == 3
    gaps = [b.time - a.time for a, b in itertools.pairwise(sent)]
    assert 0.17 <= gaps[0] <= 0.22 + 0.15 and 0.35 <= gaps[1] <= 0.44 + 0.15  # never early; late only under load


def options_of(payload: bytes) -> dict[int, bytes]:
    out, i = {}, 4
    while i + 4 <= len(payload):
        code, length = int.from_bytes(payload[i:i + 2], "big"), int.from_bytes(payload[i + 2:i + 4], "big")
        out[code] = payload[i + 4:i + 4 + length]
        i += 4 + length
    return out


def test_on_the_wire(netns6: NetnsPair, dhcp6_server: Dhcp6Servers) -> None:
    capture = netns6.capture([546, 547])
    responder = dhcp6_server.scripted([ScriptedReply(options=option(59, BOOT.encode()))], answer_from=2)
    result = inform(netns6, enterprise=ENTERPRISE, first_wait=0.3)
    assert result["detail"] == reply_from(netns6, tries=2)
    client_ll = netns6.link_local(Side.CLIENT)
    sent: list[WirePacket] = capture.wait_for(lambda p: p.dport == 547, count=2)
    for packet in sent:
        assert (packet.src, packet.sport, packet.dst, packet.dport) == (client_ll, 546, "ff02::1:2", 547)
        assert packet.ttl == 1  # IPV6_MULTICAST_HOPS
        assert packet.payload[0] == 11  # Information-Request
        options = options_of(packet.payload)
        assert options[1] == DUID_LL
        oro = {int.from_bytes(options[6][i:i + 2], "big") for i in range(0, len(options[6]), 2)}
        assert {17, 23, 31, 56, 59} <= oro
        assert options[16] == ENTERPRISE.to_bytes(4, "big") + len(VENDOR_CLASS).to_bytes(2, "big") + b"auerswald-D400"
    assert sent[0].payload[1:4] == sent[1].payload[1:4]  # one transaction id for all transmissions
    first, second = (int.from_bytes(options_of(p.payload)[8], "big") for p in sent)
    assert first == 0 and 25 <= second <= 40  # hundredths since the first: RT 0.3 s ±10 %
    received = responder.requests()
    assert [r.hop_limit for r in received] == [1, 1] and {r.sport for r in received} == {546}
    replies = capture.wait_for(lambda p: p.sport == 547)
    assert replies[0].dst == client_ll and replies[0].dport == 546


# --- malformed Replies (the scripted responder) ---------------------------------------------------------------


def test_bad_datagrams_are_ignored_and_the_good_reply_after_them_wins(netns6: NetnsPair,
                                                                      dhcp6_server: Dhcp6Servers) -> None:
    good = option(59, BOOT.encode())
    dhcp6_server.scripted([
        ScriptedReply(raw=bytes(range(200))),  # garbage
        ScriptedReply(raw=b"\x07\x00"),  # shorter than a header
        ScriptedReply(xid="other", options=option(59, b"http://wrong-xid/")),
        ScriptedReply(msg_type=2, options=option(59, b"http://advertise/")),  # an Advertise is not a Reply
        ScriptedReply(client_id=bytes.fromhex("00030001000952ffffff"), options=option(59, b"http://other-client/")),
        ScriptedReply(options=good),
    ])
    result = inform(netns6)
    assert result["detail"] == reply_from(netns6) + " (5 other datagrams ignored)"
    assert result["answer"]["candidates"] == [BOOT]


def test_malformed_options_in_our_reply_are_noted_and_the_rest_used(netns6: NetnsPair,
                                                                    dhcp6_server: Dhcp6Servers) -> None:
    options = (option(13, b"\x00\x01busy") + option(31, b"\x20\x01" * 12)
               + option(17, ENTERPRISE.to_bytes(4, "big") + b"\x00\x42\x00\x40http://cut")
               + option(56, option(3, b"\x03ntp\xc0\x0c")) + option(59, BOOT.encode()) + b"\x00\x17\x00\x20")
    dhcp6_server.scripted([ScriptedReply(options=options)])
    answer = inform(netns6, enterprise=ENTERPRISE)["answer"]
    assert answer["candidates"] == [BOOT]
    assert answer["ntp_servers"] == []
    notes = " | ".join(answer["notes"])
    for expected in ("Status Code 1 (UnspecFail): busy", "option 31 is 24 bytes, not a multiple of 16",
                     f"option 17 (enterprise {ENTERPRISE}) ignored: malformed", "not a DNS name",
                     "option 23 claims 32 bytes, 0 remain"):
        assert expected in notes


@pytest.mark.parametrize("cut", [5, 9, 20, 24, 40])
def test_a_truncated_reply_is_read_as_far_as_it_goes(netns6: NetnsPair, dhcp6_server: Dhcp6Servers,
                                                     cut: int) -> None:
    """Cut in the Server Identifier (5, 9), in the Client Identifier's header (20) or its data (24), or in
    option 59 (40)."""
    dhcp6_server.scripted([ScriptedReply(options=option(59, BOOT.encode()), truncate=cut),
                           ScriptedReply(options=option(59, b"http://second/"))])
    result = inform(netns6)
    if cut == 24:  # a Client Identifier cut short cannot be ours: the next Reply wins
        assert result["answer"]["candidates"] == ["http://second/"]
    else:
        assert result["answer"]["candidates"] == []
        assert any("remain: ignored" in n or "stray bytes" in n for n in result["answer"]["notes"])


# --- failures, cancellation -------------------------------------------------------------------------------------


def test_no_such_interface_is_dhcp_unavailable(netns6: NetnsPair) -> None:
    result = inform(netns6, interface="nosuch0", index=0)
    assert result["type"] == "DhcpUnavailable" and "no such interface" in result["error"]
    result = inform(netns6, interface="nosuch0", index=2)
    assert result["type"] == "DhcpUnavailable" and "nosuch0" in result["error"]


def test_an_address_not_on_the_interface_is_dhcp_unavailable(netns6: NetnsPair) -> None:
    result = inform(netns6, link_local="fe80::dead:beef")
    assert result["type"] == "DhcpUnavailable"
    assert "fe80::dead:beef" in result["error"]


def test_cancelled_exchange_leaves_no_socket_and_no_task(netns6: NetnsPair) -> None:
    assert inform(netns6, mode="cancel", first_wait=5.0) == {"cancelled": True, "others": 0}
