"""SIP NOTIFY check-sync (docs/design.md §6, §7): what to answer and what to do. Pure apart from the small state it
keeps (a transaction cache), with the time as a parameter.

Accepted: a NOTIFY with `Event: check-sync` (parameters such as `reboot=true` allowed) or `resync`, from an
allow-listed sender while `provisioning/sip/active` is true — also in the shape administrators' tools send
(no From tag, no Max-Forwards, no Content-Length over UDP). The optional body is the vendor's `notifySync`
XML (`checkSync/url` → a run with that URL, `reboot` → the reboot hook) or a settings snippet (applied as a
manual restore; a reference file is refused). Answers: 200 (answer first, then act), 403 not allowed,
489 unknown event, 400 malformed (a bad Content-Length, a Request-URI that is not sip:/sips:/tel: such as
`*`): only a valid request gets a 2xx. Responses are never answered; a retransmitted request gets the same
answer from the transaction cache, and starts nothing new.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import Enum

from provd.core import sip
from provd.core.documents import Door, detect_kind, parse_xml, reference_refusal
from provd.errors import DocumentError
from provd.xmltree import Element

EVENTS = frozenset({"check-sync", "resync"})
MAX_BODY = 256 * 1024
CACHE_SECONDS = 32.0  # RFC 3261 Timer J for UDP: retransmits of a non-INVITE request come within it
CACHE_ENTRIES = 64


class Action(Enum):
    NONE = "none"
    RUN = "run"  # a provisioning run from the normal sources
    RUN_URL = "run-url"  # a run from `url`
    RESTORE = "restore"  # apply `body` as a manual restore
    REBOOT = "reboot"  # the reboot hook only


@dataclass(frozen=True)
class Policy:
    active: bool  # provisioning/sip/active
    allowlist: tuple[str, ...]  # provisioning/sip/allowlist/allowlistEntry: addresses or networks


@dataclass(frozen=True)
class Decision:
    status: int | None  # None: do not answer
    action: Action
    reason: str
    response: bytes | None = None
    url: str | None = None
    body: bytes | None = None
    reboot: bool = False  # after the action, run the reboot hook (when configured)
    retransmission: bool = False
    event: str | None = None  # the Event header's package, for the log line (docs/design.md §9)


def allowed(source_ip: str, allowlist: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    for entry in allowlist:
        try:
            if address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue  # a host name or garbage in the allowlist matches nothing
    return False


class CheckSyncHandler:
    def __init__(self, sections: frozenset[str]) -> None:
        self._sections = sections  # the settings sections a snippet body may name
        self._answered: OrderedDict[tuple[str, ...], tuple[float, Decision]] = OrderedDict()

    def handle(self, data: bytes, *, source: tuple[str, int], policy: Policy, now: float) -> Decision:
        malformed: sip.SipParseError | None = None
        try:
            message = sip.parse(data)
        except sip.SipParseError as exc:
            if exc.request is None:
                return Decision(None, Action.NONE, f"malformed SIP, not answered: {exc}")
            message, malformed = exc.request, exc  # a broken Content-Length: headers enough to answer 400
        if isinstance(message, sip.SipResponse):
            return Decision(None, Action.NONE, f"a response ({message.status}) is never answered")
        if message.method == "ACK" or not sip.can_answer(message):
            return Decision(None, Action.NONE, f"{message.method} without the headers a response needs")
        # RFC 3261 §17.2.3: a retransmission carries the same branch, Call-ID and CSeq (its source port
        # may differ behind NAT); the sender address keeps two senders apart.
        key = (source[0], sip.branch(message) or "", message.headers.get("call-id") or "",
               message.headers.get("cseq") or "")
        self._expire(now)
        cached = self._answered.get(key)
        if cached is not None:
            previous = cached[1]
            return Decision(previous.status, Action.NONE, "retransmission: same answer, nothing new started",
                            previous.response, retransmission=True, event=previous.event)
        if malformed is not None:
            decision = _answer(message, malformed.status, Action.NONE, f"malformed: {malformed}")
        else:
            decision = self._decide(message, source[0], policy)
        event = sip.event(message)
        decision = replace(decision, event=event.package if event else None)
        self._answered[key] = (now, decision)
        while len(self._answered) > CACHE_ENTRIES:
            self._answered.popitem(last=False)
        return decision

    def _expire(self, now: float) -> None:
        while self._answered:
            key, (when, _) = next(iter(self._answered.items()))
            if now - when < CACHE_SECONDS:
                break
            del self._answered[key]

    def _decide(self, message: sip.SipRequest, source_ip: str, policy: Policy) -> Decision:
        try:
            sip.check_mandatory(message)
        except sip.SipParseError as exc:
            return _answer(message, 400, Action.NONE, f"malformed: {exc}")
        if message.method != "NOTIFY":
            return _answer(message, 405, Action.NONE, f"{message.method} is not accepted here")
        event = sip.event(message)
        if event is None or event.package not in EVENTS:
            return _answer(message, 489, Action.NONE, f"unknown event {event.package if event else '(none)'}")
        if not policy.active:
            return _answer(message, 403, Action.NONE,
                           f"check-sync from {source_ip} refused: provisioning/sip/active is false")
        if not allowed(source_ip, policy.allowlist):
            return _answer(message, 403, Action.NONE,
                           f"check-sync from {source_ip} refused: not on provisioning/sip/allowlist")
        reboot = event.params.get("reboot", "").lower() == "true"
        body = message.body.strip()
        if not body:
            return _answer(message, 200, Action.RUN, f"check-sync from {source_ip}", reboot=reboot)
        try:
            root, _ = parse_xml(body, source=f"NOTIFY from {source_ip}", max_bytes=MAX_BODY)
            if root.tag == "notifySync":
                return _notify_sync(message, root, source_ip, reboot)
            kind = detect_kind(root, source="NOTIFY body", sections=self._sections)
        except DocumentError as exc:
            return _answer(message, 400, Action.NONE, f"body refused: {exc}")
        refused = reference_refusal(kind, Door.CHECK_SYNC)
        if refused is not None:
            return _answer(message, 400, Action.NONE, refused)
        # A settings snippet, applied like `provd apply`; its sections are checked there (unknown → rejected).
        return _answer(message, 200, Action.RESTORE, f"settings snippet from {source_ip}", body=body, reboot=reboot)


def _answer(message: sip.SipRequest, status: int, action: Action, reason: str, *, url: str | None = None,
            body: bytes | None = None, reboot: bool = False) -> Decision:
    extra = (("Allow", "NOTIFY"),) if status == 405 else ()
    return Decision(status, action, reason, sip.response(message, status, extra=extra), url=url, body=body,
                    reboot=reboot)


def _notify_sync(message: sip.SipRequest, root: Element, source_ip: str, reboot: bool) -> Decision:
    """The vendor's body: `reboot` and `checkSync` are sibling choices (docs/format.md §2.4)."""
    if root.find("reboot") is not None:
        return _answer(message, 200, Action.REBOOT, f"notifySync reboot from {source_ip}", reboot=True)
    check = root.find("checkSync")
    if check is None:
        return _answer(message, 200, Action.NONE, f"notifySync from {source_ip} without checkSync or reboot")
    url = check.find("url")
    if url is None:  # a missing url keeps the previous one: a run from the normal sources
        return _answer(message, 200, Action.RUN, f"notifySync checkSync from {source_ip}", reboot=reboot)
    text = (url.text or "").strip()
    if not text:  # an empty url means no download is possible
        return _answer(message, 200, Action.NONE, f"notifySync from {source_ip}: empty url, nothing to fetch")
    return _answer(message, 200, Action.RUN_URL, f"notifySync checkSync url from {source_ip}", url=text,
                   reboot=reboot)
