"""Discovery end to end (docs/design.md §1, §6): a phone in the client namespace finds its provisioning URL from
real peers in the server namespace — ISC dhcpd and dnsmasq, chrony, sipp as the PnP responder, an HTTPS
Redirect Service, nginx — in the documented order, and provisions itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers.dhcp import OPT43_MALFORMED, DhcpServerFactory, auerswald_opt43
from tests.support.peers.netns import NetnsPair
from tests.support.peers.ntp import NtpServerFactory
from tests.support.peers.sip import PnpMode, PnpResponderFactory
from tests.support.peers.web import ProvHttp, RedirectService, RedirectServiceFactory

KEYS = '<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'


class Phone:
    """provd in the client namespace, with its own store and configuration."""

    def __init__(self, netns: NetnsPair, tmp_path: Path, *, ca_file: Path | None = None, ntp: list[str] | None = None,
                 dhcp: str = "inform", multicast_s: float = 2.0) -> None:
        self.netns = netns
        self.config = tmp_path / "phone.yaml"
        self.config.write_text(json.dumps({
            "device": {"type": "D400", "serial": "0123456789", "mac": "auto", "interface": netns.client_if,
                       "firmware": "2.12A-00000"},
            "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
            "ntp": {"servers": ntp if ntp is not None else [netns.server_ip], "timeout_s": 1},
            "dhcp": {"mode": dhcp, "timeout_s": 0.25},
            "redirect": {"url": f"https://{netns.server_ip}/?mac={{mac}}&serial={{serial}}&type={{type}}",
                         "timeout_s": 3},
            "multicast": {"timeout_s": multicast_s},
            "http": {"timeout_s": 5, "ca_file": str(ca_file) if ca_file else None},
        }))

    def provd(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        result = self.netns.run_in_client([sys.executable, "-m", "provd", "--config", str(self.config), *args],
                                          timeout=timeout)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, result.stdout, result.stderr

    def switches(self, *, dhcp: bool = True, redirect: bool = True, pbx: bool = True, url: str = "") -> None:
        patch = self.config.with_name("switches.xml")
        patch.write_text(f"<provisioning><dhcp>{str(dhcp).lower()}</dhcp><redirect>{str(redirect).lower()}</redirect>"
                         f"<pbx>{str(pbx).lower()}</pbx><url>{url}</url></provisioning>")
        code, _, err = self.provd("apply", str(patch))
        assert code == 0, err

    def start(self, *extra: str) -> dict[str, Any]:
        code, out, err = self.provd("start", "--json", "--wait", "8", *extra)
        report: dict[str, Any] = json.loads(out)
        assert code == (0 if report["outcome"] in ("applied", "unchanged") else 1), err
        return report

    def discover(self) -> dict[str, Any]:
        _, out, _ = self.provd("discover", "--json", "--wait", "8")
        result: dict[str, Any] = json.loads(out)
        return result


def attempts(report: dict[str, Any]) -> dict[str, str]:
    return {a["source"]: a["result"] for a in report["attempts"]}


@pytest.fixture
def phone(netns: NetnsPair, tmp_path: Path, ntp_server: NtpServerFactory) -> Phone:
    ntp_server()
    return Phone(netns, tmp_path)


def serve_phone_file(prov_http: ProvHttp, netns: NetnsPair, relpath: str, label: str) -> str:
    prov_http.write(relpath.replace("MAC", netns.client_mac_marker), KEYS.format(label=label))
    return f"http://{netns.server_ip}:8080/{relpath.replace('MAC', netns.client_mac_marker)}"


def test_dhcp_vendor_example_isc_to_committed_settings(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                                       dhcp_server: DhcpServerFactory) -> None:
    url = serve_phone_file(prov_http, netns, "prov/MAC.xml", "from-dhcp")
    dhcp_server("isc")  # option 66 http://<srv>:8080 + ISC `filename` (the BOOTP file field) prov/<MACADR>.xml
    phone.switches()
    report = phone.start()
    assert (report["source"], report["url"], report["outcome"]) == ("dhcp", url, "applied")
    assert attempts(report) == {"dhcp": "found", "redirect": "skipped", "multicast": "skipped",
                                "configured": "skipped"}
    _, shown, _ = phone.provd("show", "keys")
    assert 'label="from-dhcp"' in shown


def test_option43_overrides_66_67(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                  dhcp_server: DhcpServerFactory) -> None:
    url = serve_phone_file(prov_http, netns, "o43/MAC.xml", "from-43")
    dhcp_server("isc", opt66="http://10.123.0.1:9/unused", opt43=auerswald_opt43(
        f"http://{netns.server_ip}:8080", "o43/{mac}.xml"))
    phone.switches()
    assert phone.discover()["url"] == url
    assert phone.start()["outcome"] == "applied"


def test_dnsmasq_scheme_less_tries_https_then_http(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                                   dhcp_server: DhcpServerFactory) -> None:
    url = serve_phone_file(prov_http, netns, "dm/MAC.xml", "from-dnsmasq")
    dhcp_server("dnsmasq", opt66=f"{netns.server_ip}:8080", file="dm/<MACADR>.xml")
    phone.switches()
    found = phone.discover()
    assert found["candidates"] == [url.replace("http://", "https://"), url]
    report = phone.start()
    assert (report["outcome"], report["url"]) == ("applied", url)
    assert any("trying " + url in w for w in report["warnings"])


def test_ntp_servers_from_option_42(netns: NetnsPair, tmp_path: Path, ntp_server: NtpServerFactory,
                                    prov_http: ProvHttp, dhcp_server: DhcpServerFactory) -> None:
    ntp_server()
    phone = Phone(netns, tmp_path, ntp=[])  # no configured NTP server: only DHCP's option 42 can help
    url = serve_phone_file(prov_http, netns, "prov/MAC.xml", "ntp-42")
    dhcp_server("isc", ntp=True)
    phone.switches()
    code, out, _ = phone.provd("start", "--json", "--wait", "5")
    assert code == 0
    assert json.loads(out)["url"] == url


@pytest.mark.parametrize("variant", sorted(OPT43_MALFORMED))
def test_malformed_option43_reported_and_next_source(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                                     dhcp_server: DhcpServerFactory, variant: str) -> None:
    url = serve_phone_file(prov_http, netns, "cfg/MAC.xml", "configured")
    dhcp_server("isc", opt66=None, file=None, opt43=OPT43_MALFORMED[variant])
    phone.switches(redirect=False, pbx=False, url=f"http://{netns.server_ip}:8080/cfg/{{mac}}.xml")
    report = phone.start()
    assert (report["source"], report["url"]) == ("configured", url)
    dhcp_attempt = next(a for a in report["attempts"] if a["source"] == "dhcp")
    assert dhcp_attempt["result"] == "none"
    assert "option 43 ignored: malformed" in dhcp_attempt["detail"]


def test_redirect_service_alone(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                redirect_service: RedirectServiceFactory, tmp_path: Path) -> None:
    url = serve_phone_file(prov_http, netns, "rd/MAC.xml", "from-redirect")
    service = redirect_service(200, f"\n  {url}\nignored second line\n")
    phone = Phone(netns, tmp_path, ca_file=service.ca_file)
    phone.switches(dhcp=False, pbx=False)
    report = phone.start()
    assert (report["source"], report["url"], report["outcome"]) == ("redirect", url, "applied")
    (request,) = service.wait_for_requests(1)
    assert request.query == {"mac": [netns.client_mac_marker], "serial": ["0123456789"], "type": ["D400"]}


@pytest.mark.parametrize(("status", "result"), [(204, "none"), (404, "none"), (500, "failed")])
def test_redirect_not_registered_or_failing_falls_through(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp,
                                                          ntp_server: NtpServerFactory,
                                                          redirect_service: RedirectServiceFactory, status: int,
                                                          result: str) -> None:
    ntp_server()
    url = serve_phone_file(prov_http, netns, "cfg/MAC.xml", "configured")
    service = redirect_service(status)
    phone = Phone(netns, tmp_path, ca_file=service.ca_file)
    phone.switches(dhcp=False, pbx=False, url=url)
    report = phone.start()
    assert report["source"] == "configured"
    assert attempts(report)["redirect"] == result


def test_redirect_tls_failure_is_a_failed_attempt(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                                  redirect_service: RedirectServiceFactory) -> None:
    url = serve_phone_file(prov_http, netns, "cfg/MAC.xml", "configured")
    redirect_service(200, "http://10.123.0.1:8080/never.xml")  # its CA is not given to the phone
    phone.switches(dhcp=False, pbx=False, url=url)
    report = phone.start()
    redirect = next(a for a in report["attempts"] if a["source"] == "redirect")
    assert redirect["result"] == "failed" and "TLS" in redirect["detail"]
    assert report["source"] == "configured"


def test_multicast_subscribe_alone(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                   pnp_responder: PnpResponderFactory) -> None:
    url = serve_phone_file(prov_http, netns, "pnp/MAC.xml", "from-pnp")
    responder = pnp_responder(url)
    phone.switches(dhcp=False, redirect=False)
    report = phone.start()
    assert (report["source"], report["url"], report["outcome"]) == ("multicast", url, "applied")
    subscribe = responder.wait_subscribes(1)[0]
    assert (subscribe.dst, subscribe.dport, subscribe.sport) == ("224.0.1.75", 5060, 5060)
    text = subscribe.payload.decode()
    assert text.startswith(f"SUBSCRIBE sip:MAC%3a{netns.client_mac_marker}@224.0.1.75 SIP/2.0\r\n")
    for header in ("Expires: 0\r\n", "Accept: application/url\r\n", 'model="D400"', 'version="2.12A-00000"',
                   f"Via: SIP/2.0/UDP {netns.client_ip}:5060;"):
        assert header in text
    assert responder.wait_finished() == 0  # the NOTIFY was answered 200


@pytest.mark.parametrize("mode", [PnpMode.OTHER_CALL_ID, PnpMode.OTHER_PORT, PnpMode.EXTERNAL_BODY])
def test_multicast_responder_variations(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                        pnp_responder: PnpResponderFactory, mode: PnpMode) -> None:
    url = serve_phone_file(prov_http, netns, f"{mode.value}/MAC.xml", mode.value)
    pnp_responder(url, mode=mode)
    phone.switches(dhcp=False, redirect=False)
    report = phone.start()
    assert (report["source"], report["url"]) == ("multicast", url)


@pytest.mark.parametrize(("body", "mode"), [("this is no URL", PnpMode.NOTIFY), ("", PnpMode.SILENT),
                                            ("tftp://10.123.0.1/cfg", PnpMode.NOTIFY)])
def test_multicast_odd_answers_fall_through(phone: Phone, netns: NetnsPair, prov_http: ProvHttp,
                                            pnp_responder: PnpResponderFactory, body: str, mode: PnpMode) -> None:
    url = serve_phone_file(prov_http, netns, "cfg/MAC.xml", "configured")
    pnp_responder(body, mode=mode)
    phone.switches(dhcp=False, redirect=False, url=url)
    report = phone.start()
    assert report["source"] == "configured"
    assert attempts(report)["multicast"] == "none"


@pytest.mark.parametrize("winner", ["redirect", "multicast"])
def test_redirect_and_multicast_race(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp,
                                     ntp_server: NtpServerFactory, redirect_service: RedirectServiceFactory,
                                     pnp_responder: PnpResponderFactory, winner: str) -> None:
    ntp_server()
    redirect_url = serve_phone_file(prov_http, netns, "r/MAC.xml", "redirect")
    pnp_url = serve_phone_file(prov_http, netns, "p/MAC.xml", "multicast")
    service: RedirectService = redirect_service(200, redirect_url, delay_s=1.2 if winner == "multicast" else 0)
    pnp_responder(pnp_url, notify_delay_ms=1200 if winner == "redirect" else 50)
    phone = Phone(netns, tmp_path, ca_file=service.ca_file, multicast_s=4)
    phone.switches(dhcp=False)
    report = phone.start()
    assert report["source"] == winner
    loser = "multicast" if winner == "redirect" else "redirect"
    lost = next(a for a in report["attempts"] if a["source"] == loser)
    assert lost["result"] == "skipped" and "cancelled" in lost["detail"]


def test_dhcp_beats_the_others(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp, ntp_server: NtpServerFactory,
                               dhcp_server: DhcpServerFactory, redirect_service: RedirectServiceFactory,
                               pnp_responder: PnpResponderFactory) -> None:
    ntp_server()
    url = serve_phone_file(prov_http, netns, "prov/MAC.xml", "dhcp")
    dhcp_server("isc")
    service = redirect_service(200, "http://10.123.0.1:8080/never.xml")
    responder = pnp_responder("http://10.123.0.1:8080/never.xml")
    phone = Phone(netns, tmp_path, ca_file=service.ca_file)
    phone.switches()
    report = phone.start()
    assert (report["source"], report["url"]) == ("dhcp", url)
    assert service.requests() == []
    assert responder.subscribes() == []


def test_configured_url_last(phone: Phone, netns: NetnsPair, prov_http: ProvHttp) -> None:
    url = serve_phone_file(prov_http, netns, "cfg/MAC.xml", "configured")
    phone.switches(redirect=False, url=f"http://{netns.server_ip}:8080/cfg/&lt;MACADR&gt;.xml")
    report = phone.start()  # no DHCP server, no PnP responder
    assert (report["source"], report["url"]) == ("configured", url)
    assert attempts(report) == {"dhcp": "none", "redirect": "skipped", "multicast": "none", "configured": "found"}


def test_invalid_time_waits_and_downloads_nothing(netns: NetnsPair, tmp_path: Path, ntp_server: NtpServerFactory,
                                                  prov_http: ProvHttp) -> None:
    ntp_server(synced=False)
    serve_phone_file(prov_http, netns, "cfg/MAC.xml", "never")
    phone = Phone(netns, tmp_path)
    phone.switches(dhcp=False, redirect=False, pbx=False, url=f"http://{netns.server_ip}:8080/cfg/{{mac}}.xml")
    code, out, _ = phone.provd("start", "--json", "--wait", "4")
    report = json.loads(out)
    assert code == 1
    assert report["outcome"] == "waiting"
    assert "leap indicator 3" in report["errors"][0]
    assert prov_http.access_log() == []


def test_explicit_url_waits_for_valid_time_too(netns: NetnsPair, tmp_path: Path, ntp_server: NtpServerFactory,
                                               prov_http: ProvHttp) -> None:
    ntp_server(synced=False)
    url = serve_phone_file(prov_http, netns, "x/MAC.xml", "never")
    phone = Phone(netns, tmp_path)
    code, out, _ = phone.provd("start", "--url", url, "--json", "--wait", "3")
    assert (code, json.loads(out)["outcome"]) == (1, "waiting")
    assert prov_http.access_log() == []


def test_lease_file_mode(netns: NetnsPair, tmp_path: Path, ntp_server: NtpServerFactory, prov_http: ProvHttp) -> None:
    ntp_server()
    url = serve_phone_file(prov_http, netns, "lease/MAC.xml", "lease")
    lease = tmp_path / "dhclient.leases"
    lease.write_text('lease {\n  interface "veth-cli";\n  option tftp-server-name "http://10.123.0.1:8080";\n'
                     '  filename "lease/<MACADR>.xml";\n}\n')
    phone = Phone(netns, tmp_path, dhcp=f"lease:{lease}")
    phone.switches(redirect=False, pbx=False)
    assert phone.start()["url"] == url
