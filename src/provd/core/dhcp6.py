"""DHCPv6 Information-Request and Reply (RFC 8415 §18.2.6, docs/design.md §11) as bytes. Pure.

PLACEHOLDER (issue 10 foundation): the encoder and decoder land with the DHCPv6 work; the types below
are the contract the preconditions and the adapter are written against.
"""

from __future__ import annotations

from dataclasses import dataclass

from provd.core.dhcp import DhcpUrl

CLIENT_PORT = 546
SERVER_PORT = 547
ALL_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers, link scope


@dataclass(frozen=True)
class Dhcp6Answer:
    """What a Reply said that matters here; bytes as received, addresses as text."""

    vendor_options: tuple[tuple[int, bytes], ...] = ()  # option 17: (enterprise number, its option-data)
    boot_file_url: bytes | None = None  # option 59 (RFC 5970)
    ntp_servers: tuple[str, ...] = ()  # option 56 (RFC 5908: addresses and FQDNs), then option 31 (SNTP)
    notes: tuple[str, ...] = ()  # what was malformed and ignored, for the report


def build_information_request(*, xid: int, mac: bytes, vendor_class: str, enterprise: int,
                              elapsed_cs: int) -> bytes:
    raise NotImplementedError


def parse_reply(data: bytes, *, xid: int) -> Dhcp6Answer | None:
    raise NotImplementedError


def url_from_answer(answer: Dhcp6Answer, *, enterprise: int) -> DhcpUrl:
    raise NotImplementedError
