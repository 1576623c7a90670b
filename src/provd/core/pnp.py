"""SIP plug-and-play (RFC 6080 `ua-profile`, the dialect phones use; docs/design.md §6, docs/protocols.md §1). Pure:
the SUBSCRIBE to send and the verdict on each datagram that comes back.

The SUBSCRIBE goes from UDP 5060 with 5060 in Via and Contact (the only choice every known PnP server
answers), Request-URI and From/To user `MAC%3a<MAC>`, `Expires: 0`, `Accept: application/url`. The first
`ua-profile` NOTIFY in the window whose body (or `message/external-body` URL) is an absolute http(s) URL
wins; a matching Call-ID is preferred but not required (FreeSWITCH's responder makes up its own).

Over IPv6 the same SUBSCRIBE goes to the IPv6 group; every host in it (Via, Contact, Call-ID, the group in the
Request-URI, From and To) is an IPv6 reference in brackets (RFC 3261 §25.1 `IPv6reference`, RFC 5118 §4.1),
without a zone index (`%eth0`): SIP has no syntax for one, and the peer replies to the packet's source anyway.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from enum import Enum

from provd.core import sip

GROUP = "224.0.1.75"
RETRANSMITS = (0.0, 0.5, 1.5, 3.5)  # RFC 3261 T1 doubling, identical copies


@dataclass(frozen=True)
class Subscribe:
    data: bytes
    call_id: str
    tag: str


def sip_host(address: str) -> str:
    """An address as the host part of a SIP URI or Via: IPv6 in brackets (RFC 3261 §25.1), zone index dropped."""
    if ":" not in address:
        return address
    return f"[{address.strip('[]').split('%', 1)[0]}]"


def build_subscribe(*, mac: str, local_ip: str, local_port: int, vendor: str, model: str, firmware: str,
                    user_agent: str, group: str = GROUP, branch: str | None = None, call_id: str | None = None,
                    tag: str | None = None) -> Subscribe:
    """The SUBSCRIBE from `local_ip`:`local_port` (IPv4 or IPv6) to `group` (224.0.1.75 or the IPv6 group)."""
    host = sip_host(local_ip)
    branch = branch or "z9hG4bK" + secrets.token_hex(8)
    call_id = call_id or f"{secrets.token_hex(10)}@{host}"
    tag = tag or secrets.token_hex(6)
    aor = f"sip:MAC%3a{mac}@{sip_host(group)}"
    lines = [
        f"SUBSCRIBE {aor} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{local_port};branch={branch};rport",
        f"From: <{aor}>;tag={tag}",
        f"To: <{aor}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 SUBSCRIBE",
        f"Contact: <sip:{host}:{local_port}>",
        "Max-Forwards: 70",
        f"User-Agent: {user_agent}",
        "Expires: 0",
        f'Event: ua-profile;profile-type="device";vendor="{vendor}";model="{model}";version="{firmware}"',
        "Accept: application/url",
        "Content-Length: 0",
    ]
    return Subscribe(("\r\n".join(lines) + "\r\n\r\n").encode(), call_id, tag)


class Verdict(Enum):
    URL = "url"  # a NOTIFY carrying a usable URL: answer 200 and stop
    IGNORE_ANSWER = "ignore-answer"  # a request in the window that is not ours: answer (e.g. 481/489)
    IGNORE = "ignore"  # a response (the 200 to our SUBSCRIBE) or garbage: say nothing


@dataclass(frozen=True)
class Judged:
    verdict: Verdict
    detail: str
    url: str | None = None
    request: sip.SipRequest | None = None
    call_id_matches: bool = False
    status: int = 200  # what to answer a request with


_MACROS = re.compile(r"\$\{mac\}|\{mac\}|\$mac\b", re.IGNORECASE)


def judge(data: bytes, *, call_id: str, mac: str) -> Judged:
    """The verdict on one datagram received in the window."""
    try:
        message = sip.parse(data)
    except sip.SipParseError as exc:
        return Judged(Verdict.IGNORE, f"malformed SIP: {exc}")
    if isinstance(message, sip.SipResponse):
        return Judged(Verdict.IGNORE, f"response {message.status}")
    if not sip.can_answer(message):
        return Judged(Verdict.IGNORE, f"{message.method} without the headers a response needs")
    if message.method != "NOTIFY":
        return Judged(Verdict.IGNORE_ANSWER, f"{message.method} in the PnP window", request=message, status=405)
    event = sip.event(message)
    if event is None or event.package != "ua-profile":
        return Judged(Verdict.IGNORE_ANSWER, f"NOTIFY for event {event.package if event else '(none)'}",
                      request=message, status=489)
    matches = message.headers.get("call-id") == call_id
    url = sip.url_in_body(message)
    if url is None:
        return Judged(Verdict.IGNORE_ANSWER, "ua-profile NOTIFY without a URL", request=message,
                      call_id_matches=matches)
    url = _MACROS.sub(mac, url)
    if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
        return Judged(Verdict.IGNORE_ANSWER, f"ua-profile NOTIFY with an unusable URL {url[:80]!r} (http/https only)",
                      request=message, call_id_matches=matches)
    return Judged(Verdict.URL, f"NOTIFY{'' if matches else ' (other Call-ID)'}", url=url, request=message,
                  call_id_matches=matches)
