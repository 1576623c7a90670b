"""HTTP(S) over IPv6 end to end, as a user runs `provd start --url http://[::1]:PORT/…` against nginx listening
on the IPv6 loopback: a patch, a reference file whose entries resolve against its own bracketed URL, redirects
from one IPv6 URL to another, credentials in the userinfo, and the report keeping the bracketed form (with the
password hidden)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.cli import Provd
from tests.support.peers.http import HttpPeers, Served

MAC = "00:09:52:00:00:0E"


@pytest.fixture
def phone(tmp_path: Path, http_peers: HttpPeers) -> Provd:
    state = tmp_path / "state"
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": MAC, "interface": "lo", "firmware": "2.12A-00000"},
        "paths": {"state_dir": str(state), "runtime_dir": str(tmp_path / "run")},
        "http": {"ca_file": str(http_peers.ca_file), "timeout_s": 5},
        "ntp": {"required": False},  # NTP over IPv6: tests/sources/test_ntp_redirect_ipv6.py
    }))
    return Provd(cfg, state)


def start(provd: Provd, url: str, *, check: int) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(provd.run("start", "--url", url, "--json", check=check).stdout)
    return report


def key(number: int, label: str) -> str:
    return f'<keys><phoneXtensions><key keyNumber="{number}" label="{label}"/></phoneXtensions></keys>'


def reference(*urls: str) -> str:
    return "<referencedSettings>" + "".join(f"<url>{u}</url>" for u in urls) + "</referencedSettings>"


def labels(provd: Provd) -> list[str]:
    text = provd.run("show", "keys", check=0).stdout
    return [part.split('"')[0] for part in text.split('label="')[1:]]


def port(url: str) -> int:
    found = urlsplit(url).port
    assert found is not None
    return found


def test_patch_over_ipv6(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("a.xml", key(1, "over-ipv6"))
    url = served.http6_url + "a.xml"
    assert url.startswith("http://[::1]:")
    report = start(phone, url, check=0)
    assert (report["outcome"], report["url"]) == ("applied", url)
    assert [f["url"] for f in report["files"]] == [url]
    assert labels(phone) == ["over-ipv6"]
    (entry,) = http_peers.wait_for_log(lambda e: e.uri == f"/{served.path.name}/a.xml")
    assert entry.remote_addr == "::1"  # it came over IPv6, not over a 127.0.0.1 listener on the same port
    assert entry.user_agent.startswith("provd/") and "00095200000E" in entry.user_agent


def test_reference_entries_resolve_against_the_bracketed_url(phone: Provd, served: Served,
                                                             http_peers: HttpPeers) -> None:
    """RFC 3986 §5.2 against `http://[::1]:PORT/<dir>/sub/top.xml`: relative, dot segments, absolute path,
    a network-path reference to another IPv6 origin (the HTTPS port), and a marker."""
    d = served.path.name
    https_port = port(served.https6_url)
    served.write("sub/top.xml", reference("a.xml", "../b.xml", f"/{d}/c.xml", "./x/../models/&lt;HWTYP&gt;.xml",
                                          f"https://[::1]:{https_port}/{d}/e.xml"))
    for number, name in enumerate(("sub/a", "b", "c", "sub/models/D400", "e"), start=1):
        served.write(f"{name}.xml", key(number, name.rsplit("/", 1)[-1]))
    report = start(phone, served.http6_url + "sub/top.xml", check=0)
    assert report["outcome"] == "applied", report["errors"]
    assert [f["url"] for f in report["files"]] == [
        served.http6_url + "sub/top.xml", served.http6_url + "sub/a.xml", served.http6_url + "b.xml",
        served.http6_url + "c.xml", served.http6_url + "sub/models/D400.xml", served.https6_url + "e.xml"]
    assert labels(phone) == ["a", "b", "c", "D400", "e"]
    logged = http_peers.wait_for_log(lambda e: d in e.uri, count=6)
    assert {e.remote_addr for e in logged} == {"::1"}


def test_network_path_reference_to_ipv6(phone: Provd, served: Served) -> None:
    """`//[::1]:PORT/…` from a file fetched over IPv4: the scheme stays, the authority is the literal's."""
    served.write("top.xml", reference(f"//[::1]:{port(served.http6_url)}/{served.path.name}/a.xml"))
    served.write("a.xml", key(1, "network-path"))
    report = start(phone, served.http_url + "top.xml", check=0)
    assert report["files"][1]["url"] == served.http6_url + "a.xml"
    assert labels(phone) == ["network-path"]


def test_redirect_from_ipv6_to_ipv6_and_entries_resolve_against_the_target(
        phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    """nginx `return 302 https://[::1]:PORT/…` (an upgrade to HTTPS, over the IPv6 loopback, certificate with an
    IP SAN ::1): followed, and the reference file's entries resolve against where it really was."""
    d = served.path.name
    served.write("top.xml", reference("a.xml"))
    served.write("a.xml", key(1, "after-redirect"))
    asked = f"{http_peers.http6_url}/to6/https/{port(served.https6_url)}/{d}/top.xml"
    report = start(phone, asked, check=0)
    assert report["outcome"] == "applied", report["errors"]
    assert [(f["url"], f.get("requested")) for f in report["files"]] == [
        (served.https6_url + "top.xml", asked), (served.https6_url + "a.xml", None)]
    assert labels(phone) == ["after-redirect"]
    logged = http_peers.wait_for_log(lambda e: e.uri.endswith(f"/{d}/a.xml"))
    assert (logged[0].scheme, logged[0].remote_addr) == ("https", "::1")


def test_relative_redirect_on_ipv6(phone: Provd, http_peers: HttpPeers) -> None:
    """nginx's /redirect/1 answers `Location: http://[::1]:PORT/hello.xml` (built from the Host header)."""
    report = start(phone, f"{http_peers.http6_url}/redirect/1", check=0)
    assert report["files"][0]["url"] == f"{http_peers.http6_url}/hello.xml"
    assert report["files"][0]["requested"] == f"{http_peers.http6_url}/redirect/1"


def test_https_to_http_redirect_over_ipv6_is_refused(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("down.xml", key(1, "downgraded"))
    before = phone.backup()
    asked = f"{http_peers.https6_url}/to6/http/{port(served.http6_url)}/{served.path.name}/down.xml"
    report = start(phone, asked, check=1)
    (error,) = report["errors"]
    assert f"redirected to {served.http6_url}down.xml" in error and "plain HTTP" in error
    assert phone.backup() == before


def test_https_over_ipv6_uses_http2(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("tls.xml", key(1, "tls6"))
    assert start(phone, served.https6_url + "tls.xml", check=0)["outcome"] == "applied"
    (entry,) = http_peers.wait_for_log(lambda e: e.uri == f"/{served.path.name}/tls.xml")
    assert (entry.protocol, entry.remote_addr) == ("HTTP/2.0", "::1")


def test_credentials_over_ipv6_stay_with_the_origin(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    """Basic auth on [::1]: the password is used and hidden in the report (`phone:***@[::1]:PORT`); it goes to
    the relative entry and to the same address spelled out in full (one origin, RFC 5952), not to
    127.0.0.1 on the same port (another origin, though the same server)."""
    d = served.path.name
    basic = port(served.basic6_url)
    user, password = http_peers.basic_user, http_peers.basic_password
    served.write("top.xml", reference("a.xml", f"http://[0:0:0:0:0:0:0:1]:{basic}/{d}/b.xml"))
    served.write("a.xml", key(1, "a"))
    served.write("b.xml", key(2, "b"))
    url = served.basic6_url.replace("://", f"://{user}:{password}@", 1) + "top.xml"
    report = start(phone, url, check=0)
    assert report["outcome"] == "applied", report["errors"]
    assert password not in json.dumps(report)
    shown = f"http://{user}:***@[::1]:{basic}/{d}/"
    assert report["url"] == shown + "top.xml"
    assert [f["url"] for f in report["files"]] == [
        shown + "top.xml", shown + "a.xml", f"http://{user}:***@[0:0:0:0:0:0:0:1]:{basic}/{d}/b.xml"]
    logged = http_peers.wait_for_log(lambda e: d in e.uri and e.status == 200, count=3)
    assert {(e.remote_user, e.remote_addr) for e in logged} == {(user, "::1")}

    served.write("v4.xml", reference(f"http://127.0.0.1:{basic}/{d}/a.xml"))
    other = start(phone, served.basic6_url.replace("://", f"://{user}:{password}@", 1) + "v4.xml", check=1)
    assert "401" in other["errors"][0] and password not in json.dumps(other)


@pytest.mark.parametrize(("url", "why"), [
    pytest.param("http://::1:8080/a.xml", "goes in brackets", id="unbracketed"),
    pytest.param("http://[::1:8080/a.xml", "not a valid URL", id="unclosed"),
    pytest.param("http://[fe80::1%25lo]:8080/a.xml", "zone", id="zone"),
    pytest.param("http://phone:s3cret@[::1]x/a.xml", "after the IPv6 address", id="junk-after-bracket"),
])
def test_bad_ipv6_url_is_a_clear_error(phone: Provd, url: str, why: str) -> None:
    before = phone.backup()
    result = phone.run("start", "--url", url, check=1)
    assert result.stderr.count("\n") == 1 and "provd: error:" in result.stderr and why in result.stderr
    assert "s3cret" not in result.stderr
    assert phone.backup() == before
