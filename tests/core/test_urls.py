"""Markers (docs/design.md §4) and reference resolution (RFC 3986), as pure tables."""

from __future__ import annotations

import pytest

from provd.core.backoff import backoff_delay, parse_retry_after
from provd.core.markers import normalise_mac, replace_markers
from provd.core.urls import (
    Origin,
    check_url,
    origin,
    redact,
    resolve,
    split_credentials,
    split_host_port,
    with_credentials,
)
from provd.errors import FetchURLError
from provd.model import Device

PHONE = Device(type="D400", serial="0123456789", mac="00095200000E", firmware="2.12A-00000")


@pytest.mark.parametrize(("url", "expected"), [
    pytest.param("http://h/<MACADR>.xml", "http://h/00095200000E.xml", id="MACADR"),
    pytest.param("http://h/{mac}.xml", "http://h/00095200000E.xml", id="mac"),
    pytest.param("http://h/<HWTYP>/<SERIAL>.xml", "http://h/D400/0123456789.xml", id="HWTYP-SERIAL"),
    pytest.param("http://h/{type}/{serial}", "http://h/D400/0123456789", id="type-serial"),
    pytest.param("http://h/prov.py?mac=<MACADR>", "http://h/prov.py?mac=00095200000E", id="vendor-isc-example"),
    pytest.param("http://h/%3CMACADR%3E.xml", "http://h/00095200000E.xml", id="percent-encoded-brackets"),
    pytest.param("http://h/<HWTYP>.bak", "http://h/D400.bak", id="vendor-option-43-example"),
    pytest.param("http://h/<macadr>", "http://h/00095200000E", id="case-insensitive"),
    pytest.param("http://h/<MAC>/{other}", "http://h/<MAC>/{other}", id="unknown-left-alone"),
    pytest.param("auerswald-<type>", "auerswald-D400", id="default-vendor-class"),
])
def test_markers(url: str, expected: str) -> None:
    assert replace_markers(url, PHONE) == expected


def test_marker_values_are_percent_encoded() -> None:
    odd = Device(type="D400", serial="A B/C?", mac="00095200000E", firmware="x")
    assert replace_markers("http://h/{serial}.xml", odd) == "http://h/A%20B%2FC%3F.xml"


@pytest.mark.parametrize(("mac", "expected"), [
    ("00:09:52:00:00:0e", "00095200000E"), ("00-09-52-00-00-0E", "00095200000E"), ("000952.00000e", "00095200000E"),
])
def test_normalise_mac(mac: str, expected: str) -> None:
    assert normalise_mac(mac) == expected


BASE = "https://prov.example.com/phones/site1/provisioning.xml"


@pytest.mark.parametrize(("reference", "expected"), [
    pytest.param("common.xml", "https://prov.example.com/phones/site1/common.xml", id="same-directory"),
    pytest.param("models/D400.xml", "https://prov.example.com/phones/site1/models/D400.xml", id="subdirectory"),
    pytest.param("../common.xml", "https://prov.example.com/phones/common.xml", id="parent"),
    pytest.param("/x/y.xml", "https://prov.example.com/x/y.xml", id="absolute-path-same-host"),
    pytest.param("https://other.example/a.xml", "https://other.example/a.xml", id="full-url"),
    pytest.param("//cdn.example/a.xml", "https://cdn.example/a.xml", id="network-path"),
    pytest.param("  common.xml\n", "https://prov.example.com/phones/site1/common.xml", id="whitespace-trimmed"),
    pytest.param("?mac=1", "https://prov.example.com/phones/site1/provisioning.xml?mac=1", id="query-only"),
])
def test_resolve(reference: str, expected: str) -> None:
    assert resolve(reference, BASE) == expected


def test_markers_replaced_before_resolution() -> None:
    assert resolve(replace_markers("<MACADR>.xml", PHONE), BASE) == \
        "https://prov.example.com/phones/site1/00095200000E.xml"


@pytest.mark.parametrize(("reference", "base"), [
    pytest.param("file:///etc/passwd", BASE, id="remote-to-local"),
    pytest.param("ftp://h/a.xml", BASE, id="ftp"),
    pytest.param("tftp://h/a.xml", BASE, id="tftp"),
    pytest.param("http://h:99999/a", BASE, id="bad-port"),
    pytest.param("http:///a.xml", BASE, id="no-host"),
])
def test_resolve_refuses(reference: str, base: str) -> None:
    with pytest.raises(FetchURLError):
        resolve(reference, base)


def test_local_reference_may_point_at_local_files() -> None:
    assert resolve("b.xml", "file:///media/usb/a.xml") == "file:///media/usb/b.xml"


def test_check_url_refuses_relative() -> None:
    with pytest.raises(FetchURLError):
        check_url("provisioning.xml")


@pytest.mark.parametrize("url", [
    pytest.param("http://h/a\ud800.xml", id="lone-surrogate-path"),
    pytest.param("http://h\udcff/a.xml", id="lone-surrogate-host"),
    pytest.param("http://h/a\x00.xml", id="nul"),
    pytest.param("http://h/a\x7f", id="del"),
    pytest.param("http://h/a\x85", id="c1-next-line"),
    pytest.param("http://h/\u2028", id="line-separator"),
    pytest.param("http://a\u200db/", id="zero-width-joiner-in-host"),
    pytest.param("http://h/\u202egnp.xml", id="bidi-override"),
    pytest.param("http://ex ample/", id="space-in-host"),
    pytest.param("http://h%41/", id="percent-in-host"),
    pytest.param("http://\u00e9..de/", id="empty-idna-label"),
    pytest.param("http://\u2100/", id="nfkc-netloc"),
    pytest.param("http://[::1/", id="bad-ipv6"),
])
def test_check_url_refuses_what_no_request_can_carry(url: str) -> None:
    with pytest.raises(FetchURLError, match="not a valid URL") as caught:
        check_url(url)
    str(caught.value).encode("utf-8")  # the message itself is printable anywhere
    assert str(caught.value).isprintable()


@pytest.mark.parametrize("url", ["http://h/a b.xml", "http://\u00e9t\u00e9.example/x", "http://[::1]:8080/x",
                                 "http://h/caf\u00e9.xml", "https://u:p@h:8443/x?y=1#z", "file:///media/usb/a.xml"])
def test_check_url_accepts(url: str) -> None:
    check_url(url)


OWNER = "https://phone:s3cret@prov.example:8443/site/top.xml"


@pytest.mark.parametrize(("reference", "expected"), [
    pytest.param("a.xml", "https://phone:s3cret@prov.example:8443/site/a.xml", id="relative-keeps"),
    pytest.param("/x/b.xml", "https://phone:s3cret@prov.example:8443/x/b.xml", id="absolute-path-keeps"),
    pytest.param("//prov.example:8443/c.xml", "https://phone:s3cret@prov.example:8443/c.xml",
                 id="network-path-same-origin"),
    pytest.param("https://PROV.example:8443/d.xml", "https://phone:s3cret@PROV.example:8443/d.xml",
                 id="absolute-same-origin-gets-them"),
    pytest.param("https://other:pw@prov.example:8443/e.xml", "https://other:pw@prov.example:8443/e.xml",
                 id="own-userinfo-wins"),
    pytest.param("https://prov.example/f.xml", "https://prov.example/f.xml", id="other-port"),
    pytest.param("http://prov.example:8443/g.xml", "http://prov.example:8443/g.xml", id="other-scheme"),
    pytest.param("https://cdn.example:8443/h.xml", "https://cdn.example:8443/h.xml", id="other-host"),
    pytest.param("//cdn.example/i.xml", "https://cdn.example/i.xml", id="network-path-other-host"),
])
def test_credentials_follow_the_origin(reference: str, expected: str) -> None:
    assert resolve(reference, OWNER) == expected


@pytest.mark.parametrize(("url", "owner", "expected"), [
    pytest.param("https://h/x", "https://u:p@h:443/y", "https://u:p@h/x", id="default-port-spelled-out"),
    pytest.param("http://h:80/x", "http://u:p@h/y", "http://u:p@h:80/x", id="default-port-implied"),
    pytest.param("https://h/x", "https://h/y", "https://h/x", id="owner-without-credentials"),
    pytest.param("http://h/x", "https://u:p@h/y", "http://h/x", id="redirect-downgrade-drops"),
])
def test_with_credentials(url: str, owner: str, expected: str) -> None:
    assert with_credentials(url, owner) == expected


def test_origin() -> None:
    assert origin("https://u:p@Prov.Example/x") == Origin("https", "prov.example", 443)
    assert origin("http://[::1]:8080/") == Origin("http", "::1", 8080)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://h/\ud800", "http://h/\\ud800"),
    ("http://u:p@h/\x00", "http://u:***@h/\\x00"),
    ("https://u:p@[::1]:8443/a", "https://u:***@[::1]:8443/a"),
])
def test_redact_is_printable(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_credentials() -> None:
    url = "https://admin:p%40ss@prov.example.com:8443/a.xml"
    assert split_credentials(url) == ("https://prov.example.com:8443/a.xml", ("admin", "p@ss"))
    assert redact(url) == "https://admin:***@prov.example.com:8443/a.xml"
    assert split_credentials("http://h/a") == ("http://h/a", None)


@pytest.mark.parametrize(("attempt", "draw", "expected"), [
    (1, 0.5, 15.0), (2, 0.5, 30.0), (3, 1.0, 120.0), (8, 1.0, 3600.0), (20, 1.0, 3600.0), (4, 0.0, 0.0),
])
def test_backoff_full_jitter(attempt: int, draw: float, expected: float) -> None:
    assert backoff_delay(attempt, draw) == expected


@pytest.mark.parametrize(("value", "date", "expected"), [
    ("7", None, 7.0),
    ("Sun, 29 Nov 2026 10:00:30 GMT", "Sun, 29 Nov 2026 10:00:00 GMT", 30.0),
    ("Sun, 29 Nov 2026 10:00:30 GMT", None, None),
    ("soon", "Sun, 29 Nov 2026 10:00:00 GMT", None),
    (None, None, None),
    ("\u00b2", None, None),  # latin-1 0xB2 in a header: isdigit() is True, float() raises
    ("\u0661\u0660", None, None),
])
def test_retry_after(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date) == expected


# --- IPv6 literals (RFC 3986 §3.2.2; docs/urls.md) ----------------------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param("http://[2001:db8::1]/", id="plain"),
    pytest.param("https://[2001:db8::1]:8443/p?q", id="port-path-query"),
    pytest.param("http://[2001:DB8::1]/", id="upper-case-hex"),
    pytest.param("http://[::1]:8080/x", id="loopback"),
    pytest.param("http://[::ffff:192.0.2.1]/", id="ipv4-mapped"),
    pytest.param("http://[fe80::1]/", id="link-local-without-zone"),
    pytest.param("https://u:p@[2001:db8::1]:8443/x?y=1#z", id="userinfo"),
    pytest.param("http://[2001:db8::1]:/", id="empty-port"),
])
def test_check_url_accepts_ipv6_literals(url: str) -> None:
    parts = check_url(url)
    assert parts.hostname is not None and ":" in parts.hostname


@pytest.mark.parametrize(("url", "why"), [
    pytest.param("http://2001:db8::1/", r"goes in brackets: \[2001:db8::1\]", id="unbracketed"),
    pytest.param("http://2001:db8::1:8080/", r"goes in brackets", id="unbracketed-with-what-looks-like-a-port"),
    pytest.param("http://[2001:db8::zz]/", "not .*IPv6", id="bad-hex"),
    pytest.param("http://[::1/", "not a valid URL", id="unclosed"),
    pytest.param("http://::1]/", "not a valid URL", id="unopened"),
    pytest.param("http://[::1]x/", r"'x' after the IPv6 address", id="junk-after-bracket"),
    pytest.param("http://[::1]]/", r"after the IPv6 address", id="double-close"),
    pytest.param("http://[::1]:80:80/", r"after the IPv6 address", id="two-ports"),
    pytest.param("http://a[::1]/", "brackets only go around", id="bracket-inside-a-name"),
    pytest.param("http://[v1.fe]/", "IPvFuture", id="ipvfuture"),
    pytest.param("http://[192.0.2.1]/", "not a valid URL", id="ipv4-in-brackets"),
    pytest.param("http://[fe80::1%25eth0]/", "zone", id="rfc6874-zone"),
    pytest.param("http://[fe80::1%eth0]/", "zone", id="raw-zone"),
    pytest.param("http://[2001:db8::1]:99999/", "not a valid URL", id="port-out-of-range"),
])
def test_check_url_refuses_bad_ipv6_literals(url: str, why: str) -> None:
    with pytest.raises(FetchURLError, match=why) as caught:
        check_url(url)
    assert str(caught.value).isprintable()


BASE6 = "http://[2001:db8::1]:8080/phones/site1/provisioning.xml"


@pytest.mark.parametrize(("reference", "base", "expected"), [
    pytest.param("common.xml", BASE6, "http://[2001:db8::1]:8080/phones/site1/common.xml", id="same-directory"),
    pytest.param("../common.xml", BASE6, "http://[2001:db8::1]:8080/phones/common.xml", id="parent"),
    pytest.param("../../../x.xml", BASE6, "http://[2001:db8::1]:8080/x.xml", id="dot-segments-above-root"),
    pytest.param("./a/./b/../c.xml", BASE6, "http://[2001:db8::1]:8080/phones/site1/a/c.xml", id="dot-segments"),
    pytest.param("/x/y.xml", BASE6, "http://[2001:db8::1]:8080/x/y.xml", id="absolute-path"),
    pytest.param("?mac=1", BASE6, "http://[2001:db8::1]:8080/phones/site1/provisioning.xml?mac=1", id="query"),
    pytest.param("//[::1]/x", BASE6, "http://[::1]/x", id="network-path-to-ipv6"),
    pytest.param("//[::1]:9/x", "https://h/a", "https://[::1]:9/x", id="network-path-from-a-name"),
    pytest.param("//h/x", BASE6, "http://h/x", id="network-path-to-a-name"),
    pytest.param("https://[2001:db8::2]/d.xml", BASE6, "https://[2001:db8::2]/d.xml", id="absolute"),
    pytest.param("a.xml", "https://phone:pw@[2001:db8::1]:8443/s/top.xml", "https://phone:pw@[2001:db8::1]:8443/s/a.xml",
                 id="relative-keeps-credentials"),
    pytest.param("https://[2001:DB8:0::1]:8443/e.xml", "https://phone:pw@[2001:db8::1]:8443/s/top.xml",
                 "https://phone:pw@[2001:DB8:0::1]:8443/e.xml", id="same-address-other-spelling-same-origin"),
    pytest.param("https://[2001:db8::2]:8443/e.xml", "https://phone:pw@[2001:db8::1]:8443/s/top.xml",
                 "https://[2001:db8::2]:8443/e.xml", id="other-address-no-credentials"),
    pytest.param("//[2001:db8::1]/f.xml", "https://phone:pw@[2001:db8::1]:8443/s/top.xml",
                 "https://[2001:db8::1]/f.xml", id="other-port-no-credentials"),
])
def test_resolve_against_ipv6_base(reference: str, base: str, expected: str) -> None:
    assert resolve(reference, base) == expected


@pytest.mark.parametrize("reference", [
    pytest.param("//2001:db8::2/x", id="network-path-unbracketed"),
    pytest.param("//[::zz]/x", id="network-path-bad-literal"),
    pytest.param("http://[fe80::1%25eth0]/x", id="zone"),
])
def test_resolve_refuses_bad_ipv6_entries(reference: str) -> None:
    with pytest.raises(FetchURLError):
        resolve(reference, BASE6)


def test_origin_of_ipv6_is_canonical() -> None:
    assert origin("https://[2001:DB8:0:0::1]/x") == origin("https://[2001:db8::1]:443/y") == \
        Origin("https", "2001:db8::1", 443)


@pytest.mark.parametrize(("url", "shown"), [
    pytest.param("http://user:pw@[2001:db8::1]:8080/x", "http://user:***@[2001:db8::1]:8080/x", id="port"),
    pytest.param("https://u:p@ss@[::1]/a?q=[x]", "https://u:***@[::1]/a?q=[x]", id="at-in-password"),
    pytest.param("http://user@[::1]/x", "http://user@[::1]/x", id="no-password"),
    pytest.param("http://[::1]:8080/x", "http://[::1]:8080/x", id="no-userinfo"),
    pytest.param("http://u:secret@[::1/x", "http://u:***@[::1/x", id="unparseable-still-hidden"),
    pytest.param("http://u:secret@2001:db8::1/x", "http://u:***@2001:db8::1/x", id="unbracketed-still-hidden"),
    pytest.param("//u:secret@[::1]/x", "//u:***@[::1]/x", id="network-path"),
    pytest.param("http://[::1]/x?u:p@h", "http://[::1]/x?u:p@h", id="at-in-query-is-not-userinfo"),
])
def test_redact_ipv6(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_refusal_of_an_ipv6_url_does_not_show_its_password() -> None:
    with pytest.raises(FetchURLError) as caught:
        check_url("http://phone:s3cret@[::1/x")
    assert "s3cret" not in str(caught.value) and caught.value.url == "http://phone:***@[::1/x"


def test_split_credentials_keeps_brackets() -> None:
    assert split_credentials("https://a:b%40c@[2001:db8::1]:8443/x") == \
        ("https://[2001:db8::1]:8443/x", ("a", "b@c"))


@pytest.mark.parametrize(("url", "expected"), [
    pytest.param("http://[2001:db8::1]:8080/{mac}.xml", "http://[2001:db8::1]:8080/00095200000E.xml", id="mac"),
    pytest.param("http://[2001:db8::1]/<MACADR>/<HWTYP>.xml", "http://[2001:db8::1]/00095200000E/D400.xml",
                 id="angle-brackets-next-to-square"),
    pytest.param("http://[2001:db8::1]/%3CSERIAL%3E", "http://[2001:db8::1]/0123456789", id="percent-encoded"),
    pytest.param("http://[::1]:8080/?mac={mac}&t={type}", "http://[::1]:8080/?mac=00095200000E&t=D400", id="query"),
    pytest.param("http://[fe80::c0a8:1]/", "http://[fe80::c0a8:1]/", id="hex-that-spells-nothing"),
    pytest.param("http://[::1]/<MAC>[x]", "http://[::1]/<MAC>[x]", id="unknown-left-alone"),
])
def test_markers_in_ipv6_urls(url: str, expected: str) -> None:
    replaced = replace_markers(url, PHONE)
    assert replaced == expected
    check_url(replaced)


def test_marker_value_cannot_break_out_of_a_bracketed_host() -> None:
    odd = Device(type="]:1/x", serial="s", mac="00095200000E", firmware="x")
    replaced = replace_markers("http://[2001:db8::1]:8080/{type}.xml", odd)
    assert replaced == "http://[2001:db8::1]:8080/%5D%3A1%2Fx.xml"
    assert check_url(replaced).hostname == "2001:db8::1"


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("pool.ntp.org", ("pool.ntp.org", 123), id="name"),
    pytest.param("ntp.example:1123", ("ntp.example", 1123), id="name-port"),
    pytest.param("192.0.2.1", ("192.0.2.1", 123), id="ipv4"),
    pytest.param("192.0.2.1:1123", ("192.0.2.1", 1123), id="ipv4-port"),
    pytest.param("2001:db8:7b::1", ("2001:db8:7b::1", 123), id="ipv6-bare"),
    pytest.param("[2001:db8:7b::1]", ("2001:db8:7b::1", 123), id="ipv6-bracketed"),
    pytest.param("[2001:db8:7b::1]:1123", ("2001:db8:7b::1", 1123), id="ipv6-bracketed-port"),
    pytest.param("fe80::1%eth0", ("fe80::1%eth0", 123), id="link-local-zone"),
    pytest.param("[fe80::1%eth0]:123", ("fe80::1%eth0", 123), id="link-local-zone-port"),
])
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, default_port=123) == expected


@pytest.mark.parametrize("text", [
    pytest.param("", id="empty"),
    pytest.param("ntp example", id="space"),
    pytest.param("[192.0.2.1]", id="ipv4-in-brackets"),
    pytest.param("[2001:db8::zz]", id="bad-ipv6"),
    pytest.param("2001:db8::zz", id="bad-bare-ipv6"),
    pytest.param("[::1", id="unclosed"),
    pytest.param("[::1]123", id="no-colon-before-port"),
    pytest.param("[::1]:", id="empty-port"),
    pytest.param("h:0", id="port-zero"),
    pytest.param("h:65536", id="port-too-big"),
    pytest.param("h:ntp", id="port-name"),
    pytest.param(":123", id="no-host"),
    pytest.param("a..b", id="empty-label"),
    pytest.param("h\x00", id="nul"),
])
def test_split_host_port_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        split_host_port(text, default_port=123)
