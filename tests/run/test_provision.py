"""The whole run in-process (docs/design.md §1: preconditions → discovery → fetch → apply → commit), its
outside world faked (tests/support/fakes.py) and the store real on tmp_path. What comes first is decided by the
fake clock or by events, never by real sleeps; the end-to-end tests against real peers stay beside these."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provd.config import Config, DeviceConfig, NtpConfig, PathsConfig, RedirectConfig
from provd.core.dhcp import DhcpAnswer
from provd.errors import DhcpUnavailable, FetchConnectionError, MulticastUnavailable
from provd.model import Trigger
from provd.run import provision, restore
from provd.settings.catalog import Catalog
from provd.settings.phone import PhoneSettings
from tests.support.fakes import Answer, FakeDhcp, FakeInterfaces, FakeMulticast, FakeNtp, FakeWeb, World

MAC = "001565F4F9E1"
REDIRECT = f"https://redirect.test/?mac={MAC}"
KEYS = '<keys><phoneXtensions><key keyNumber="{n}" label="{label}"/></phoneXtensions></keys>'


def keys(label: str, n: int = 1) -> bytes:
    return KEYS.format(n=n, label=label).encode()


@pytest.fixture
def settings(tmp_path: Path, catalog: Catalog) -> Iterator[PhoneSettings]:
    config = Config(device=DeviceConfig(mac="00:15:65:f4:f9:e1", interface="eth0"),
                    paths=PathsConfig(state_dir=tmp_path / "state", runtime_dir=tmp_path / "run"),
                    ntp=NtpConfig(servers=("ntp.test",)), redirect=RedirectConfig(url="https://redirect.test/?mac={mac}"))
    opened = PhoneSettings(config, catalog)
    yield opened
    opened.close()


def run(settings: PhoneSettings, world: World, **kw: Any) -> dict[str, Any]:
    report = asyncio.run(provision.run(settings, trigger=Trigger.CLI, ports=world.ports(), **kw))
    out: dict[str, Any] = report.to_json()
    return out


def attempts(report: dict[str, Any]) -> dict[str, str]:
    return {a["source"]: a["result"] for a in report["attempts"]}


def keys_xml(settings: PhoneSettings) -> str:
    return settings.section_xml("keys")


def test_applied_from_dhcp_66_67(settings: PhoneSettings) -> None:
    """A scheme-less 66/67 is tried as https, then http; the later stages are not asked."""
    world = World(dhcp=FakeDhcp(DhcpAnswer(option66=b"prov.test", option67=b"/{mac}.xml")),
                  web=FakeWeb({f"https://prov.test/{MAC}.xml": FetchConnectionError("cannot connect: refused",
                                                                                     url=f"https://prov.test/{MAC}.xml"),
                               f"http://prov.test/{MAC}.xml": keys("from-dhcp")}))
    report = run(settings, world)
    assert report["outcome"] == "applied", report
    assert report["source"] == "dhcp"
    assert report["url"] == f"http://prov.test/{MAC}.xml"
    assert attempts(report) == {"dhcp": "found", "redirect": "skipped", "multicast": "skipped",
                                "configured": "skipped"}
    assert [r.url for r in world.web.requests] == [f"https://prov.test/{MAC}.xml", f"http://prov.test/{MAC}.xml"]
    assert world.multicast.lookups == []
    assert world.dhcp.informs[0]["address"] == "10.0.0.50"
    assert world.dhcp.informs[0]["vendor_class"] == "auerswald-D400"  # option 60: the default's <type> expanded
    assert report["generation"] == settings.store.current_generation()
    assert 'label="from-dhcp"' in keys_xml(settings)
    assert world.clock.slept == []  # the interface was up and the time valid at once


@pytest.mark.parametrize(("redirect_s", "multicast_s", "winner", "loser"), [
    pytest.param(0.01, 0.2, "redirect", "multicast", id="redirect-first"),
    pytest.param(0.2, 0.01, "multicast", "redirect", id="multicast-first"),
])
def test_redirect_multicast_race(settings: PhoneSettings, redirect_s: float, multicast_s: float, winner: str,
                                 loser: str) -> None:
    """The first URL of the stage wins; the other source is cancelled (deadlines on the fake clock)."""
    world = World(web=FakeWeb({REDIRECT: Answer(b"http://prov.test/redirect.xml\n", delay=redirect_s),
                               "http://prov.test/redirect.xml": keys("redirect"),
                               "http://prov.test/multicast.xml": keys("multicast")}),
                  multicast=FakeMulticast("http://prov.test/multicast.xml", delay=multicast_s))
    report = run(settings, world)
    assert report["outcome"] == "applied", report
    assert report["source"] == winner
    assert attempts(report) == {"dhcp": "none", winner: "found", loser: "skipped", "configured": "skipped"}
    assert f'label="{winner}"' in keys_xml(settings)
    assert world.multicast.cancelled is (loser == "multicast")
    assert world.web.cancelled == ([REDIRECT] if loser == "redirect" else [])
    assert world.clock.monotonic() == min(redirect_s, multicast_s)  # virtual seconds: no real time passed


def test_a_source_that_never_answers_is_cancelled(settings: PhoneSettings) -> None:
    """Ordered by an event: the Redirect Service holds its answer until released, which never happens."""
    held = asyncio.Event()
    world = World(web=FakeWeb({REDIRECT: Answer(b"http://prov.test/redirect.xml\n", gate=held),
                               "http://prov.test/multicast.xml": keys("multicast")}),
                  multicast=FakeMulticast("http://prov.test/multicast.xml"))
    report = run(settings, world)
    assert report["source"] == "multicast"
    assert world.web.cancelled == [REDIRECT]
    assert not held.is_set()


@pytest.mark.parametrize(("up_at", "ntp_answers", "slept", "reason"), [
    pytest.param(None, True, [1, 2, 4], "waiting: interface eth0 is not up with an IPv4 address",
                 id="interface-never-up"),
    pytest.param(3.0, False, [1, 2, 1, 2, 4], "waiting: time not valid: no NTP server answered; ntp.test: no answer",
                 id="interface-then-time"),
])
def test_waiting_for_preconditions(settings: PhoneSettings, up_at: float | None, ntp_answers: bool, slept: list[float],
                                   reason: str) -> None:
    """1 s doubling, until the next wait would pass `wait_until` on the fake clock; nothing fetched."""
    world = World(interfaces=FakeInterfaces(up_at=up_at), ntp=FakeNtp(default=ntp_answers))
    before = settings.store.current_generation()
    report = run(settings, world, wait_until=10.0)
    assert report["outcome"] == "waiting"
    assert report["errors"] == [reason]
    assert world.clock.slept == slept
    assert world.clock.monotonic() == sum(slept)
    assert world.web.requests == []
    assert len(world.dhcp.informs) == (0 if up_at is None else 1)
    assert settings.store.current_generation() == before


def test_a_clock_before_the_build_date_waits(settings: PhoneSettings) -> None:
    world = World()
    world.clock.set_wall(0.0)
    report = run(settings, world, wait_until=2.0)
    assert report["outcome"] == "waiting"
    assert report["errors"] == ["waiting: time not valid: the clock is before provd's build date"]


def test_a_fetch_failure_commits_nothing(settings: PhoneSettings) -> None:
    """One file of the chain fails (HTTP 500): the file before it is not applied either."""
    world = World(dhcp=FakeDhcp(DhcpAnswer(option67=b"http://prov.test/ref.xml")),
                  web=FakeWeb({"http://prov.test/ref.xml": b"<referencedSettings><url>a.xml</url>"
                                                           b"<url>b.xml</url></referencedSettings>",
                               "http://prov.test/a.xml": keys("a"), "http://prov.test/b.xml": 500}))
    before = settings.store.current_generation(), keys_xml(settings)
    report = run(settings, world)
    assert report["outcome"] == "failed"
    assert report["generation"] is None
    assert report["retryable"] is True
    assert [(f["url"], f.get("error") is not None) for f in report["files"]][-1] == ("http://prov.test/b.xml", True)
    assert (settings.store.current_generation(), keys_xml(settings)) == before
    last = settings.store.last_run()
    assert last is not None and last["outcome"] == "failed"


def test_a_reference_chain_is_applied_in_document_order(settings: PhoneSettings) -> None:
    world = World(dhcp=FakeDhcp(DhcpAnswer(option67=b"http://prov.test/dir/ref.xml")),
                  web=FakeWeb({"http://prov.test/dir/ref.xml": b"<referencedSettings><url>common.xml</url>"
                                                               b"<URL>../{mac}.xml</URL></referencedSettings>",
                               "http://prov.test/dir/common.xml": keys("common", 1),
                               f"http://prov.test/{MAC}.xml": keys("mine", 2)}))
    report = run(settings, world)
    assert report["outcome"] == "applied", report
    assert [f["url"] for f in report["files"]] == ["http://prov.test/dir/ref.xml", "http://prov.test/dir/common.xml",
                                                   f"http://prov.test/{MAC}.xml"]
    assert report["files"][0]["type"] == "reference"
    xml = keys_xml(settings)
    assert 'label="common"' in xml and 'label="mine"' in xml


def test_an_unchanged_second_run(settings: PhoneSettings) -> None:
    """The second run asks with the cached ETag, gets a 304, applies the cached body: nothing to commit."""
    url = "http://prov.test/a.xml"
    world = World(dhcp=FakeDhcp(DhcpAnswer(option67=url.encode())),
                  web=FakeWeb({url: Answer(keys("same"), etag='"v1"')}))
    first = run(settings, world)
    assert first["outcome"] == "applied"
    second = run(settings, world)
    assert second["outcome"] == "unchanged", second
    assert second["generation"] is None
    assert second["files"][0]["status"] == 304 and second["files"][0]["cached"] is True
    assert [r.validators.etag if r.validators else None for r in world.web.requests] == [None, '"v1"']
    assert settings.store.current_generation() == first["generation"]


def test_every_source_is_reported_before_the_configured_url(settings: PhoneSettings, tmp_path: Path) -> None:
    """DHCP cannot be asked, the Redirect Service does not know the phone, the multicast socket cannot be
    set up: each is reported, and provisioning/url is fetched last."""
    switches = tmp_path / "switches.xml"
    switches.write_text("<provisioning><url>http://prov.test/{mac}.xml</url></provisioning>")
    restore.apply_path(settings, switches)
    world = World(dhcp=FakeDhcp(error=DhcpUnavailable("DHCPINFORM on eth0: permission denied")),
                  web=FakeWeb({REDIRECT: 404, f"http://prov.test/{MAC}.xml": keys("configured")}),
                  multicast=FakeMulticast(error=MulticastUnavailable("cannot use UDP 127.0.0.1:5060: in use")))
    report = run(settings, world)
    assert report["outcome"] == "applied", report
    assert attempts(report) == {"dhcp": "failed", "redirect": "none", "multicast": "failed", "configured": "found"}
    assert report["url"] == f"http://prov.test/{MAC}.xml"
    assert 'label="configured"' in keys_xml(settings)


def test_an_explicit_url_skips_dhcp_and_discovery(settings: PhoneSettings) -> None:
    world = World(web=FakeWeb({"http://prov.test/x.xml": keys("explicit")}))
    report = run(settings, world, url="http://prov.test/x.xml")
    assert report["outcome"] == "applied"
    assert report["source"] == "explicit" and report["attempts"] == []
    assert world.dhcp.informs == [] and world.ntp.queries == ["ntp.test"]


def test_the_ports_module_is_light() -> None:
    """provd.ports is imported on the way to every run but loads no adapter until Ports.real() is called."""
    code = ("import sys; import provd.ports\n"
            "print(','.join(m for m in ('asyncio', 'ssl', 'httpx', 'ntplib', 'socket') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_a_redirect_service_slower_than_its_timeout_fails_on_the_clock(settings: PhoneSettings) -> None:
    """redirect.timeout_s is kept on the run's clock: the virtual one here, so the timeout takes no real time."""
    world = World(web=FakeWeb({REDIRECT: Answer(b"http://prov.test/redirect.xml\n", delay=60.0)}),
                  multicast=FakeMulticast(None))
    report = run(settings, world)
    assert attempts(report)["redirect"] == "failed"
    redirect = next(a for a in report["attempts"] if a["source"] == "redirect")
    assert redirect["detail"].endswith("no answer within the timeout")
    assert world.web.cancelled == [REDIRECT]
    assert world.clock.monotonic() >= settings.config.redirect.timeout_s
