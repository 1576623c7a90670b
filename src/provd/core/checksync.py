"""SIP NOTIFY check-sync (docs/design.md §6, §7): what to answer and what to do. Pure apart from the small state it
keeps (a transaction cache), with the time as a parameter.

Accepted: a NOTIFY with `Event: check-sync` (parameters such as `reboot=true` allowed) or `resync`, from an
allow-listed sender while `provisioning/sip/active` is true — also in the shape administrators' tools send
(no From tag, no Max-Forwards, no Content-Length over UDP). The optional body is the vendor's `notifySync`
XML (`checkSync/url` → a run with that URL, `reboot` → the reboot hook) or a settings snippet (applied as a
manual restore; a reference file is refused). Answers: 200 (answer first, then act), 403 not allowed,
489 unknown event, 400 malformed (a bad Content-Length, a Request-URI that is not sip:/sips:/tel: such as
`*`): only a valid request gets a 2xx. Responses are never answered; a retransmitted request gets the same
answer from the transaction cache, and starts nothing new. Senders of both families: the allowlist holds IPv4
and IPv6 addresses and networks, and an IPv4 sender is IPv4 however the socket reports it (`parse_allowlist`).
"""

from __future__ import annotations

import functools
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
    allowlist: tuple[str, ...]  # provisioning/sip/allowlist/allowlistEntry, as written (see parse_allowlist)


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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allowlist:
    """`provisioning/sip/allowlist` parsed: the networks a sender may be in (an address is a /32 or /128), and
    the entries that are neither an address nor a network, ignored (the schema takes any string)."""

    networks: tuple[Network, ...]
    ignored: tuple[str, ...] = ()

    def allows(self, address: Address | None) -> bool:
        # `in` is False across families: an IPv6 network never admits an IPv4 sender, nor the reverse.
        return address is not None and any(address in network for network in self.networks)


@functools.lru_cache(maxsize=16)
def parse_allowlist(entries: tuple[str, ...]) -> Allowlist:
    """The allowlist's entries as networks. Taken: IPv4 and IPv6 addresses and networks in any textual form
    (compressed, expanded, upper case, host bits set as in `192.0.2.7/24`, in brackets as in a URL); an IPv6
    zone (`fe80::1%eth0`) is dropped, and an IPv4-mapped entry (`::ffff:192.0.2.7`, `::ffff:192.0.2.0/120`) is
    the IPv4 address or network it maps. Anything else (a host name, which would need DNS at NOTIFY time,
    a typo, a port) is ignored and named in `ignored`: it matches nothing, never everything.

    The zone is dropped rather than compared because provd listens for one phone, on its one link: an entry
    names a peer, and `%eth0` against `%2`, or an interface renamed, would quietly refuse a correct entry."""
    networks: list[Network] = []
    ignored: list[str] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        network = _network(text)
        if network is None:
            ignored.append(text)
        elif network not in networks:
            networks.append(network)
    return Allowlist(tuple(networks), tuple(ignored))


def _network(text: str) -> Network | None:
    if text.startswith("["):  # `[2001:db8::1]` or `[2001:db8::]/32`, as copied from a URL
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith("/")):
            return None
        text = inside + rest
    address, slash, prefix = text.partition("/")
    if ":" in address:
        address, percent, zone = address.partition("%")  # the zone, see parse_allowlist
        if percent and not zone:
            return None
    try:
        network = ipaddress.ip_network(address + slash + prefix, strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:0:0/96 (RFC 4291 §2.5.5.2) is how a dual-stack socket shows IPv4
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def sender_address(host: str) -> Address | None:
    """The sender's address as the allowlist compares it: an IPv6 zone dropped, an IPv4-mapped address (how a
    dual-stack `[::]` socket reports an IPv4 peer) as the IPv4 address; None for what is no address."""
    if ":" in host:
        host = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def sender_text(host: str) -> str:
    """The sender's address as logs and summaries name it: IPv4 as a.b.c.d (also when it came IPv4-mapped),
    IPv6 compressed, with its zone when it has one (a link-local sender: the zone says which link)."""
    address = sender_address(host)
    if address is None:
        return host
    zone = host.partition("%")[2] if isinstance(address, ipaddress.IPv6Address) else ""
    return f"{address}%{zone}" if zone else str(address)


def sender_label(host: str, port: int) -> str:
    """`192.0.2.7:5060` or `[2001:db8::1]:5060`: the sender and its port as a log line shows them."""
    text = sender_text(host)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def allowed(source_ip: str, allowlist: tuple[str, ...]) -> bool:
    """Whether `source_ip` (as a socket reports it) is on the allowlist (see `parse_allowlist`)."""
    return parse_allowlist(allowlist).allows(sender_address(source_ip))


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
        sender = sender_text(source[0])  # an IPv4 sender is one sender, whether it came mapped or not
        key = (sender, sip.branch(message) or "", message.headers.get("call-id") or "",
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
            decision = self._decide(message, sender, policy)
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
