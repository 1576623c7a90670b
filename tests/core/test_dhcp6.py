"""DHCPv6 codec (docs/protocols.md, DHCPv6): the Information-Request field by field and as scapy reads it; Replies
built by hand and by scapy, hostile ones (cut at every offset, malformed options of every kind) never raise; the
URL from option 17 (0x42/0x43) or 59; NTP servers from 56 then 31; the RFC 8415 §15 retransmission times."""

from __future__ import annotations

import random

import pytest
from scapy.layers import dhcp6 as s6  # test-only: the independent reading of our bytes and a second server

from provd.core.dhcp6 import (
    REQUESTED,
    Dhcp6Answer,
    build_information_request,
    duid_ll,
    elapsed_cs,
    parse_reply,
    retransmission_timeouts,
    url_from_answer,
)

MAC = bytes.fromhex("00095200000e")
CLIENT_ID = duid_ll(MAC)
XID = 0x5A1B2C
ENT = 34567  # an enterprise number for the tests (any will do)
SERVER_DUID = bytes.fromhex("000100012a2b2c2d0a0b0c0d0e0f")  # DUID-LLT


def opt(code: int, data: bytes) -> bytes:
    return code.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data


def sub(code: int, data: bytes) -> bytes:
    return opt(code, data)  # option 17's and 56's sub-options have the same shape


def vendor(enterprise: int, *subs: bytes) -> bytes:
    return opt(17, enterprise.to_bytes(4, "big") + b"".join(subs))


def reply(*options: bytes, xid: int = XID, msg: int = 7, client: bool = True) -> bytes:
    head = bytes([msg]) + xid.to_bytes(3, "big") + opt(2, SERVER_DUID)
    return head + (opt(1, CLIENT_ID) if client else b"") + b"".join(options)


def fqdn(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


A1 = bytes.fromhex("20010db8007b00000000000000000001")
A2 = bytes.fromhex("fe800000000000000000000000000001")
URL42 = sub(0x42, b"http://[2001:db8:7b::1]:8080")
URL43 = sub(0x43, b"prov/<MACADR>.xml")


# --- the Information-Request ---------------------------------------------------------------------------------


def fields(packet: bytes) -> dict[int, bytes]:
    out, i = {}, 4
    while i < len(packet):
        code, length = int.from_bytes(packet[i:i + 2], "big"), int.from_bytes(packet[i + 2:i + 4], "big")
        out[code] = packet[i + 4:i + 4 + length]
        i += 4 + length
    assert i == len(packet)
    return out


def test_information_request_field_by_field() -> None:
    packet = build_information_request(xid=XID, mac=MAC, vendor_class="auerswald-D400", enterprise=ENT,
                                       elapsed_cs=250)
    assert packet[0] == 11 and packet[1:4] == bytes.fromhex("5a1b2c")
    options = fields(packet)
    assert set(options) == {1, 6, 8, 16}
    assert options[1] == bytes.fromhex("0003" "0001" "00095200000e")  # DUID-LL, Ethernet, the MAC
    oro = [int.from_bytes(options[6][i:i + 2], "big") for i in range(0, len(options[6]), 2)]
    assert {17, 23, 31, 56, 59} <= set(oro)
    assert {32, 83} <= set(oro)  # RFC 8415 §18.2.6: Information Refresh Time and INF_MAX_RT
    assert options[8] == (250).to_bytes(2, "big")
    assert options[16] == ENT.to_bytes(4, "big") + (14).to_bytes(2, "big") + b"auerswald-D400"


def test_scapy_reads_our_information_request_the_same_way() -> None:
    packet = build_information_request(xid=XID, mac=MAC, vendor_class="auerswald-D400", enterprise=ENT,
                                       elapsed_cs=300)
    parsed = s6.DHCP6_InfoRequest(packet)
    assert parsed.trid == XID
    assert parsed[s6.DHCP6OptClientId].duid.lladdr == "00:09:52:00:00:0e"
    assert isinstance(parsed[s6.DHCP6OptClientId].duid, s6.DUID_LL)
    assert list(parsed[s6.DHCP6OptOptReq].reqopts) == list(REQUESTED)
    assert parsed[s6.DHCP6OptElapsedTime].elapsedtime == 300
    vc = parsed[s6.DHCP6OptVendorClass]
    assert vc.enterprisenum == ENT and [d.data for d in vc.vcdata] == [b"auerswald-D400"]
    assert s6.DHCP6OptUnknown not in parsed
    assert bytes(parsed) == packet


def test_no_vendor_class_option_when_the_class_is_empty() -> None:
    packet = build_information_request(xid=1, mac=MAC, vendor_class="", enterprise=0, elapsed_cs=0)
    assert set(fields(packet)) == {1, 6, 8}


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"xid": 1 << 24}, "transaction id", id="xid-25-bits"),
    pytest.param({"xid": -1}, "transaction id", id="xid-negative"),
    pytest.param({"mac": b"\x00" * 5}, "MAC has 5 bytes", id="mac-5-bytes"),
    pytest.param({"enterprise": 1 << 32}, "enterprise number", id="enterprise-33-bits"),
    pytest.param({"vendor_class": "x" * 70000}, "vendor class is 70000 bytes", id="vendor-class-too-long"),
])
def test_bad_request_parameters_are_a_value_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"xid": 1, "mac": MAC, "vendor_class": "v", "enterprise": 0, "elapsed_cs": 0}
    with pytest.raises(ValueError, match=message):
        build_information_request(**{**args, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "expected"), [(0.0, 0), (0.004, 0), (3.14159, 314), (655.35, 0xFFFF),
                                                   (10_000.0, 0xFFFF), (-1.0, 0)])
def test_elapsed_time_is_hundredths_capped(seconds: float, expected: int) -> None:
    assert elapsed_cs(seconds) == expected


def test_elapsed_time_is_capped_in_the_packet() -> None:
    packet = build_information_request(xid=1, mac=MAC, vendor_class="", enterprise=0, elapsed_cs=1_000_000)
    assert fields(packet)[8] == b"\xff\xff"


@pytest.mark.parametrize(("first_wait", "rands", "expected"), [
    pytest.param(3.0, (0.0, 0.0, 0.0), (3.0, 6.0, 12.0), id="no-jitter-3-6-12"),
    pytest.param(3.0, (0.1, 0.1, 0.1), (3.3, 6.93, 14.553), id="all-plus"),
    pytest.param(3.0, (-0.1, -0.1, -0.1), (2.7, 5.13, 9.747), id="all-minus"),
    pytest.param(0.2, (0.05, -0.05, 0.0), (0.21, 0.4095, 0.819), id="small-first-wait"),
    pytest.param(1.0, (5.0, -5.0), (1.1, 2.09), id="rand-clamped"),
])
def test_retransmission_timeouts_follow_rfc8415_section_15(first_wait: float, rands: tuple[float, ...],
                                                           expected: tuple[float, ...]) -> None:
    assert retransmission_timeouts(first_wait, rands) == pytest.approx(expected)


# --- the Reply --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "why"), [
    pytest.param(reply(xid=XID + 1), "wrong xid", id="wrong-xid"),
    pytest.param(reply(msg=2), "an Advertise", id="wrong-msg-type-advertise"),
    pytest.param(reply(msg=11), "an Information-Request (our own, looped back)", id="wrong-msg-type-ir"),
    pytest.param(bytes([7]) + XID.to_bytes(3, "big") + opt(1, duid_ll(b"\x00\x09\x52\x00\x00\x0f")),
                 "another client's Reply", id="wrong-client-id"),
    pytest.param(bytes([7]) + XID.to_bytes(3, "big") + opt(1, CLIENT_ID) + opt(1, CLIENT_ID[:-1] + b"\x00"),
                 "a second, foreign Client Identifier", id="two-client-ids"),
    pytest.param(bytes([7]) + XID.to_bytes(3, "big") + opt(1, CLIENT_ID)[:8], "a Client Identifier cut short",
                 id="client-id-cut-short"),
    pytest.param(b"", "nothing", id="empty"),
    pytest.param(bytes([7, 0x5A, 0x1B]), "three bytes", id="short-header"),
    pytest.param(bytes(range(256)), "garbage", id="garbage"),
])
def test_not_a_reply_for_us(data: bytes, why: str) -> None:
    assert parse_reply(data, xid=XID, client_id=CLIENT_ID) is None, why


def test_reply_without_client_id_is_accepted() -> None:
    answer = parse_reply(reply(opt(59, b"http://p/a.xml"), client=False), xid=XID, client_id=CLIENT_ID)
    assert answer is not None and answer.boot_file_url == b"http://p/a.xml"


def test_reply_fields_by_hand() -> None:
    data = reply(vendor(ENT, URL42, URL43), opt(59, b"http://p/boot.xml"),
                 opt(56, sub(1, A1) + sub(3, fqdn("ntp.example.com"))), opt(31, A2 + A1), opt(23, A1))
    answer = parse_reply(data, xid=XID, client_id=CLIENT_ID)
    assert answer == Dhcp6Answer(
        vendor_options=((ENT, URL42 + URL43),), boot_file_url=b"http://p/boot.xml",
        ntp_servers=("2001:db8:7b::1", "ntp.example.com", "fe80::1"), notes=(), server_id=SERVER_DUID)


def scapy_reply(*options: object, xid: int = XID) -> bytes:
    packet = s6.DHCP6_Reply(trid=xid) / s6.DHCP6OptServerId(duid=s6.DUID_LLT(lladdr="0a:0b:0c:0d:0e:0f"))
    packet = packet / s6.DHCP6OptClientId(duid=s6.DUID_LL(lladdr="00:09:52:00:00:0e"))
    for option in options:
        packet = packet / option
    return bytes(packet)


def test_reply_built_by_scapy() -> None:
    data = scapy_reply(
        s6.DHCP6OptVendorSpecificInfo(enterprisenum=ENT, vso=[
            s6.VENDOR_SPECIFIC_OPTION(optcode=0x42, optdata=b"http://[2001:db8:7b::1]:8080"),
            s6.VENDOR_SPECIFIC_OPTION(optcode=0x43, optdata=b"prov/<MACADR>.xml")]),
        s6.DHCP6OptBootFileUrl(optdata=b"http://p/boot.xml"),
        s6.DHCP6OptNTPServer(ntpserver=[s6.DHCP6NTPSubOptSrvAddr(addr="2001:db8:7b::1"),
                                        s6.DHCP6NTPSubOptSrvFQDN(fqdn="ntp.example.com."),
                                        s6.DHCP6NTPSubOptMCAddr(addr="ff05::101")]),
        s6.DHCP6OptSNTPServers(sntpservers=["2001:db8:7b::2"]),
        s6.DHCP6OptStatusCode(statuscode=0, statusmsg=b"all well"))
    answer = parse_reply(data, xid=XID, client_id=CLIENT_ID)
    assert answer is not None
    assert answer.ntp_servers == ("2001:db8:7b::1", "ntp.example.com", "2001:db8:7b::2")
    assert answer.notes == ("option 56 multicast address ignored: provd asks NTP servers by unicast",)
    assert url_from_answer(answer, enterprise=ENT).candidates == ("http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml",)
    assert url_from_answer(answer, enterprise=ENT + 1).candidates == ("http://p/boot.xml",)


FULL = reply(vendor(ENT, URL42, URL43), opt(59, b"http://p/boot.xml"),
             opt(56, sub(1, A1) + sub(3, fqdn("ntp.example.com"))), opt(31, A2), opt(13, b"\x00\x00"))


@pytest.mark.parametrize("cut", range(len(FULL) + 1))
def test_a_reply_cut_at_every_offset_never_raises(cut: int) -> None:
    answer = parse_reply(FULL[:cut], xid=XID, client_id=CLIENT_ID)
    if answer is not None:
        url = url_from_answer(answer, enterprise=ENT)
        assert all(c.startswith("http") for c in url.candidates)
        if cut < len(FULL):
            assert answer.notes or cut in _option_boundaries(FULL)


def _option_boundaries(data: bytes) -> set[int]:
    out, i = {4}, 4
    while i < len(data):
        i += 4 + int.from_bytes(data[i + 2:i + 4], "big")
        out.add(i)
    return out


@pytest.mark.parametrize("flip", range(4, len(FULL)))
def test_every_byte_corrupted_never_raises(flip: int) -> None:
    for value in (0x00, 0xFF, 0x80):
        data = FULL[:flip] + bytes([value]) + FULL[flip + 1:]
        answer = parse_reply(data, xid=XID, client_id=CLIENT_ID)
        if answer is not None:
            url_from_answer(answer, enterprise=0)


# Each malformed option is ignored and named in the notes; the rest of the Reply still counts.
GOOD59 = opt(59, b"http://p/boot.xml")


@pytest.mark.parametrize(("options", "note", "ntp"), [
    pytest.param((GOOD59, opt(17, b"\x00\x01")), "option 17 has 2 bytes", (), id="17-no-enterprise"),
    pytest.param((GOOD59, vendor(ENT, b"\x00\x42\x00\x30http://x")), "option 17 (enterprise 34567) ignored",
                 (), id="17-sub-option-too-long"),
    pytest.param((GOOD59, vendor(ENT, URL42, b"\x00\x43\x00")), "stray bytes", (), id="17-sub-option-header-cut"),
    pytest.param((GOOD59, opt(31, A1 + A1[:8])), "option 31 is 24 bytes, not a multiple of 16", (),
                 id="31-not-multiple-of-16"),
    pytest.param((GOOD59, opt(56, sub(1, A1[:15]))), "option 56 sub-option 1 is 15 bytes", (),
                 id="56-address-15-bytes"),
    pytest.param((GOOD59, opt(56, sub(3, b"\x03ntp\xc0\x0c"))), "not a DNS name", (), id="56-fqdn-compressed"),
    pytest.param((GOOD59, opt(56, sub(3, b"\x03ntp\x07example"))), "not a DNS name", (), id="56-fqdn-no-root"),
    pytest.param((GOOD59, opt(56, sub(3, b"\x05ntp\x00"))), "not a DNS name", (), id="56-fqdn-label-too-long"),
    pytest.param((GOOD59, opt(56, sub(3, b"\x04n p!\x00"))), "not a DNS name", (), id="56-fqdn-bad-characters"),
    pytest.param((GOOD59, opt(56, sub(3, b"\x00"))), "not a DNS name", (), id="56-fqdn-root-only"),
    pytest.param((GOOD59, opt(56, sub(1, A1) + b"\x00\x01\x00\x10abc")), "option 56 sub-option 1 claims 16",
                 ("2001:db8:7b::1",), id="56-second-sub-option-cut"),
    pytest.param((GOOD59, opt(56, sub(9, b"x") + sub(1, A1))), "sub-option 9 unknown", ("2001:db8:7b::1",),
                 id="56-unknown-sub-option"),
    pytest.param((GOOD59, opt(13, b"\x00\x01no way")), "Status Code 1 (UnspecFail): no way", (),
                 id="status-failure"),
    pytest.param((GOOD59, opt(13, b"\x00")), "option 13 (Status Code) has 1 bytes", (), id="status-too-short"),
    pytest.param((GOOD59, opt(31, A1)[:-3]), "option 31 claims 16 bytes, 13 remain", (), id="last-option-cut"),
    pytest.param((GOOD59, b"\x00\x17\x00"), "3 stray bytes", (), id="stray-bytes"),
    pytest.param((GOOD59, opt(59, b"http://other/")), "option 59 repeated", (), id="59-twice"),
])
def test_malformed_options_are_noted_and_ignored(options: tuple[bytes, ...], note: str,
                                                 ntp: tuple[str, ...]) -> None:
    answer = parse_reply(reply(*options), xid=XID, client_id=CLIENT_ID)
    assert answer is not None
    assert any(note in n for n in answer.notes), answer.notes
    assert answer.ntp_servers == ntp
    url = url_from_answer(answer, enterprise=ENT)
    assert url.candidates == ("http://p/boot.xml",)
    assert set(answer.notes) <= set(url.notes)  # the report gets the decoder's notes through the URL's


# --- the URL ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "enterprise", "expected", "note"), [
    pytest.param((vendor(ENT, URL42, URL43), GOOD59), ENT,
                 ("http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml",), "server from option 17/0x42",
                 id="17-wins-over-59"),
    pytest.param((vendor(ENT, URL42, URL43), GOOD59), 0,
                 ("http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml",), "file from option 17/0x43",
                 id="any-enterprise"),
    pytest.param((vendor(ENT, URL42, URL43), GOOD59), 4491, ("http://p/boot.xml",),
                 "option 17 for enterprise 34567 ignored: not 4491", id="other-enterprise-falls-to-59"),
    pytest.param((vendor(4491, sub(0x42, b"http://cablelabs")), vendor(ENT, URL42, URL43)), ENT,
                 ("http://[2001:db8:7b::1]:8080/prov/<MACADR>.xml",), "option 17 for enterprise 4491 ignored",
                 id="second-17-is-ours"),
    pytest.param((vendor(ENT, sub(0x01, b"\xff")), vendor(ENT, sub(0x42, b"http://second"))), ENT,
                 ("http://second",), "server from option 17/0x42", id="first-17-without-url-second-with"),
    pytest.param((vendor(ENT, sub(0x42, b"http://a")), vendor(ENT, sub(0x42, b"http://b"))), 0,
                 ("http://a",), "server from option 17/0x42", id="first-17-counts"),
    pytest.param((vendor(ENT, sub(0x42, b"\xff\xfe"), URL43), GOOD59), ENT, ("http://p/boot.xml",),
                 "sub-option 0x42 is not text", id="17-non-text-0x42-falls-to-59"),
    pytest.param((vendor(ENT, URL42, sub(0x43, b"a\x01b")), GOOD59), ENT, ("http://p/boot.xml",),
                 "sub-option 0x43 is not text", id="17-non-text-0x43-falls-to-59"),
    pytest.param((vendor(ENT, sub(0x42, b"10.1.1.1\x00"), sub(0x43, b"a.xml\x00")),), ENT,
                 ("https://10.1.1.1/a.xml", "http://10.1.1.1/a.xml"), "server from option 17/0x42",
                 id="no-scheme-https-then-http-nul-terminated"),
    pytest.param((vendor(ENT, sub(0x43, b"https://q/a.xml")),), ENT, ("https://q/a.xml",),
                 "file from option 17/0x43", id="0x43-alone-absolute"),
    pytest.param((vendor(ENT, sub(0x43, b"a.xml")), GOOD59), ENT, ("http://p/boot.xml",),
                 "a file without a server is no URL", id="0x43-alone-relative-falls-to-59"),
    pytest.param((GOOD59,), ENT, ("http://p/boot.xml",), "URL from option 59", id="59-alone"),
    pytest.param((opt(59, b"prov.example.com/a.xml"),), ENT,
                 ("https://prov.example.com/a.xml", "http://prov.example.com/a.xml"), "URL from option 59",
                 id="59-without-scheme"),
    pytest.param((opt(59, b"\xff\x00"),), ENT, (), "option 59 is empty or not text", id="59-not-text"),
    pytest.param((), ENT, (), None, id="nothing"),
])
def test_url_from_answer(options: tuple[bytes, ...], enterprise: int, expected: tuple[str, ...],
                         note: str | None) -> None:
    answer = parse_reply(reply(*options), xid=XID, client_id=CLIENT_ID)
    assert answer is not None
    url = url_from_answer(answer, enterprise=enterprise)
    assert url.candidates == expected
    if note is not None:
        assert any(note in n for n in url.notes), url.notes


@pytest.mark.parametrize(("options", "expected"), [
    pytest.param((opt(56, sub(1, A1)), opt(31, A2)), ("2001:db8:7b::1", "fe80::1"), id="56-then-31"),
    pytest.param((opt(31, A2), opt(56, sub(1, A1))), ("2001:db8:7b::1", "fe80::1"), id="56-first-whatever-order"),
    pytest.param((opt(56, sub(3, fqdn("ntp1.example.com")) + sub(1, A1)),),
                 ("ntp1.example.com", "2001:db8:7b::1"), id="56-sub-options-in-order"),
    pytest.param((opt(56, sub(1, A1)), opt(31, A1 + A2)), ("2001:db8:7b::1", "fe80::1"), id="duplicates-once"),
    pytest.param((opt(31, A1 + A2),), ("2001:db8:7b::1", "fe80::1"), id="31-alone"),
    pytest.param((opt(31, b""),), (), id="31-empty"),
])
def test_ntp_servers(options: tuple[bytes, ...], expected: tuple[str, ...]) -> None:
    answer = parse_reply(reply(*options), xid=XID, client_id=CLIENT_ID)
    assert answer is not None and answer.ntp_servers == expected


def test_random_options_after_a_valid_header_never_raise() -> None:
    """Seeded noise behind our header and Client Identifier: whatever the decoder makes of it, no exception."""
    rng = random.Random(8415)
    codes = (1, 2, 13, 17, 31, 56, 59, 23, 9999)
    for _ in range(2000):
        body = b"".join(opt(rng.choice(codes), rng.randbytes(rng.randrange(0, 40))) for _ in range(rng.randrange(4)))
        if rng.random() < 0.5:
            body = body[:rng.randrange(len(body) + 1)] + rng.randbytes(rng.randrange(6))
        answer = parse_reply(reply(body), xid=XID, client_id=CLIENT_ID)
        if answer is not None:
            url_from_answer(answer, enterprise=rng.choice((0, ENT)))
