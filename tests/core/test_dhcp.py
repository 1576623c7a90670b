"""DHCP answer → URL (docs/protocols.md §3.3 to 3.6 vectors): option 43, 66/67, BOOTP fields, joining, leases."""

from __future__ import annotations

import pytest

from provd.core.dhcp import DhcpAnswer, join, parse_dhclient_lease, parse_hex_bytes, parse_option43, url_from_answer

VENDOR_66 = bytes.fromhex("420b687474703a2f2f666f6f00")  # 42:0b:"http://foo"\0 (docs/format.md §5)
VENDOR_67 = bytes.fromhex("430c3c48575459503e2e62616b00")  # 43:0c:"<HWTYP>.bak"\0
LAB = parse_hex_bytes("42:17:68:74:74:70:3a:2f:2f:31:30:2e:31:32:33:2e:30:2e:31:3a:38:30:38:30:00:"
                      "43:0f:70:72:6f:76:2f:7b:6d:61:63:7d:2e:78:6d:6c:00")


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param(VENDOR_66 + VENDOR_67, {0x42: "http://foo", 0x43: "<HWTYP>.bak"}, id="vendor-example"),
    pytest.param(LAB, {0x42: "http://10.123.0.1:8080", 0x43: "prov/{mac}.xml"}, id="lab-bench"),
    pytest.param(b"\x42\x0ahttp://foo", {0x42: "http://foo"}, id="length-without-nul"),
    pytest.param(b"\x00\x00" + VENDOR_66 + b"\xff" + VENDOR_67, {0x42: "http://foo"}, id="pad-and-end"),
    pytest.param(b"\x42\x20http://fo", {}, id="truncated-value"),
    pytest.param(b"\x42", {}, id="truncated-code-only"),
    pytest.param(b"\x42\x03\xff\xfe\x01", {}, id="not-text"),
    pytest.param(b"", {}, id="empty"),
])
def test_option43(raw: bytes, expected: dict[int, str]) -> None:
    assert parse_option43(raw)[0] == expected


@pytest.mark.parametrize(("base", "path", "expected"), [
    ("10.1.1.1", "a.xml", "10.1.1.1/a.xml"),
    ("http://p/", "/a", "http://p/a"),
    ("http://p", "x?mac=<MACADR>", "http://p/x?mac=<MACADR>"),
    ("prov.example.com:8443", "", "prov.example.com:8443"),
    ("", "https://q/a.xml", "https://q/a.xml"),
    ("http://p//", "//a", "http://p/a"),
    ("", "a.xml", None),
    ("", "", None),
    ("2001:db8::1", "a.xml", "[2001:db8::1]/a.xml"),  # a bare IPv6 server gets its brackets
    ("http://2001:db8::1/", "a.xml", "http://[2001:db8::1]/a.xml"),
    ("http://[2001:db8::1]:8080", "a.xml", "http://[2001:db8::1]:8080/a.xml"),
    ("2001:db8::1:8080", "a.xml", "[2001:db8::1:8080]/a.xml"),  # no port can follow a bare address: all address
    ("fe80::1", "", "[fe80::1]"),
])
def test_join(base: str, path: str, expected: str | None) -> None:
    assert join(base, path) == expected


@pytest.mark.parametrize(("answer", "expected"), [
    pytest.param(DhcpAnswer(option66=b"http://prov.server.com", file=b"prov.py?mac=<MACADR>"),
                 ("http://prov.server.com/prov.py?mac=<MACADR>",), id="vendor-isc-example-file-field"),
    pytest.param(DhcpAnswer(option66=b"10.1.1.1", option67=b"a.xml"),
                 ("https://10.1.1.1/a.xml", "http://10.1.1.1/a.xml"), id="no-scheme-https-then-http"),
    pytest.param(DhcpAnswer(option66=b"10.123.0.1\x00", option67=b"auerswald/{mac}.xml\x00"),
                 ("https://10.123.0.1/auerswald/{mac}.xml", "http://10.123.0.1/auerswald/{mac}.xml"),
                 id="dnsmasq-nuls"),
    pytest.param(DhcpAnswer(option43=LAB, option66=b"http://other", option67=b"x.xml"),
                 ("http://10.123.0.1:8080/prov/{mac}.xml",), id="43-overrides"),
    pytest.param(DhcpAnswer(option43=VENDOR_66, option67=b"x.xml"), ("http://foo/x.xml",),
                 id="43-overrides-per-field"),
    pytest.param(DhcpAnswer(sname=b"prov.example.com", file=b"cfg.xml"),
                 ("https://prov.example.com/cfg.xml", "http://prov.example.com/cfg.xml"), id="bootp-fields"),
    pytest.param(DhcpAnswer(option43=b"\x42\x05\xff\xff\xff\xff\xff"), None, id="garbage-43-only"),
    pytest.param(DhcpAnswer(), None, id="nothing"),
])
def test_url_from_answer(answer: DhcpAnswer, expected: tuple[str, ...] | None) -> None:
    assert url_from_answer(answer).candidates == (expected or ())


def test_malformed_option43_is_ignored_whole_and_reported() -> None:
    result = url_from_answer(DhcpAnswer(option43=b"\x42\x30http://x", option66=b"http://p", option67=b"a"))
    assert result.candidates == ("http://p/a",)
    assert any("truncated" in n for n in result.notes)
    assert "option 43 ignored: malformed" in result.notes
    assert "server from option 66: http://p" in result.notes


@pytest.mark.parametrize("raw", [b"\x42\x0bhttp://foo\x00\x43", b"\x42\x05http://10.123.0.1:8080\x00",
                                 b"\x42\x03\xff\xfe\x01"])
def test_broken_option43_alone_gives_no_url(raw: bytes) -> None:
    result = url_from_answer(DhcpAnswer(option43=raw))
    assert result.candidates == ()
    assert "option 43 ignored: malformed" in result.notes


LEASE = """lease {
  interface "veth-cli";
  fixed-address 10.123.0.50;
  option subnet-mask 255.255.255.0;
  option tftp-server-name "http://10.123.0.1:8080";
  option bootfile-name "prov/{mac}.xml";
  option vendor-encapsulated-options OPT43;
  option ntp-servers 10.123.0.1, 10.123.0.2;
  filename "boot.xml";
}
""".replace("OPT43", "42:17:68:74:74:70:3a:2f:2f:31:30:2e:31:32:33:2e:30:2e:31:3a:38:30:38:30:0:"
            "43:f:70:72:6f:76:2f:7b:6d:61:63:7d:2e:78:6d:6c:0")


def test_dhclient_lease_last_wins_hex_not_padded() -> None:
    old = LEASE.replace("prov/{mac}.xml", "old.xml")
    answer = parse_dhclient_lease(old + LEASE)
    assert answer is not None
    assert answer.option43 == LAB
    assert answer.option67 == b"prov/{mac}.xml"
    assert answer.file == b"boot.xml"
    assert answer.ntp_servers == ("10.123.0.1", "10.123.0.2")
    assert url_from_answer(answer).candidates == ("http://10.123.0.1:8080/prov/{mac}.xml",)


def test_dhclient_lease_empty() -> None:
    assert parse_dhclient_lease("# nothing\n") is None


@pytest.mark.parametrize("text", [
    pytest.param("42:\u0663", id="arabic-indic-digit"),  # int("٣", 16) == 3
    pytest.param("42: 4", id="inner-space"),
    pytest.param("0x42", id="0x-prefix"),
    pytest.param("142", id="three-digits"),
    pytest.param("zz", id="not-hex"),
])
def test_hex_bytes_are_ascii_hex(text: str) -> None:
    with pytest.raises(ValueError, match="hex"):
        parse_hex_bytes(text)


def test_dhclient_lease_with_broken_option43_is_read() -> None:
    """A vendor-encapsulated-options value that is not hex is kept as text, like the other options (it
    names no 0x42/0x43, so 66/67 win), instead of a ValueError out of discovery."""
    answer = parse_dhclient_lease(LEASE.replace("42:17:68", "42:\u0661\u0667:68"))
    assert answer is not None and answer.option43 is not None
    assert url_from_answer(answer).candidates == ("http://10.123.0.1:8080/prov/{mac}.xml",)
