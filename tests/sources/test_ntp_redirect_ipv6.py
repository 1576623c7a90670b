"""NTP and the Redirect Service over IPv6, against real peers in the server namespace: chrony answering on
2001:db8:7b::1, queried through provd's own NTP adapter running in an IPv6-only client namespace (every form
`ntp.servers` accepts for an IPv6 server, and the failures); and a whole provisioning run whose clock, Redirect
Service and provisioning file are all reached by IPv6 literals."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from provd.config import Config
from provd.errors import FetchError
from provd.run.provision import http_options
from provd.sources import redirect
from tests.support.fakes import FakeWeb
from tests.support.peers.netns import NetnsPair
from tests.support.peers.ntp import start_ntp_server
from tests.support.peers.web import start_prov_http, start_redirect_service

KEYS = '<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'

# provd.sources.ntp.query for each server in argv, as the preconditions call it; one JSON line per server.
QUERY = """
import asyncio, json, sys
from provd.core.clock import sample_problem
from provd.errors import NtpUnavailable
from provd.sources import ntp

async def main() -> None:
    for server in sys.argv[1:]:
        try:
            sample = await ntp.query(server, timeout=1.0)
        except NtpUnavailable as exc:
            print(json.dumps({"server": server, "error": str(exc)}))
            continue
        print(json.dumps({"server": server, "stratum": sample.stratum, "mode": sample.mode, "leap": sample.leap,
                          "offset": sample.offset, "problem": sample_problem(sample)}))

asyncio.run(main())
"""


def query_in_client(pair: NetnsPair, *servers: str) -> dict[str, dict[str, Any]]:
    """Each server's answer as provd's NTP adapter sees it from the client namespace."""
    result = pair.run_in_client([sys.executable, "-c", QUERY, *servers], timeout=30)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return {line["server"]: line for line in lines}


def test_ntp_over_ipv6_in_every_accepted_form(netns6: NetnsPair) -> None:
    """The client has no IPv4 address at all: only IPv6 can carry these queries."""
    server = start_ntp_server(netns6)
    other_port = start_ntp_server(netns6, port=1123)
    assert server.ip6 == netns6.server_ip6 == "2001:db8:7b::1" and other_port.ip6 == server.ip6
    forms = ["2001:db8:7b::1", "[2001:db8:7b::1]", "[2001:db8:7b::1]:123", "[2001:db8:7b::1]:1123",
             "2001:DB8:7B:0::1"]
    answers = query_in_client(netns6, *forms)
    for form in forms:
        answer = answers[form]
        assert "error" not in answer, answer
        assert (answer["mode"], answer["stratum"], answer["leap"], answer["problem"]) == (4, 8, 0, None), answer
        assert abs(answer["offset"]) < 1.0  # the same host clock on both sides


def test_unreachable_or_malformed_ipv6_ntp_servers_are_clear_errors(netns6: NetnsPair) -> None:
    """NtpUnavailable with the reason, never a traceback: an on-link address nobody has, a network with no
    route, a port nobody serves, an IPv4 server from an IPv6-only client, and forms that are no server."""
    start_ntp_server(netns6)
    answers = query_in_client(netns6, "2001:db8:7b::99", "2001:db8:ffff::1", "[2001:db8:7b::1]:1999",
                              netns6.server_ip, "[2001:db8:7b::1", "2001:db8:7b::1:123", "[2001:db8:7b::zz]:123",
                              "[10.123.0.1]:123")
    assert set(answers) == {"2001:db8:7b::99", "2001:db8:ffff::1", "[2001:db8:7b::1]:1999", netns6.server_ip,
                            "[2001:db8:7b::1", "2001:db8:7b::1:123", "[2001:db8:7b::zz]:123", "[10.123.0.1]:123"}
    for server, answer in answers.items():
        assert answer["error"].startswith(f"{server}: "), answer
    assert "No response" in answers["2001:db8:7b::99"]["error"]  # NDP gets no answer: ntplib's timeout
    assert "unreachable" in answers["2001:db8:ffff::1"]["error"]  # no route: ENETUNREACH at once
    assert "No response" in answers["[2001:db8:7b::1]:1999"]["error"]
    assert "unreachable" in answers[netns6.server_ip]["error"]  # no IPv4 on the client
    assert "not an NTP server" in answers["[2001:db8:7b::1"]["error"]
    assert "not an NTP server" in answers["[2001:db8:7b::zz]:123"]["error"]
    assert "not an NTP server" in answers["[10.123.0.1]:123"]["error"]
    # A bare IPv6 address cannot carry a port: `…::1:123` is the address 2001:db8:7b::1:123, which nobody has.
    assert "No response" in answers["2001:db8:7b::1:123"]["error"]


def phone_config(pair: NetnsPair, tmp_path: Path, *, redirect_url: str, ca_file: Path | None,
                 ntp: list[str]) -> Path:
    config = tmp_path / "phone.yaml"
    config.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": "auto", "interface": pair.client_if,
                   "firmware": "2.12A-00000"},
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"servers": ntp, "timeout_s": 1},
        "dhcp": {"mode": "off"},
        "redirect": {"url": redirect_url, "timeout_s": 3},
        "http": {"timeout_s": 5, "ca_file": str(ca_file) if ca_file else None},
    }))
    return config


def provd(pair: NetnsPair, config: Path, *args: str) -> tuple[int, str, str]:
    result = pair.run_in_client([sys.executable, "-m", "provd", "--config", str(config), *args], timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_redirect_service_and_provisioning_over_ipv6(netns_dual: NetnsPair, tmp_path: Path) -> None:
    """Clock from chrony at [2001:db8:7b::1], `redirect.url: https://[2001:db8:7b::1]/?mac={mac}…` (certificate
    with that IP SAN) answering 200 with an IPv6 URL, the file fetched from it: the report keeps the brackets."""
    pair = netns_dual
    start_ntp_server(pair)
    prov = start_prov_http(pair)
    prov.write(f"rd6/{pair.client_mac_marker}.xml", KEYS.format(label="over-ipv6"))
    file_url = f"{prov.url6}rd6/{pair.client_mac_marker}.xml"
    assert file_url.startswith("http://[2001:db8:7b::1]:8080/")
    service = start_redirect_service(pair, 200, f"{file_url}\n", ipv6=True)
    assert service.origin == "https://[2001:db8:7b::1]"
    config = phone_config(pair, tmp_path, redirect_url=service.url_template, ca_file=service.ca_file,
                          ntp=["[2001:db8:7b::1]"])
    switches = tmp_path / "switches.xml"
    switches.write_text("<provisioning><dhcp>false</dhcp><redirect>true</redirect><pbx>false</pbx></provisioning>")
    assert provd(pair, config, "apply", str(switches))[0] == 0
    code, out, err = provd(pair, config, "start", "--json", "--wait", "8")
    report = json.loads(out)
    assert code == 0, (report, err)
    assert (report["source"], report["url"], report["outcome"]) == ("redirect", file_url, "applied")
    assert [f["url"] for f in report["files"]] == [file_url]
    redirect = next(a for a in report["attempts"] if a["source"] == "redirect")
    assert redirect["result"] == "found"
    (request,) = service.wait_for_requests(1)
    assert request.query == {"mac": [pair.client_mac_marker], "serial": ["0123456789"], "type": ["D400"]}
    assert {k.lower(): v for k, v in request.headers.items()}["host"] == "[2001:db8:7b::1]"
    (entry,) = prov.wait_for_log(lambda e: e.uri.startswith("/rd6/"))
    assert (entry.status, entry.remote_addr) == (200, pair.client_ip6)
    _, shown, _ = provd(pair, config, "show", "keys")
    assert 'label="over-ipv6"' in shown


def test_run_waits_while_the_only_ipv6_ntp_server_is_silent(netns_dual: NetnsPair, tmp_path: Path) -> None:
    """No chrony: the run does not provision with an unknown time, and says why (the server and the reason)."""
    config = phone_config(netns_dual, tmp_path, redirect_url="https://[2001:db8:7b::1]/?mac={mac}",
                          ca_file=None, ntp=["[2001:db8:7b::1]:123"])
    code, out, err = provd(netns_dual, config, "start", "--json", "--wait", "3")
    assert code != 0
    text = out + err
    assert "[2001:db8:7b::1]:123" in text and "time not valid" in text


REDIRECT = "https://[2001:db8:7b::1]/?mac=00095200000E"


@pytest.mark.parametrize(("body", "found"), [
    pytest.param("http://[2001:db8:7b::1]:8080/prov/00095200000E.xml\n",
                 "http://[2001:db8:7b::1]:8080/prov/00095200000E.xml", id="bracketed-with-port"),
    pytest.param("\n  https://[2001:db8::1]/a.xml?x=[1]\nsecond line\n", "https://[2001:db8::1]/a.xml?x=[1]",
                 id="first-non-blank-line"),
])
def test_redirect_answer_with_an_ipv6_url_is_found(body: str, found: str) -> None:
    outcome = asyncio.run(ask(FakeWeb({REDIRECT: body}), REDIRECT))
    assert (outcome.url, outcome.registered) == (found, True)


@pytest.mark.parametrize(("body", "why"), [
    pytest.param("http://2001:db8:7b::1/prov.xml", "goes in brackets", id="unbracketed"),
    pytest.param("http://[2001:db8:7b::1/prov.xml", "not a valid URL", id="unclosed"),
    pytest.param("http://[fe80::1%25eth0]/prov.xml", "zone", id="zone"),
    pytest.param("http://u:s3cret@[::1]x/prov.xml", "after the IPv6 address", id="junk-after-bracket"),
])
def test_redirect_answer_with_an_unfetchable_ipv6_url_fails_the_source(body: str, why: str) -> None:
    with pytest.raises(FetchError, match=why) as caught:
        asyncio.run(ask(FakeWeb({REDIRECT: body}), REDIRECT))
    assert "s3cret" not in str(caught.value) and caught.value.url == REDIRECT


async def ask(web: FakeWeb, url: str) -> redirect.RedirectOutcome:
    async with web.client(http_options(Config(), "provd/test")) as client:
        return await redirect.ask(client, url, max_bytes=10_000)
