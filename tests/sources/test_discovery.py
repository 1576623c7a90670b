"""Pure parts of discovery: the clock verdict, the PnP SUBSCRIBE and NOTIFY rules, and the staged race (in
virtual time: the sources sleep on a fake clock, so the race is decided by their deadlines, not by real sleeps)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from provd.core import clock, pnp, sip
from provd.model import Attempt, AttemptResult, Source
from provd.sources.discovery import Context, SourceProbe, discover
from tests.support.fakes import FakeClock

NOW = 1_800_000_000.0
BUILD = 1_790_000_000.0


def sample(**kw: Any) -> clock.NtpSample:
    base: dict[str, Any] = {"server": "ntp", "mode": 4, "leap": 0, "stratum": 8, "tx_time": NOW, "offset": 0.2}
    return clock.NtpSample(**{**base, **kw})


@pytest.mark.parametrize(("samples", "now", "valid"), [
    pytest.param([sample()], NOW, True, id="good"),
    pytest.param([sample(leap=3, stratum=0)], NOW, False, id="unsynchronised-chrony"),
    pytest.param([sample(stratum=16)], NOW, False, id="stratum-16"),
    pytest.param([sample(mode=3)], NOW, False, id="client-mode"),
    pytest.param([sample(tx_time=0)], NOW, False, id="no-transmit-time"),
    pytest.param([sample(offset=6.0)], NOW, False, id="offset-too-large"),
    pytest.param([sample(offset=-4.9)], NOW, True, id="offset-within"),
    pytest.param([sample(leap=3), sample(server="b")], NOW, True, id="second-server-counts"),
    pytest.param([sample()], BUILD - 1, False, id="before-build-date"),
    pytest.param([], NOW, False, id="nobody-answered"),
])
def test_clock(samples: list[clock.NtpSample], now: float, valid: bool) -> None:
    assert clock.judge(samples, max_offset_s=5, now=now, build_time=BUILD).valid is valid


def test_precondition_backoff() -> None:
    assert [clock.precondition_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 15, 15, 15]


MAC = "001565F4F9E1"


def test_subscribe_shape() -> None:
    sub = pnp.build_subscribe(mac=MAC, local_ip="10.123.0.50", local_port=5060, vendor="Auerswald", model="D400",
                              firmware="2.12A-00000", user_agent="Auerswald D400 2.12A-00000", branch="z9hG4bKx",
                              call_id="c@10.123.0.50", tag="t")
    message = sip.parse(sub.data)
    assert isinstance(message, sip.SipRequest)
    assert message.uri == "sip:MAC%3a001565F4F9E1@224.0.1.75"
    h = message.headers
    assert h.get("via") == "SIP/2.0/UDP 10.123.0.50:5060;branch=z9hG4bKx;rport"
    assert h.get("contact") == "<sip:10.123.0.50:5060>"
    assert h.get("expires") == "0"
    assert h.get("accept") == "application/url"
    assert h.get("event") == 'ua-profile;profile-type="device";vendor="Auerswald";model="D400";version="2.12A-00000"'
    assert h.get("from") == "<sip:MAC%3a001565F4F9E1@224.0.1.75>;tag=t"


def notify(body: bytes = b"http://10.123.0.1:8080/prov/001565F4F9E1.xml\r\n", *, call_id: str = "c",
           event: str = 'ua-profile;profile-type="device";vendor="OEM"', content_type: str = "application/url",
           method: str = "NOTIFY") -> bytes:
    return (f"{method} sip:10.123.0.50:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.123.0.1:5060;branch=z9hG4bK-1\r\n"
            f"From: <sip:MAC%3a{MAC}@224.0.1.75>;tag=srv\r\nTo: <sip:MAC%3a{MAC}@224.0.1.75>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nEvent: {event}\r\nSubscription-State: terminated\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.mark.parametrize(("data", "verdict", "url"), [
    pytest.param(notify(), pnp.Verdict.URL, "http://10.123.0.1:8080/prov/001565F4F9E1.xml", id="typical"),
    pytest.param(notify(call_id="other"), pnp.Verdict.URL, "http://10.123.0.1:8080/prov/001565F4F9E1.xml",
                 id="freeswitch-other-call-id"),
    pytest.param(notify(b"https://p/{mac}.xml"), pnp.Verdict.URL, f"https://p/{MAC}.xml", id="mac-macro"),
    pytest.param(notify(b"http://p/$mac.cfg"), pnp.Verdict.URL, f"http://p/{MAC}.cfg", id="planet-macro"),
    pytest.param(notify(b"", content_type='message/external-body; access-type="URL"; URL="http://p/x.xml"'),
                 pnp.Verdict.URL, "http://p/x.xml", id="external-body"),
    pytest.param(notify(b"tftp://10.13.4.121"), pnp.Verdict.IGNORE_ANSWER, None, id="tftp-refused"),
    pytest.param(notify(b"hello"), pnp.Verdict.IGNORE_ANSWER, None, id="not-a-url"),
    pytest.param(notify(event="check-sync"), pnp.Verdict.IGNORE_ANSWER, None, id="other-event"),
    pytest.param(notify(method="INVITE"), pnp.Verdict.IGNORE_ANSWER, None, id="other-method"),
    pytest.param(b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\n\r\n", pnp.Verdict.IGNORE, None,
                 id="the-200"),
    pytest.param(b"\x00\x01garbage", pnp.Verdict.IGNORE, None, id="garbage"),
])
def test_judge_notify(data: bytes, verdict: pnp.Verdict, url: str | None) -> None:
    judged = pnp.judge(data, call_id="c", mac=MAC)
    assert judged.verdict is verdict
    assert judged.url == url


def make(name: str, result: str, delay: float, log: list[str], clock: FakeClock) -> SourceProbe:
    async def source(_ctx: Context) -> Attempt:
        try:
            await clock.sleep(delay)
        except asyncio.CancelledError:
            log.append(f"{name} cancelled")
            raise
        log.append(f"{name} done")
        return Attempt(Source(name), AttemptResult(result), "test", f"http://{name}/" if result == "found" else None,
                       (f"http://{name}/",) if result == "found" else ())
    return source


SEQ = ((Source.DHCP,), (Source.REDIRECT, Source.MULTICAST), (Source.CONFIGURED,))


@pytest.mark.parametrize(("behaviour", "winner", "log", "elapsed"), [
    pytest.param({"dhcp": ("found", 0)}, "dhcp", ["dhcp done"], 0, id="dhcp-beats-all"),
    pytest.param({"redirect": ("found", 0.01), "multicast": ("found", 0.2)}, "redirect",
                 ["dhcp done", "redirect done", "multicast cancelled"], 0.01, id="redirect-wins-race"),
    pytest.param({"redirect": ("found", 0.2), "multicast": ("found", 0.01)}, "multicast",
                 ["dhcp done", "multicast done", "redirect cancelled"], 0.01, id="multicast-wins-race"),
    pytest.param({"redirect": ("none", 0.01), "multicast": ("found", 0.05)}, "multicast",
                 ["dhcp done", "redirect done", "multicast done"], 0.05, id="empty-answer-does-not-stop-the-other"),
    pytest.param({"configured": ("found", 0)}, "configured",
                 ["dhcp done", "redirect done", "multicast done", "configured done"], 0,
                 id="configured-last"),
    pytest.param({}, None, ["dhcp done", "redirect done", "multicast done", "configured done"], 0,
                 id="nothing"),
])
def test_sequence(behaviour: dict[str, tuple[str, float]], winner: str | None, log: list[str], elapsed: float,
                  ) -> None:
    seen: list[str] = []
    clock = FakeClock()
    sources = {s: make(s.value, *behaviour.get(s.value, ("none", 0.0)), seen, clock) for stage in SEQ for s in stage}
    result = asyncio.run(discover(cast(Context, _Ctx()), sources=sources, sequence=SEQ))
    assert (result.source.value if result.source else None) == winner
    assert seen == log
    assert clock.monotonic() == elapsed  # virtual seconds: the race took no real time
    assert [a.source.value for a in result.attempts] == ["dhcp", "redirect", "multicast", "configured"]
    if winner:
        later = [a for a in result.attempts if a.result is AttemptResult.SKIPPED]
        assert all("first" in a.detail for a in later)


class _Ctx:
    @staticmethod
    def progress(_line: str) -> None:
        return None
