"""Whole runs on IPv6-only and dual-stack links against real peers (docs/design.md §11): ISC `dhcpd -6` (and
`dhcpd -4`), chrony and nginx in the server namespace, provd's CLI and daemon in the client namespace, from
the DHCPv6 Information-Request to committed settings. The same decisions with fakes, in milliseconds, are in
tests/run/test_provision_ipv6.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Provd
from tests.support.daemon import running_daemon
from tests.support.peers.dhcp import start_dhcp_server
from tests.support.peers.dhcp6 import Dhcp6Servers, ScriptedReply, Vendor, ntp_option_data, option
from tests.support.peers.netns import NetnsPair
from tests.support.peers.ntp import start_ntp_server
from tests.support.peers.web import ProvHttp, start_prov_http

KEYS = '<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'


class Phone:
    """provd in the client namespace with its own store; DHCPv6 on, DHCPv4 on (it is simply not tried where
    the link has no IPv4), NTP only from what DHCP says unless `ntp` is given."""

    def __init__(self, pair: NetnsPair, tmp_path: Path, *, ntp: list[str] | None = None, dhcp6: str = "inform",
                 dhcp_timeout_s: float = 1.0) -> None:
        self.pair = pair
        self.tmp_path = tmp_path
        self.config = tmp_path / "phone.yaml"
        self.config.write_text(json.dumps({
            "device": {"type": "D400", "serial": "0123456789", "mac": "auto", "interface": pair.client_if},
            "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
            "ntp": {"servers": ntp or [], "timeout_s": 1},
            "dhcp": {"mode": "inform", "timeout_s": dhcp_timeout_s},
            "dhcp6": {"mode": dhcp6, "timeout_s": 0.5},
            "redirect": {"url": f"https://[{pair.server_ip6}]:9/?mac={{mac}}", "timeout_s": 1},
            "multicast": {"timeout_s": 0.5},
            "http": {"timeout_s": 5},
        }))

    def provd(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        result = self.pair.run_in_client([sys.executable, "-m", "provd", "--config", str(self.config), *args],
                                         timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    def switches(self, *, url: str = "") -> None:
        patch = self.config.with_name("switches.xml")
        patch.write_text(f"<provisioning><dhcp>true</dhcp><redirect>false</redirect><pbx>false</pbx><url>{url}</url>"
                         "</provisioning>")
        code, _, err = self.provd("apply", str(patch))
        assert code == 0, err

    def start(self) -> dict[str, Any]:
        code, out, err = self.provd("start", "--json", "--wait", "10")
        report: dict[str, Any] = json.loads(out)
        assert code == (0 if report["outcome"] in ("applied", "unchanged") else 1), err
        return report

    def shown_keys(self) -> str:
        _, shown, _ = self.provd("show", "keys")
        return shown


def dhcp_attempts(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["family"], a["result"]) for a in report["attempts"] if a["source"] == "dhcp"]


def serve(prov_http: ProvHttp, pair: NetnsPair, label: str) -> str:
    """The phone's file on nginx; its URL over IPv6 (a bracketed literal)."""
    prov_http.write(f"v6/{pair.client_mac_marker}.xml", KEYS.format(label=label))
    return f"http://[{pair.server_ip6}]:8080/v6/{pair.client_mac_marker}.xml"


def test_ipv6_only_link_from_dhcpv6_to_committed_settings(netns6: NetnsPair, tmp_path: Path,
                                                          dhcp6_server: Dhcp6Servers) -> None:
    """No IPv4 on the client at all: DHCPv6 gives the URL (option 59) and the NTP server (option 56), chrony
    answers over IPv6, nginx serves over IPv6, the settings are committed; DHCPv4 is not tried."""
    start_ntp_server(netns6)
    prov_http = start_prov_http(netns6)
    url = serve(prov_http, netns6, "ipv6-only")
    dhcp6_server(boot_file_url=f"http://[{netns6.server_ip6}]:8080/v6/{{mac}}.xml",
                 ntp=ntp_option_data(netns6.server_ip6))
    phone = Phone(netns6, tmp_path)
    phone.switches()
    started = time.monotonic()
    report = phone.start()
    elapsed = time.monotonic() - started
    assert (report["outcome"], report["source"], report["family"], report["url"]) == \
        ("applied", "dhcp", "ipv6", url), report
    assert dhcp_attempts(report) == [("ipv4", "skipped"), ("ipv6", "found")]
    assert "no IPv4 address" in report["attempts"][0]["detail"]
    assert "Reply from fe80::" in report["attempts"][1]["detail"]
    assert report["files"][0]["url"] == url
    assert 'label="ipv6-only"' in phone.shown_keys()
    assert elapsed < 5.0  # no DHCPv4 retries waited for (its budget here is 1 + 2 + 4 s)


def test_ipv6_only_discover_shows_both_families(netns6: NetnsPair, tmp_path: Path,
                                                dhcp6_server: Dhcp6Servers) -> None:
    start_ntp_server(netns6)
    dhcp6_server(vendors=[Vendor(server=f"http://[{netns6.server_ip6}]:8080", file="v6/<MACADR>.xml")],
                 boot_file_url="http://unused.invalid/", ntp=ntp_option_data(netns6.server_ip6))
    phone = Phone(netns6, tmp_path)
    code, out, _ = phone.provd("discover", "--json", "--wait", "10")
    found = json.loads(out)
    assert code == 0
    assert found["url"] == f"http://[{netns6.server_ip6}]:8080/v6/{netns6.client_mac_marker}.xml"  # 17 over 59
    assert [(a["source"], a.get("family"), a["result"]) for a in found["attempts"]][:2] == \
        [("dhcp", "ipv4", "skipped"), ("dhcp", "ipv6", "found")]
    code, text, _ = phone.provd("discover", "--wait", "10")
    assert "dhcp/ipv4" in text and "dhcp/ipv6" in text


def test_dual_stack_with_dhcpv4_silent_does_not_wait_for_it(netns_dual: NetnsPair, tmp_path: Path,
                                                            dhcp6_server: Dhcp6Servers) -> None:
    """Both families on the link, no DHCPv4 server: DHCPv6's answer ends the DHCP step at once; the DHCPv4
    exchange (which would take 1 + 2 + 4 s to give up) is cancelled and reported so."""
    start_ntp_server(netns_dual)
    prov_http = start_prov_http(netns_dual)
    url = serve(prov_http, netns_dual, "dual-v6")
    dhcp6_server(vendors=[Vendor(server=f"http://[{netns_dual.server_ip6}]:8080", file="v6/{mac}.xml")])
    phone = Phone(netns_dual, tmp_path, ntp=[netns_dual.server_ip])
    phone.switches()
    started = time.monotonic()
    report = phone.start()
    elapsed = time.monotonic() - started
    assert (report["outcome"], report["family"], report["url"]) == ("applied", "ipv6", url)
    assert dhcp_attempts(report) == [("ipv6", "found"), ("ipv4", "skipped")]
    assert report["attempts"][1]["detail"] == "cancelled: DHCPv6 answered first with a URL"
    assert elapsed < 4.0
    assert 'label="dual-v6"' in phone.shown_keys()


def test_dual_stack_dhcpv4_url_wins_when_dhcpv6_has_none(netns_dual: NetnsPair, tmp_path: Path,
                                                         dhcp6_server: Dhcp6Servers) -> None:
    """ISC dhcpd -4 and -6 side by side: DHCPv6 answers with an NTP server only, DHCPv4 with the URL; the run
    takes DHCPv4's URL and the clock from DHCPv6's server (asked first: it answered first)."""
    start_ntp_server(netns_dual)
    prov_http = start_prov_http(netns_dual)
    prov_http.write(f"prov/{netns_dual.client_mac_marker}.xml", KEYS.format(label="dual-v4"))
    start_dhcp_server(netns_dual, "isc")  # option 66 http://10.123.0.1:8080 + file prov/<MACADR>.xml
    dhcp6_server(ntp=ntp_option_data(netns_dual.server_ip6))
    phone = Phone(netns_dual, tmp_path)
    phone.switches()
    report = phone.start()
    assert (report["outcome"], report["family"]) == ("applied", "ipv4"), report
    assert report["url"] == f"http://{netns_dual.server_ip}:8080/prov/{netns_dual.client_mac_marker}.xml"
    assert sorted(dhcp_attempts(report)) == [("ipv4", "found"), ("ipv6", "none")]
    assert 'label="dual-v4"' in phone.shown_keys()


@pytest.mark.parametrize("reply", [
    pytest.param(ScriptedReply(truncate=9, options=option(59, b"http://cut.invalid/")), id="truncated"),
    pytest.param(ScriptedReply(options=option(59, b"\xff\xfe") + b"\x00\x11\xff\xff"), id="bad-lengths"),
    pytest.param(ScriptedReply(raw=bytes(range(256))), id="garbage"),
])
def test_malformed_dhcpv6_replies_fall_through_to_the_configured_url(netns6: NetnsPair, tmp_path: Path,
                                                                     dhcp6_server: Dhcp6Servers,
                                                                     reply: ScriptedReply) -> None:
    """A hostile or broken DHCPv6 server: nothing crashes, the DHCPv6 attempt says what it got, and the run
    goes on to provisioning/url."""
    start_ntp_server(netns6)
    prov_http = start_prov_http(netns6)
    url = serve(prov_http, netns6, "configured")
    dhcp6_server.scripted([reply])
    phone = Phone(netns6, tmp_path, ntp=[netns6.server_ip6])
    phone.switches(url=url)
    report = phone.start()
    assert (report["outcome"], report["source"], report["url"]) == ("applied", "configured", url), report
    assert dhcp_attempts(report) == [("ipv4", "skipped"), ("ipv6", "none")]


def test_daemon_boot_run_on_an_ipv6_only_link(netns6: NetnsPair, tmp_path: Path,
                                              dhcp6_server: Dhcp6Servers) -> None:
    """`provd run` as systemd starts it, in the IPv6-only namespace: the boot run provisions from DHCPv6."""
    start_ntp_server(netns6)
    prov_http = start_prov_http(netns6)
    url = serve(prov_http, netns6, "daemon-v6")
    dhcp6_server(boot_file_url=url, ntp=ntp_option_data(netns6.server_ip6))
    phone = Phone(netns6, tmp_path)
    phone.switches()
    provd = Provd(phone.config, tmp_path / "state")
    with running_daemon(provd, tmp_path, prefix=("ip", "netns", "exec", netns6.client_ns)) as daemon:
        boot = daemon.wait_idle_after(1, timeout=30)
    assert (boot["trigger"], boot["outcome"], boot["family"], boot["url"]) == ("boot", "applied", "ipv6", url)
    assert 'label="daemon-v6"' in phone.shown_keys()
