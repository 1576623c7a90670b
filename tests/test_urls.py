"""Markers (DESIGN §4) and reference resolution (RFC 3986), as pure tables."""

from __future__ import annotations

import pytest

from provd.core.backoff import backoff_delay, parse_retry_after
from provd.core.markers import normalise_mac, replace_markers
from provd.core.urls import check_url, redact, resolve, split_credentials
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
    pytest.param("../shared.xml", "https://prov.example.com/phones/shared.xml", id="parent"),
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
])
def test_retry_after(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date) == expected
