"""The PnP SUBSCRIBE over IPv6 (core.pnp): bracketed hosts everywhere a host appears (RFC 3261 §25.1, RFC 5118),
the IPv4 form unchanged; a NOTIFY over IPv6 judged like any other; the configured IPv6 group checked; and the
multicast source passing the interface's IPv6 address on and reporting the family that answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from provd.config import Config, MulticastConfig, parse
from provd.core import pnp, sip
from provd.errors import ConfigError
from provd.model import AttemptResult, Device, Family, Switches, quiet
from provd.ports import HttpOptions
from provd.sources.discovery import Context, _source_multicast
from tests.support.fakes import FakeMulticast, World

MAC = "001565F4F9E1"


def subscribe6(local_ip: str = "2001:db8:7b::50") -> sip.SipRequest:
    sub = pnp.build_subscribe(mac=MAC, local_ip=local_ip, local_port=5060, vendor="Auerswald", model="D400",
                              firmware="2.12A-00000", user_agent="Auerswald D400 2.12A-00000", group="ff02::175",
                              branch="z9hG4bKx", tag="t")
    message = sip.parse(sub.data)
    assert isinstance(message, sip.SipRequest)
    assert sub.call_id == message.headers.get("call-id")
    return message


def test_ipv6_subscribe_brackets_every_host() -> None:
    message = subscribe6()
    h = message.headers
    assert message.uri == "sip:MAC%3a001565F4F9E1@[ff02::175]"
    assert h.get("via") == "SIP/2.0/UDP [2001:db8:7b::50]:5060;branch=z9hG4bKx;rport"
    assert h.get("contact") == "<sip:[2001:db8:7b::50]:5060>"
    assert h.get("from") == "<sip:MAC%3a001565F4F9E1@[ff02::175]>;tag=t"
    assert h.get("to") == "<sip:MAC%3a001565F4F9E1@[ff02::175]>"
    assert (h.get("call-id") or "").endswith("@[2001:db8:7b::50]")
    assert sip.valid_request_uri(message.uri)
    assert h.get("event") == 'ua-profile;profile-type="device";vendor="Auerswald";model="D400";version="2.12A-00000"'


def test_link_local_source_drops_the_zone() -> None:
    h = subscribe6("fe80::209:52ff:fe00:e%veth-cli").headers
    assert h.get("via") == "SIP/2.0/UDP [fe80::209:52ff:fe00:e]:5060;branch=z9hG4bKx;rport"
    assert h.get("contact") == "<sip:[fe80::209:52ff:fe00:e]:5060>"


def test_ipv4_subscribe_unchanged_by_default() -> None:
    sub = pnp.build_subscribe(mac=MAC, local_ip="10.123.0.50", local_port=5060, vendor="v", model="D400",
                              firmware="1", user_agent="ua", branch="z9hG4bKx", tag="t")
    text = sub.data.decode()
    assert text.startswith("SUBSCRIBE sip:MAC%3a001565F4F9E1@224.0.1.75 SIP/2.0\r\n")
    assert "\r\nVia: SIP/2.0/UDP 10.123.0.50:5060;branch=z9hG4bKx;rport\r\n" in text
    assert "\r\nContact: <sip:10.123.0.50:5060>\r\n" in text and "[" not in text
    assert sub.call_id.endswith("@10.123.0.50")


@pytest.mark.parametrize(("address", "host"), [
    pytest.param("10.123.0.50", "10.123.0.50", id="ipv4"),
    pytest.param("2001:db8::1", "[2001:db8::1]", id="ipv6"),
    pytest.param("[2001:db8::1]", "[2001:db8::1]", id="already-bracketed"),
    pytest.param("fe80::1%eth0", "[fe80::1]", id="zone-dropped"),
    pytest.param("ff02::175", "[ff02::175]", id="group"),
])
def test_sip_host(address: str, host: str) -> None:
    assert pnp.sip_host(address) == host


def notify6(body: bytes, *, call_id: str = "c") -> bytes:
    return ("NOTIFY sip:[2001:db8:7b::50]:5060 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8:7b::1]:5060;branch=z9hG4bK-1\r\n"
            f"From: <sip:MAC%3a{MAC}@[ff02::175]>;tag=srv\r\nTo: <sip:MAC%3a{MAC}@[ff02::175]>;tag=t\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 NOTIFY\r\nEvent: ua-profile\r\nSubscription-State: terminated\r\n"
            f"Content-Type: application/url\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize(("data", "verdict", "url"), [
    pytest.param(notify6(b"http://[2001:db8:7b::1]:8080/prov/{mac}.xml"), pnp.Verdict.URL,
                 f"http://[2001:db8:7b::1]:8080/prov/{MAC}.xml", id="ipv6-literal-url"),
    pytest.param(notify6(b"http://[2001:db8:7b::1]/x.xml", call_id="other@[2001:db8:7b::1]"), pnp.Verdict.URL,
                 "http://[2001:db8:7b::1]/x.xml", id="other-call-id"),
    pytest.param(notify6(b"tftp://[2001:db8:7b::1]/x"), pnp.Verdict.IGNORE_ANSWER, None, id="tftp-refused"),
    pytest.param(b"NOTIFY sip:[2001:db8:7b::50]:5060 SIP/2.0\r\nVia SIP/2.0/UDP [2001:db8:7b::1]\r\n\r\nhttp://x/",
                 pnp.Verdict.IGNORE, None, id="malformed-header"),
    pytest.param(b"NOTIFY sip:[2001:db8:7b::50 SIP/2.0\r\n\r\n", pnp.Verdict.IGNORE, None, id="no-headers"),
])
def test_judge_ipv6_notify(data: bytes, verdict: pnp.Verdict, url: str | None) -> None:
    judged = pnp.judge(data, call_id="c", mac=MAC)
    assert (judged.verdict, judged.url) == (verdict, url)


def test_answer_to_an_ipv6_notify_echoes_its_bracketed_headers() -> None:
    request = sip.parse(notify6(b"http://[2001:db8:7b::1]/x.xml"))
    assert isinstance(request, sip.SipRequest)
    answer = sip.parse(sip.response(request, 200, to_tag="ours"))
    assert isinstance(answer, sip.SipResponse) and answer.status == 200
    assert answer.headers.get("via") == "SIP/2.0/UDP [2001:db8:7b::1]:5060;branch=z9hG4bK-1"


# --- the configured group ------------------------------------------------------------------------------------


def test_default_group6_is_the_link_scope_sip_group() -> None:
    assert MulticastConfig().group6 == "ff02::175"  # IANA FF0X::175 "all SIP servers", X = 2 (link)


@pytest.mark.parametrize("value", ["ff02::175", "ff05::175", "FF02::175"])
def test_group6_accepts_multicast(value: str) -> None:
    assert parse(f"multicast: {{group6: '{value}'}}\n", source="t.yaml").multicast.group6 == value


@pytest.mark.parametrize("value", ["2001:db8::1", "224.0.1.75", "ff02::175%eth0", "nonsense", "5"])
def test_group6_refuses_anything_else(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f"multicast: {{group6: {value!r}}}\n", source="t.yaml")
    assert "multicast.group6" in str(caught.value)


# --- the source: what it passes to the port, what it reports --------------------------------------------------


def context(multicast: FakeMulticast, *, address: str = "", address6: str = "", link_local: str = "",
            index: int = 0) -> Context:
    world = World(multicast=multicast)
    return Context(config=Config(), device=Device("D400", "S1", MAC, "2.12A"),
                   switches=Switches(dhcp=False, redirect=False, pbx=True, url=""),
                   client=world.web.client(HttpOptions(1.0, 1, 1, "t")), progress=quiet, ports=world.ports(),
                   address=address, address6=address6, link_local=link_local, index=index)


@pytest.mark.parametrize(("addresses", "local_ip6"), [
    pytest.param({"address": "10.0.0.5", "address6": "2001:db8::5", "link_local": "fe80::5", "index": 3},
                 "2001:db8::5", id="global-preferred"),
    pytest.param({"address": "", "address6": "", "link_local": "fe80::5", "index": 3}, "fe80::5",
                 id="link-local-only"),
    pytest.param({"address": "10.0.0.5", "index": 3}, "", id="ipv4-only"),
])
def test_source_passes_the_ipv6_address_and_group(addresses: dict[str, Any], local_ip6: str) -> None:
    fake = FakeMulticast("http://[2001:db8::1]/p.xml", family=Family.IPV6)
    attempt = asyncio.run(_source_multicast(context(fake, **addresses)))
    (call,) = fake.lookups
    assert (call["local_ip"], call["local_ip6"], call["index"], call["group6"]) == (
        addresses["address"], local_ip6, 3, "ff02::175")
    assert (attempt.result, attempt.family) == (AttemptResult.FOUND, Family.IPV6)
    assert attempt.to_json()["family"] == "ipv6"


def test_source_reports_ipv4_when_ipv4_answered() -> None:
    attempt = asyncio.run(_source_multicast(context(FakeMulticast("http://p/x.xml"), address="10.0.0.5", index=3)))
    assert (attempt.result, attempt.family) == (AttemptResult.FOUND, Family.IPV4)


def test_source_without_an_answer_names_no_family() -> None:
    attempt = asyncio.run(_source_multicast(context(FakeMulticast(None), address="10.0.0.5", index=3)))
    assert (attempt.result, attempt.family) == (AttemptResult.NONE, None)
