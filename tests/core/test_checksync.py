"""Check-sync decisions (docs/design.md §6, §7): allowlist, events, bodies, retransmissions, torture messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from provd.core.checksync import Action, CheckSyncHandler, Policy, allowed
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
