"""The SIP codec against RFC 4475's torture messages and the shapes administrators' tools send."""

from __future__ import annotations

from pathlib import Path

import pytest

from provd.core import sip
from tests.support.paths import TORTURE

FILES = sorted(TORTURE.glob("*.dat"))
RESPONSES = {"unreason", "noreason", "scalarlg", "bigcode", "bcast"}


def test_corpus_present() -> None:
    assert len(FILES) == 49


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_torture_message_parses_or_is_refused(path: Path) -> None:
    data = path.read_bytes()
    try:
        message = sip.parse(data)
    except sip.SipParseError as exc:
        status = exc.status
    else:
        status = 0
        if isinstance(message, sip.SipRequest):
            ev = sip.event(message)
            assert message.method != "NOTIFY" or ev is None or ev.package != "check-sync"
    assert status in (0, 400, 505)


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_responses_are_recognised(name: str) -> None:
    try:
        message = sip.parse((TORTURE / f"{name}.dat").read_bytes())
    except sip.SipParseError:
        return
    assert isinstance(message, sip.SipResponse)


SIPSAK = (b"NOTIFY sip:201@10.123.0.50 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 10.123.0.1:5070;branch=z9hG4bK.abc\r\n"
          b"From: <sip:pbx@10.123.0.1>\r\n"
          b"To: <sip:201@10.123.0.50>\r\n"
          b"Call-ID: 42@10.123.0.1\r\n"
          b"CSeq: 7 NOTIFY\r\n"
          b"Event: check-sync;reboot=true\r\n\r\n")


def test_admin_notify_without_tag_max_forwards_content_length() -> None:
    message = sip.parse(SIPSAK)
    assert isinstance(message, sip.SipRequest)
    sip.check_mandatory(message)
    ev = sip.event(message)
    assert ev == sip.Event("check-sync", {"reboot": "true"})
    assert message.body == b""
    assert sip.branch(message) == "z9hG4bK.abc"


def test_response_echoes_and_tags() -> None:
    message = sip.parse(SIPSAK)
    assert isinstance(message, sip.SipRequest)
    out = sip.parse(sip.response(message, 200, to_tag="abc"))
    assert isinstance(out, sip.SipResponse)
    assert out.status == 200
    assert out.headers.get("to") == "<sip:201@10.123.0.50>;tag=abc"
    assert out.headers.get("cseq") == "7 NOTIFY"
    assert out.headers.get("content-length") == "0"


@pytest.mark.parametrize(("data", "status"), [
    pytest.param(b"NOTIFY sip:a SIP/3.0\r\nVia: x\r\n\r\n", 505, id="version"),
    pytest.param(b"NOTIFY  sip:a SIP/2.0\r\n\r\n", 400, id="double-space"),
    pytest.param(b"NOTIFY sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", 400, id="truncated-body"),
    pytest.param(b"NOTIFY sip:a SIP/2.0\r\nbad header line\r\n\r\n", 400, id="bad-header"),
    pytest.param(b"", 400, id="empty"),
    pytest.param(b"\xff\xfe\x00garbage", 400, id="binary"),
])
def test_malformed(data: bytes, status: int) -> None:
    with pytest.raises(sip.SipParseError) as info:
        sip.parse(data)
    assert info.value.status == status


HEAD = b"NOTIFY sip:201@10.0.0.50 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\nCSeq: 1 NOTIFY\r\n"


@pytest.mark.parametrize("length", [
    pytest.param("\u2460", id="circled-one"),  # int() raises ValueError on it: a traceback in the listener
    pytest.param("\u0661", id="arabic-indic-one"),  # int() takes it as 1
    pytest.param("\u00b2", id="superscript-two"),  # str.isdigit() is True, int() raises
    pytest.param("\uff11", id="fullwidth-one"),
    pytest.param("-1", id="negative"),
    pytest.param("+1", id="plus"),
    pytest.param("1 0", id="inner-space"),
    pytest.param("0x10", id="hex"),
    pytest.param("12345678901", id="eleven-digits"),
    pytest.param("", id="empty"),
])
def test_content_length_is_ascii_digits(length: str) -> None:
    """RFC 3261 §25.1 Content-Length = 1*DIGIT, DIGIT being ASCII; the request is kept for the 400."""
    with pytest.raises(sip.SipParseError) as info:
        sip.parse(HEAD + f"Content-Length: {length}\r\n\r\nxy".encode())
    assert info.value.status == 400
    assert info.value.request is not None and info.value.request.method == "NOTIFY"


@pytest.mark.parametrize("data", [
    pytest.param("SIP/2.0 \u0662\u0660\u0660 OK\r\n\r\n", id="status-code-arabic-digits"),
    pytest.param("NOTIFY sip:a SIP/\u0662.0\r\n\r\n", id="version-arabic-digit"),
])
def test_start_line_numbers_are_ascii(data: str) -> None:
    with pytest.raises(sip.SipParseError):
        sip.parse(data.encode())


def test_cseq_number_is_ascii() -> None:
    message = sip.parse(HEAD.replace(b"1 NOTIFY", "\u0661 NOTIFY".encode()) + b"\r\n")
    assert isinstance(message, sip.SipRequest)
    with pytest.raises(sip.SipParseError):
        sip.cseq(message)


@pytest.mark.parametrize(("uri", "valid"), [
    pytest.param("sip:201@10.0.0.50", True, id="sip"),
    pytest.param("sips:alice@atlanta.example:5061;transport=tls", True, id="sips-port-param"),
    pytest.param("sip:10.0.0.50", True, id="host-only"),
    pytest.param("sip:[2001:db8::1]:5060", True, id="ipv6"),
    pytest.param("SIP:201@Phone.Example.", True, id="case-and-trailing-dot"),
    pytest.param("sip:user;par=u%40example.net@example.com", True, id="rfc4475-semiuri"),
    pytest.param("tel:+49-30-1234", True, id="tel"),
    pytest.param("*", False, id="asterisk"),
    pytest.param("http://prov.example/x.xml", False, id="http"),
    pytest.param("sip:", False, id="empty-sip"),
    pytest.param("sip:@h", False, id="empty-user"),
    pytest.param("mailto:a@b", False, id="mailto"),
    pytest.param("201@10.0.0.50", False, id="no-scheme"),
])
def test_request_uri(uri: str, valid: bool) -> None:
    assert sip.valid_request_uri(uri) is valid


def test_two_requests_in_one_datagram_reads_the_first() -> None:
    second = SIPSAK.replace(b"7 NOTIFY", b"8 NOTIFY")
    first = SIPSAK.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n", 1)
    message = sip.parse(first + second)
    assert isinstance(message, sip.SipRequest)
    assert message.headers.get("cseq") == "7 NOTIFY"


@pytest.mark.parametrize(("content_type", "body", "url"), [
    ("application/url", b"http://10.123.0.1:8080/prov/001565F4F9E1.xml\r\n", "http://10.123.0.1:8080/prov/001565F4F9E1.xml"),
    ("application/url", b"http://h/a.xml", "http://h/a.xml"),
    ('message/external-body; access-type="URL"; URL="http://h/x.xml"', b"", "http://h/x.xml"),
    ("message/external-body;access-type=URL", b'URL="https://h/y.xml"', "https://h/y.xml"),
    ("application/url", b"", None),
])
def test_url_in_body(content_type: str, body: bytes, url: str | None) -> None:
    data = (b"NOTIFY sip:p SIP/2.0\r\nContent-Type: " + content_type.encode() + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)
    assert sip.url_in_body(sip.parse(data)) == url
