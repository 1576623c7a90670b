"""provd's multicast SUBSCRIBE over IPv6 against real peers (docs/design.md §6, §11): sipp (and a small Python
responder for a NOTIFY from another port or a malformed one) on the server side of a namespace pair, joined to
ff02::175 on its veth; provd's own lookup (`provd.sources.multicast`) run in the client namespace with the
interface's addresses set as the preconditions would set them; the wire read by AF_PACKET recorders."""

from __future__ import annotations

import json
import sys
from typing import Any

from provd.config import MulticastConfig
from tests.support.peers.netns import NetnsPair, Side, WirePacket
from tests.support.peers.sip import (
    PNP_GROUP6,
    PnpMode,
    capture6,
    leave_group4,
    start_pnp_responder,
    start_pnp_responder6,
)

WINDOW_S = 4.0
# The lookup as discovery runs it, in the client namespace: kwargs in, the PnpOutcome out as JSON.
_LOOKUP = """
import asyncio, json, sys
from provd.errors import MulticastUnavailable
from provd.sources import multicast
try:
    outcome = asyncio.run(multicast.lookup(**json.loads(sys.argv[1])))
except MulticastUnavailable as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"url": outcome.url, "detail": outcome.detail, "seen": outcome.seen,
                      "family": outcome.family.value if outcome.family else None}))
"""


def lookup(pair: NetnsPair, *, ipv4: bool | str, ipv6: str = "global", window_s: float = WINDOW_S) -> dict[str, Any]:
    """provd's multicast lookup from the client. `ipv4`: True = the client's address, False = none, or an address;
    `ipv6`: "global", "link-local", "" (no IPv6 socket), or an address."""
    index = int(pair.run_in_client(["cat", f"/sys/class/net/{pair.client_if}/ifindex"], check=True).stdout)
    local_ip = pair.client_ip if ipv4 is True else "" if ipv4 is False else ipv4
    named = {"global": pair.client_ip6, "link-local": pair.link_local(Side.CLIENT) if ipv6 == "link-local" else ""}
    kwargs = {"local_ip": local_ip, "local_ip6": named.get(ipv6, ipv6), "index": index,
              "mac": pair.client_mac_marker, "local_port": 5060, "group": "224.0.1.75",
              "group6": MulticastConfig().group6, "port": 5060, "window_s": window_s, "vendor": "Auerswald",
              "model": "D400", "firmware": "2.12A", "user_agent": "Auerswald D400 2.12A provd/test"}
    proc = pair.run_in_client([sys.executable, "-c", _LOOKUP, json.dumps(kwargs)], timeout=window_s + 20)
    assert proc.returncode == 0 and proc.stdout.strip(), (proc.returncode, proc.stderr)  # no traceback, ever
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def is_subscribe(packet: WirePacket) -> bool:
    return not packet.outgoing and packet.payload.startswith(b"SUBSCRIBE ")


def is_ok_to_notify(packet: WirePacket) -> bool:
    return not packet.outgoing and packet.payload.startswith(b"SIP/2.0 200") and \
        (packet.header("CSeq") or "").endswith("NOTIFY")


def test_ipv6_only_link_sipp_answers_and_provd_takes_the_url(netns6: NetnsPair) -> None:
    url = f"http://[{netns6.server_ip6}]:8080/prov/{netns6.client_mac_marker}.xml"
    responder = start_pnp_responder6(netns6, url)
    result = lookup(netns6, ipv4=False)
    assert (result["url"], result["family"]) == (url, "ipv6")
    assert result["detail"] == f"NOTIFY from [{netns6.server_ip6}]:5060"  # sipp keeps our Call-ID
    assert responder.wait_finished() == 0  # sipp got provd's 200 to its NOTIFY
    sub = responder.subscribes()[0]
    assert (sub.src, sub.sport, sub.dst, sub.dport, sub.ttl) == (netns6.client_ip6, 5060, PNP_GROUP6, 5060, 1)
    assert sub.start_line == f"SUBSCRIBE sip:MAC%3a{netns6.client_mac_marker}@[{PNP_GROUP6}] SIP/2.0"
    assert (sub.header("Via") or "").startswith(f"SIP/2.0/UDP [{netns6.client_ip6}]:5060;branch=z9hG4bK")
    assert sub.header("Contact") == f"<sip:[{netns6.client_ip6}]:5060>"
    assert (sub.header("Expires"), sub.header("Accept")) == ("0", "application/url")
    (ok,) = responder.capture.wait_for(is_ok_to_notify)
    notify = next(p for p in responder.sent() if p.payload.startswith(b"NOTIFY "))
    assert (ok.src, ok.sport, ok.dst, ok.dport) == (netns6.client_ip6, 5060, notify.src, notify.sport)
    assert ok.header("Call-ID") == notify.header("Call-ID") == sub.header("Call-ID")


def test_notify_from_another_port_is_answered_to_that_port(netns6: NetnsPair) -> None:
    url = f"http://[{netns6.server_ip6}]:8080/p.xml"
    responder = start_pnp_responder6(netns6, url, mode=PnpMode.OTHER_PORT)
    result = lookup(netns6, ipv4=False)
    assert (result["url"], result["family"]) == (url, "ipv6")
    assert responder.wait_finished() == 0  # the 200 reached the ephemeral port the NOTIFY came from
    notify = next(p for p in responder.sent() if p.payload.startswith(b"NOTIFY "))
    assert notify.sport != 5060
    (ok,) = responder.capture.wait_for(is_ok_to_notify)
    assert (ok.dst, ok.dport) == (netns6.server_ip6, notify.sport)


def test_link_local_source_when_there_is_no_global_address(netns6: NetnsPair) -> None:
    url = f"http://[{netns6.server_ip6}]:8080/ll.xml"
    responder = start_pnp_responder6(netns6, url)
    link_local = netns6.link_local(Side.CLIENT)
    result = lookup(netns6, ipv4=False, ipv6="link-local")
    assert (result["url"], result["family"]) == (url, "ipv6")
    assert responder.wait_finished() == 0
    sub = responder.subscribes()[0]
    assert (sub.src, sub.dst, sub.ttl) == (link_local, PNP_GROUP6, 1)
    assert sub.header("Contact") == f"<sip:[{link_local}]:5060>"


def test_malformed_notify_is_ignored_and_noted(netns6: NetnsPair) -> None:
    url = f"http://[{netns6.server_ip6}]:8080/after.xml"
    # A header line without its colon, and a URL in the body that must not be taken.
    garbage = (f"NOTIFY sip:[{netns6.client_ip6}]:5060 SIP/2.0\r\nVia SIP/2.0/UDP [{netns6.server_ip6}]:5060\r\n"
               f"Event: ua-profile\r\nContent-Type: application/url\r\n\r\nhttp://[{netns6.server_ip6}]/evil.xml")
    responder = start_pnp_responder6(netns6, url, mode=PnpMode.OTHER_PORT, malformed=garbage,
                                     notify_delay_ms=300)
    result = lookup(netns6, ipv4=False)
    assert (result["url"], result["family"]) == (url, "ipv6")  # the good NOTIFY after it still wins
    assert any(line.startswith(f"[{netns6.server_ip6}]:") and "malformed SIP" in line for line in result["seen"])
    assert responder.wait_finished() == 0
    answers = [p for p in responder.capture.packets() if not p.outgoing and p.payload.startswith(b"SIP/2.0 ")]
    assert all((p.header("CSeq") or "").endswith("NOTIFY") for p in answers)  # nothing said to the garbage


def test_malformed_notify_alone_gives_no_url(netns6: NetnsPair) -> None:
    start_pnp_responder6(netns6, "not a url", mode=PnpMode.OTHER_PORT,
                         malformed="\x01\x02 garbage", notify_delay_ms=100)
    result = lookup(netns6, ipv4=False, window_s=2.0)
    assert (result["url"], result["family"]) == (None, None)
    assert any("malformed SIP" in line for line in result["seen"])
    assert any("ua-profile NOTIFY with an unusable URL" in line or "without a URL" in line
               for line in result["seen"])


def test_dual_stack_responder_on_ipv6_only_wins(netns_dual: NetnsPair) -> None:
    leave_group4(netns_dual)  # the server hears the IPv6 group only
    capture4 = netns_dual.capture()
    url = f"http://[{netns_dual.server_ip6}]:8080/dual6.xml"
    responder = start_pnp_responder6(netns_dual, url)
    result = lookup(netns_dual, ipv4=True)
    assert (result["url"], result["family"]) == (url, "ipv6")
    assert responder.wait_finished() == 0
    (sub4, *_) = capture4.wait_for(is_subscribe)  # the IPv4 SUBSCRIBE went out too, with its own Call-ID
    sub6 = responder.subscribes()[0]
    assert (sub4.src, sub4.dst, sub4.ttl) == (netns_dual.client_ip, "224.0.1.75", 1)
    assert (sub4.header("Via") or "").startswith(f"SIP/2.0/UDP {netns_dual.client_ip}:5060;")
    assert sub4.header("Call-ID") != sub6.header("Call-ID")


def test_dual_stack_responder_on_ipv4_only_still_wins(netns_dual: NetnsPair) -> None:
    wire6 = capture6(netns_dual)
    url = "http://10.123.0.1:8080/dual4.xml"
    responder = start_pnp_responder(netns_dual, url)  # sipp on 0.0.0.0; the server never joins ff02::175
    result = lookup(netns_dual, ipv4=True)
    assert (result["url"], result["family"]) == (url, "ipv4")
    assert result["detail"] == f"NOTIFY from {netns_dual.server_ip}:5060"
    assert responder.wait_finished() == 0
    (sub6, *_) = wire6.wait_for(is_subscribe)  # the IPv6 socket sent too, and broke nothing
    assert (sub6.src, sub6.dst, sub6.ttl) == (netns_dual.client_ip6, PNP_GROUP6, 1)


def test_ipv6_socket_that_cannot_be_set_up_is_noted_and_ipv4_goes_on(netns_dual: NetnsPair) -> None:
    url = "http://10.123.0.1:8080/v4.xml"
    responder = start_pnp_responder(netns_dual, url)
    result = lookup(netns_dual, ipv4=True, ipv6="2001:db8:7b::99")  # not an address of the client
    assert (result["url"], result["family"]) == (url, "ipv4")
    assert result["seen"][0].startswith("cannot use UDP [2001:db8:7b::99]:5060 on interface ")
    assert responder.wait_finished() == 0


def test_ipv4_socket_that_cannot_be_set_up_is_noted_and_ipv6_goes_on(netns_dual: NetnsPair) -> None:
    leave_group4(netns_dual)
    url = f"http://[{netns_dual.server_ip6}]:8080/v6.xml"
    responder = start_pnp_responder6(netns_dual, url)
    result = lookup(netns_dual, ipv4="10.123.0.99")
    assert (result["url"], result["family"]) == (url, "ipv6")
    assert result["seen"][0].startswith("cannot use UDP 10.123.0.99:5060")
    assert responder.wait_finished() == 0


def test_both_families_failing_is_multicast_unavailable(netns_dual: NetnsPair) -> None:
    result = lookup(netns_dual, ipv4="10.123.0.99", ipv6="2001:db8:7b::99", window_s=1.0)
    assert result["error"] == "MulticastUnavailable"
    assert "10.123.0.99" in result["message"] and "[2001:db8:7b::99]" in result["message"]
