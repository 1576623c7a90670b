"""Check-sync decisions (docs/design.md §6, §7): allowlist, events, bodies, retransmissions, torture messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from provd.core.checksync import Action, CheckSyncHandler, Policy, allowed, parse_allowlist, sender_label, sender_text
from provd.core.sip import SipResponse, parse
from tests.support.paths import TORTURE as TORTURE_DIR

SECTIONS = frozenset({"provisioning", "keys", "identities", "users", "telephony", "templates", "luaLibraries",
                      "contactList"})
PBX = ("192.0.2.10", 5060)
OPEN = Policy(active=True, allowlist=("192.0.2.10", "198.51.100.0/24"))


def notify(event: str = "check-sync", body: bytes = b"", *, cseq: str = "1 NOTIFY", branch: str = "z9hG4bK1",
           method: str = "NOTIFY", length: bool | str = True, uri: str = "sip:201@10.0.0.50") -> bytes:
    head = (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n"
            f"From: <sip:pbx@192.0.2.10>\r\nTo: <sip:201@10.0.0.50>\r\nCall-ID: cs1\r\nCSeq: {cseq}\r\n"
            f"Event: {event}\r\n")
    if length:
        head += f"Content-Length: {len(body) if length is True else length}\r\n"
    return head.encode() + b"\r\n" + body


def decide(data: bytes, policy: Policy = OPEN, source: tuple[str, int] = PBX, now: float = 0.0,
           handler: CheckSyncHandler | None = None) -> tuple[int | None, Action, str | None]:
    decision = (handler or CheckSyncHandler(SECTIONS)).handle(data, source=source, policy=policy, now=now)
    if decision.status is not None:
        assert decision.response is not None
        response = parse(decision.response)
        assert isinstance(response, SipResponse) and response.status == decision.status
    return decision.status, decision.action, decision.url


NOTIFY_SYNC = b"<notifySync><checkSync><url>https://prov/x.xml</url><dataAvailable>true</dataAvailable></checkSync></notifySync>"


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(notify(), (200, Action.RUN, None), id="plain"),
    pytest.param(notify(length=False), (200, Action.RUN, None), id="sipsak-no-content-length"),
    pytest.param(notify("check-sync;reboot=true"), (200, Action.RUN, None), id="reboot-param"),
    pytest.param(notify("resync"), (200, Action.RUN, None), id="resync"),
    pytest.param(notify("Check-Sync"), (200, Action.RUN, None), id="event-case-insensitive"),
    pytest.param(notify(body=NOTIFY_SYNC), (200, Action.RUN_URL, "https://prov/x.xml"), id="notifySync-url"),
    pytest.param(notify(body=b"<notifySync><checkSync/></notifySync>"), (200, Action.RUN, None),
                 id="notifySync-no-url"),
    pytest.param(notify(body=b"<notifySync><checkSync><url/></checkSync></notifySync>"), (200, Action.NONE, None),
                 id="notifySync-empty-url"),
    pytest.param(notify(body=b"<notifySync><reboot/></notifySync>"), (200, Action.REBOOT, None),
                 id="notifySync-reboot"),
    pytest.param(notify(body=b"<keys><phoneXtensions/></keys>"), (200, Action.RESTORE, None), id="snippet"),
    pytest.param(notify(body=b"<operations/>"), (200, Action.RESTORE, None), id="operations-snippet"),
    pytest.param(notify(body=b"<referencedSettings><url>a</url></referencedSettings>"), (400, Action.NONE, None),
                 id="reference-refused"),
    pytest.param(notify(body=b"<nonsense/>"), (400, Action.NONE, None), id="unknown-root"),
    pytest.param(notify(body=b"<!DOCTYPE x [<!ENTITY a 'b'>]><keys>&a;</keys>"), (400, Action.NONE, None),
                 id="doctype-body"),
    pytest.param(notify(body=b"<keys>"), (400, Action.NONE, None), id="malformed-body"),
    pytest.param(notify("dialog"), (489, Action.NONE, None), id="unknown-event"),
    pytest.param(notify(method="OPTIONS", cseq="1 OPTIONS"), (405, Action.NONE, None), id="options"),
    pytest.param(notify(cseq="1 INVITE"), (400, Action.NONE, None), id="cseq-mismatch"),
    pytest.param(notify(length="\u2460"), (400, Action.NONE, None), id="content-length-circled-one"),
    pytest.param(notify(length="\u0661", body=b" "), (400, Action.NONE, None), id="content-length-arabic-one"),
    pytest.param(notify(uri="*"), (400, Action.NONE, None), id="request-uri-asterisk"),
    pytest.param(notify(uri="http://192.0.2.10/"), (400, Action.NONE, None), id="request-uri-http"),
    pytest.param(notify(uri="tel:+4930123"), (200, Action.RUN, None), id="request-uri-tel"),
    pytest.param(notify(uri="sips:201@phone.example;transport=tls"), (200, Action.RUN, None), id="request-uri-sips"),
    pytest.param(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", (None, Action.NONE, None), id="response-not-answered"),
    pytest.param(b"\x00garbage", (None, Action.NONE, None), id="garbage-not-answered"),
])
def test_decisions(data: bytes, expected: tuple[int | None, Action, str | None]) -> None:
    assert decide(data) == expected


@pytest.mark.parametrize(("policy", "source", "status"), [
    pytest.param(OPEN, ("192.0.2.11", 5060), 403, id="not-listed"),
    pytest.param(OPEN, ("198.51.100.7", 5060), 200, id="in-listed-network"),
    pytest.param(Policy(False, ("192.0.2.10",)), PBX, 403, id="sip-inactive"),
    pytest.param(Policy(True, ()), PBX, 403, id="empty-allowlist"),
])
def test_allowlist(policy: Policy, source: tuple[str, int], status: int) -> None:
    got, action, _ = decide(notify(), policy, source)
    assert got == status
    assert (action is Action.RUN) == (status == 200)


def test_allowlist_entries() -> None:
    assert allowed("10.0.0.1", ("pbx.example.com", "10.0.0.1"))
    assert not allowed("not-an-ip", ("10.0.0.1",))


@pytest.mark.parametrize(("sender", "entry", "expected"), [
    pytest.param("192.0.2.7", "192.0.2.7", True, id="v4-address"),
    pytest.param("192.0.2.7", " 192.0.2.7\n", True, id="v4-whitespace"),
    pytest.param("192.0.2.7", "192.0.2.0/24", True, id="v4-network"),
    pytest.param("192.0.2.7", "192.0.2.99/24", True, id="v4-network-host-bits"),
    pytest.param("192.0.3.7", "192.0.2.0/24", False, id="v4-outside-network"),
    pytest.param("2001:db8::1", "2001:db8::1", True, id="v6-compressed"),
    pytest.param("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", True, id="v6-expanded"),
    pytest.param("2001:db8::1", "2001:DB8::1", True, id="v6-upper-case-entry"),
    pytest.param("2001:DB8::1", "2001:db8::1", True, id="v6-upper-case-sender"),
    pytest.param("2001:db8::1", "[2001:db8::1]", True, id="v6-in-brackets"),
    pytest.param("2001:db8::1", "[2001:db8::]/32", True, id="v6-network-in-brackets"),
    pytest.param("2001:db8::2", "2001:db8::1", False, id="v6-other-address"),
    pytest.param("2001:db8:ffff::9", "2001:db8::/32", True, id="v6-network"),
    pytest.param("2001:db9::1", "2001:db8::/32", False, id="v6-outside-network"),
    pytest.param("::1", "::1/128", True, id="v6-loopback-128"),
    pytest.param("2001:db8::1", "::/0", True, id="v6-everything"),
    pytest.param("fe80::1%eth0", "fe80::1", True, id="zone-on-sender-only"),
    pytest.param("fe80::1", "fe80::1%eth0", True, id="zone-on-entry-only"),
    pytest.param("fe80::1%eth1", "fe80::1%eth0", True, id="zones-differ-compared-without"),
    pytest.param("fe80::1%2", "fe80::/64", True, id="zone-sender-in-network"),
    pytest.param("fe80::1%eth0", "fe80::%eth0/64", True, id="zone-in-network-entry"),
    pytest.param("fe80::2%eth0", "fe80::1%eth0", False, id="zone-other-address"),
    pytest.param("::ffff:192.0.2.7", "192.0.2.7", True, id="mapped-sender-v4-entry"),
    pytest.param("::ffff:192.0.2.7", "192.0.2.0/24", True, id="mapped-sender-v4-network"),
    pytest.param("::FFFF:C000:0207", "192.0.2.7", True, id="mapped-sender-hex-form"),
    pytest.param("192.0.2.7", "::ffff:192.0.2.7", True, id="mapped-entry-v4-sender"),
    pytest.param("::ffff:192.0.2.7", "::ffff:192.0.2.7", True, id="mapped-entry-mapped-sender"),
    pytest.param("192.0.2.7", "::ffff:192.0.2.0/120", True, id="mapped-network-entry"),
    pytest.param("192.0.3.7", "::ffff:192.0.2.0/120", False, id="mapped-network-entry-outside"),
    pytest.param("::ffff:192.0.2.7", "::/0", False, id="v6-everything-is-not-v4"),
    pytest.param("192.0.2.7", "::/0", False, id="v6-everything-is-not-v4-plain"),
    pytest.param("2001:db8::1", "0.0.0.0/0", False, id="v4-everything-is-not-v6"),
    pytest.param("::1", "127.0.0.1", False, id="v6-loopback-is-not-v4-loopback"),
    pytest.param("::ffff:127.0.0.1", "127.0.0.1", True, id="mapped-loopback"),
    pytest.param("192.0.2.7", "::192.0.2.7", False, id="v4-compatible-is-not-mapped"),
    pytest.param("192.0.2.7", "pbx.example.com", False, id="host-name-matches-nothing"),
    pytest.param("not-an-ip", "0.0.0.0/0", False, id="sender-not-an-address"),
    pytest.param("", "::/0", False, id="sender-empty"),
])
def test_allowlist_forms(sender: str, entry: str, expected: bool) -> None:
    assert allowed(sender, (entry,)) is expected


@pytest.mark.parametrize("entry", [
    pytest.param("pbx.example.com", id="host-name"),
    pytest.param("192.0.2.7:5060", id="v4-with-port"),
    pytest.param("[2001:db8::1]:5060", id="v6-with-port"),
    pytest.param("2001:db8::1]", id="half-bracket"),
    pytest.param("[2001:db8::1", id="open-bracket"),
    pytest.param("192.0.2.0/33", id="v4-prefix-too-long"),
    pytest.param("2001:db8::/129", id="v6-prefix-too-long"),
    pytest.param("192.0.2.0/", id="empty-prefix"),
    pytest.param("/0", id="prefix-only"),
    pytest.param("*", id="star"),
    pytest.param("any", id="any"),
    pytest.param("192.000.002.007", id="v4-leading-zeros"),
    pytest.param("192.0.2.7%eth0", id="v4-with-zone"),
    pytest.param("2001:db8::1::2", id="v6-two-double-colons"),
    pytest.param("2001:db8:::1", id="v6-triple-colon"),
    pytest.param("gggg::1", id="v6-not-hex"),
    pytest.param("::1/-1", id="negative-prefix"),
    pytest.param("10", id="bare-number"),
    pytest.param("%eth0", id="zone-only"),
    pytest.param("fe80::1%", id="empty-zone"),
])
def test_malformed_entry_is_ignored_and_named_never_matches(entry: str) -> None:
    parsed = parse_allowlist((entry, "2001:db8::1"))
    assert parsed.ignored == (entry,)
    assert [str(n) for n in parsed.networks] == ["2001:db8::1/128"]
    for sender in ("192.0.2.7", "10.0.0.10", "::1", "2001:db8::2", "::ffff:192.0.2.7", "0.0.0.0"):
        assert not allowed(sender, (entry,)), sender
    assert allowed("2001:db8::1", (entry, "2001:db8::1"))  # the good entries beside it still count


def test_allowlist_networks_parsed_once_duplicates_dropped() -> None:
    parsed = parse_allowlist(("192.0.2.7", "::ffff:192.0.2.7", "  ", "2001:DB8::1", "2001:db8::1"))
    assert [str(n) for n in parsed.networks] == ["192.0.2.7/32", "2001:db8::1/128"]
    assert parsed.ignored == ()


@pytest.mark.parametrize(("host", "port", "text", "label"), [
    pytest.param("192.0.2.7", 5060, "192.0.2.7", "192.0.2.7:5060", id="v4"),
    pytest.param("::ffff:192.0.2.7", 5070, "192.0.2.7", "192.0.2.7:5070", id="mapped-is-v4"),
    pytest.param("2001:0DB8::0001", 5060, "2001:db8::1", "[2001:db8::1]:5060", id="v6-normal-form"),
    pytest.param("::1", 40000, "::1", "[::1]:40000", id="v6-loopback"),
    pytest.param("fe80::1%eth0", 5060, "fe80::1%eth0", "[fe80::1%eth0]:5060", id="link-local-keeps-zone"),
    pytest.param("odd", 1, "odd", "odd:1", id="not-an-address-as-given"),
])
def test_sender_in_logs(host: str, port: int, text: str, label: str) -> None:
    assert (sender_text(host), sender_label(host, port)) == (text, label)


@pytest.mark.parametrize(("source", "entry", "status"), [
    pytest.param(("2001:db8::10", 5060), "2001:db8::/64", 200, id="v6-network"),
    pytest.param(("2001:db8:1::10", 5060), "2001:db8::/64", 403, id="v6-outside"),
    pytest.param(("::ffff:192.0.2.10", 5060), "192.0.2.10", 200, id="mapped-v4"),
    pytest.param(("::ffff:192.0.2.10", 5060), "pbx.example.com", 403, id="host-name-only"),
])
def test_allowlist_decides_ipv6_and_mapped_senders(source: tuple[str, int], entry: str, status: int) -> None:
    got, action, _ = decide(notify(), Policy(True, (entry,)), source)
    assert got == status
    assert (action is Action.RUN) == (status == 200)


def test_mapped_and_plain_ipv4_sender_are_one_transaction() -> None:
    """A retransmission is recognised whether the IPv4 sender came through an IPv4 or a dual-stack socket."""
    handler = CheckSyncHandler(SECTIONS)
    first = handler.handle(notify(), source=("192.0.2.10", 5060), policy=OPEN, now=0.0)
    again = handler.handle(notify(), source=("::ffff:192.0.2.10", 5060), policy=OPEN, now=0.5)
    assert first.action is Action.RUN and "192.0.2.10" in first.reason and "::ffff" not in first.reason
    assert again.retransmission and again.response == first.response


def test_retransmission_gets_same_answer_and_starts_nothing() -> None:
    handler = CheckSyncHandler(SECTIONS)
    first = handler.handle(notify(), source=PBX, policy=OPEN, now=0.0)
    again = handler.handle(notify(), source=PBX, policy=OPEN, now=1.0)
    assert first.action is Action.RUN
    assert again.retransmission and again.action is Action.NONE and again.response == first.response
    later = handler.handle(notify(), source=PBX, policy=OPEN, now=40.0)
    assert later.action is Action.RUN  # after the transaction's lifetime it is a new request
    other = handler.handle(notify(branch="z9hG4bK2", cseq="2 NOTIFY"), source=PBX, policy=OPEN, now=41.0)
    assert other.action is Action.RUN


TORTURE = sorted(TORTURE_DIR.glob("*.dat"))


@pytest.mark.parametrize("path", TORTURE, ids=lambda p: p.stem)
def test_torture_never_accepted(path: Path) -> None:
    status, action, _ = decide(path.read_bytes(), Policy(True, ("0.0.0.0/0",)))
    assert action is Action.NONE
    assert status != 200
