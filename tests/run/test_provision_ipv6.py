"""The run on IPv6-only and dual-stack links, in-process (docs/design.md §11): which DHCP families are asked,
which answer wins, what the report says; the outside world faked (tests/support/fakes.py), the store real.
The same paths against real peers (ISC dhcpd -6, chrony, nginx in network namespaces) are in
tests/run/test_ipv6_peers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provd.config import Config, DeviceConfig, Dhcp6Config, DhcpConfig, NtpConfig, PathsConfig, RedirectConfig
from provd.core.dhcp import DhcpAnswer
from provd.core.dhcp6 import Dhcp6Answer
from provd.errors import DhcpUnavailable
from provd.model import Trigger
from provd.run import provision
from provd.settings.catalog import Catalog
from provd.settings.phone import PhoneSettings
from tests.support.fakes import FakeDhcp, FakeDhcp6, FakeInterfaces, FakeWeb, World, good_sample

MAC = "001565F4F9E1"
KEYS = b'<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'
V6_ONLY = FakeInterfaces(None, ipv6=("2001:db8::50", "fe80::215:65ff:fef4:f9e1"))
DUAL = ("2001:db8::50", "fe80::215:65ff:fef4:f9e1")


def keys(label: str) -> bytes:
    return KEYS.replace(b"{label}", label.encode())


def settings_with(tmp_path: Path, catalog: Catalog, *, dhcp6: str = "inform", dhcp: str = "inform") -> PhoneSettings:
    config = Config(device=DeviceConfig(mac="00:15:65:f4:f9:e1", interface="eth0"),
                    paths=PathsConfig(state_dir=tmp_path / "state", runtime_dir=tmp_path / "run"),
                    ntp=NtpConfig(servers=("ntp.test",)), redirect=RedirectConfig(url="https://redirect.test/"),
                    dhcp=DhcpConfig(mode=dhcp), dhcp6=Dhcp6Config(mode=dhcp6, enterprise=0))
    return PhoneSettings(config, catalog)


@pytest.fixture
def settings(tmp_path: Path, catalog: Catalog) -> Iterator[PhoneSettings]:
    opened = settings_with(tmp_path, catalog)
    yield opened
    opened.close()


def run(settings: PhoneSettings, world: World, **kw: Any) -> dict[str, Any]:
    report = asyncio.run(provision.run(settings, trigger=Trigger.CLI, ports=world.ports(), **kw))
    out: dict[str, Any] = report.to_json()
    return out


def dhcp_attempts(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["family"], a["result"]) for a in report["attempts"] if a["source"] == "dhcp"]


def boot_file(url: str) -> Dhcp6Answer:
    return Dhcp6Answer(boot_file_url=url.encode())


def test_ipv6_only_link_provisions_from_dhcpv6_without_trying_dhcpv4(settings: PhoneSettings) -> None:
    world = World(interfaces=V6_ONLY, dhcp6=FakeDhcp6(boot_file("http://[2001:db8::1]/{mac}.xml")),
                  web=FakeWeb({f"http://[2001:db8::1]/{MAC}.xml": keys("v6")}))
    report = run(settings, world)
    assert report["outcome"] == "applied", report
    assert (report["source"], report["family"], report["url"]) == ("dhcp", "ipv6", f"http://[2001:db8::1]/{MAC}.xml")
    assert dhcp_attempts(report) == [("ipv4", "skipped"), ("ipv6", "found")]
    assert "no IPv4 address" in report["attempts"][0]["detail"]
    assert world.dhcp.informs == []  # DHCPv4 not tried at all
    assert world.dhcp6.informs[0]["link_local"] == "fe80::215:65ff:fef4:f9e1"
    assert world.dhcp6.informs[0]["vendor_class"] == "auerswald-D400"
    assert world.clock.slept == []  # no waiting for anything


def test_ipv6_only_link_with_dhcp6_off_waits_for_an_ipv4_address(tmp_path: Path, catalog: Catalog) -> None:
    settings = settings_with(tmp_path, catalog, dhcp6="off")
    try:
        report = run(settings, World(interfaces=V6_ONLY), wait_until=4.0)
    finally:
        settings.close()
    assert report["outcome"] == "waiting"
    assert report["errors"] == ["waiting: interface eth0 is not up with an IPv4 address"]


def test_ipv6_only_link_waits_for_a_global_address(settings: PhoneSettings) -> None:
    world = World(interfaces=FakeInterfaces(None, ipv6=("fe80::1",)))
    report = run(settings, world, wait_until=4.0)
    assert report["errors"] == ["waiting: interface eth0 is not up with an IPv4 or a global IPv6 address"]
    assert world.dhcp6.informs == []


def test_dual_stack_dhcpv6_first_with_a_url_wins_and_dhcpv4_is_cancelled(settings: PhoneSettings) -> None:
    """DHCPv4 would answer only after 9 s (a silent server's retries); the run does not wait for it."""
    world = World(interfaces=FakeInterfaces("10.0.0.50", ipv6=DUAL),
                  dhcp=FakeDhcp(DhcpAnswer(option67=b"http://v4.test/a.xml"), delay=9.0),
                  dhcp6=FakeDhcp6(boot_file("http://[2001:db8::1]/b.xml"), delay=0.5),
                  web=FakeWeb({"http://[2001:db8::1]/b.xml": keys("v6")}))
    report = run(settings, world)
    assert report["outcome"] == "applied"
    assert report["url"] == "http://[2001:db8::1]/b.xml"
    assert dhcp_attempts(report) == [("ipv6", "found"), ("ipv4", "skipped")]
    assert report["attempts"][1]["detail"] == "cancelled: DHCPv6 answered first with a URL"
    assert world.clock.monotonic() < 1.0


def test_dual_stack_dhcpv4_first_with_a_url_wins(settings: PhoneSettings) -> None:
    world = World(interfaces=FakeInterfaces("10.0.0.50", ipv6=DUAL),
                  dhcp=FakeDhcp(DhcpAnswer(option67=b"http://v4.test/a.xml"), delay=0.2),
                  dhcp6=FakeDhcp6(boot_file("http://[2001:db8::1]/b.xml"), delay=5.0),
                  web=FakeWeb({"http://v4.test/a.xml": keys("v4")}))
    report = run(settings, world)
    assert (report["outcome"], report["family"], report["url"]) == ("applied", "ipv4", "http://v4.test/a.xml")
    assert dhcp_attempts(report) == [("ipv4", "found"), ("ipv6", "skipped")]
    assert report["attempts"][1]["detail"] == "cancelled: DHCPv4 answered first with a URL"


def test_an_answer_without_a_url_does_not_end_the_dhcp_step(settings: PhoneSettings) -> None:
    """DHCPv6 answers first with NTP servers only: the run still waits for DHCPv4's URL; the NTP servers of
    both are asked, DHCPv6's first (they answered first), before ntp.servers."""
    world = World(interfaces=FakeInterfaces("10.0.0.50", ipv6=DUAL),
                  dhcp=FakeDhcp(DhcpAnswer(option67=b"http://v4.test/a.xml", ntp_servers=("10.0.0.1",)), delay=2.0),
                  dhcp6=FakeDhcp6(Dhcp6Answer(ntp_servers=("2001:db8::123",)), delay=0.1),
                  web=FakeWeb({"http://v4.test/a.xml": keys("v4")}))
    world.ntp.default = False
    world.ntp.answers = {"10.0.0.1": good_sample("10.0.0.1")}
    report = run(settings, world)
    assert (report["outcome"], report["url"]) == ("applied", "http://v4.test/a.xml")
    assert dhcp_attempts(report) == [("ipv6", "none"), ("ipv4", "found")]
    assert world.ntp.queries == ["2001:db8::123", "10.0.0.1"]


def test_dhcpv6_that_cannot_be_asked_is_a_failed_attempt_and_discovery_goes_on(settings: PhoneSettings) -> None:
    world = World(interfaces=V6_ONLY, dhcp6=FakeDhcp6(error=DhcpUnavailable("DHCPv6 on eth0: no such device")),
                  web=FakeWeb({"https://redirect.test/": b"http://[2001:db8::1]/r.xml\n",
                               "http://[2001:db8::1]/r.xml": keys("redirect")}))
    report = run(settings, world)
    assert (report["outcome"], report["source"]) == ("applied", "redirect")
    assert dhcp_attempts(report) == [("ipv4", "skipped"), ("ipv6", "failed")]
    assert report["attempts"][1]["detail"] == "DHCPv6 on eth0: no such device"


def test_dhcp6_off_leaves_the_report_as_before(tmp_path: Path, catalog: Catalog) -> None:
    """No DHCPv6 attempt, one DHCPv4 attempt (now naming its family), on a dual-stack link."""
    settings = settings_with(tmp_path, catalog, dhcp6="off")
    try:
        world = World(interfaces=FakeInterfaces("10.0.0.50", ipv6=DUAL),
                      dhcp=FakeDhcp(DhcpAnswer(option67=b"http://v4.test/a.xml")),
                      web=FakeWeb({"http://v4.test/a.xml": keys("v4")}))
        report = run(settings, world)
    finally:
        settings.close()
    assert dhcp_attempts(report) == [("ipv4", "found")]
    assert world.dhcp6.informs == []
