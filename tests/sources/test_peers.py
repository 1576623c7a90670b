"""The network bench keeps its contract: each peer of `tests.support.peers.netbench`, probed from the client
namespace with small programs (`tests/support/peers/nettools.py`: scapy, ntplib, sockets, urllib) and no provd
code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers.dhcp import OPT43_MALFORMED, DhcpServerFactory, auerswald_opt43
from tests.support.peers.netns import NetnsPair, NsProcess, Side, WirePacket, nettools_argv, running_netns
from tests.support.peers.ntp import NtpServerFactory
from tests.support.peers.sip import (
    CheckSyncSender,
    PnpMode,
    PnpResponderFactory,
    notify_sync_body,
    settings_snippet_body,
)
from tests.support.peers.web import ProvHttp, RedirectServiceFactory

VENDOR_CLASS = "auerswald-D400"


def probe(pair: NetnsPair, *args: str, timeout: float = 20.0) -> Any:
    """Run a nettools probe in the client namespace; its one JSON document."""
    proc = pair.run_in_client(nettools_argv(*args), timeout=timeout)
    assert proc.stdout.strip(), (proc.returncode, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def inform(pair: NetnsPair, vendor_class: str = VENDOR_CLASS) -> dict[str, Any]:
    ack: dict[str, Any] | None = probe(pair, "dhcp-inform", "--iface", pair.client_if, "--ip", pair.client_ip,
                                       "--vendor-class", vendor_class)
    assert ack is not None, "no DHCPACK"
    assert ack["from"] == [pair.server_ip, 67]
    return ack


def option(ack: dict[str, Any], code: int) -> bytes | None:
    value = ack["options"].get(str(code))
    return None if value is None else bytes.fromhex(value)


def field(ack: dict[str, Any], name: str) -> bytes:
    """A BOOTP header field (sname, file) without its zero padding."""
    return bytes.fromhex(ack[name]).rstrip(b"\0")


# --- namespaces ------------------------------------------------------------------------------------------------


def test_pair_has_the_promised_topology(netns: NetnsPair) -> None:
    client = netns.run_in_client(["ip", "-o", "addr", "show", "dev", netns.client_if], check=True).stdout
    assert f"inet {netns.client_ip}/{netns.prefix}" in client
    link = netns.run_in_client(["cat", f"/sys/class/net/{netns.client_if}/address"], check=True).stdout
    assert link.strip() == netns.client_mac == "00:09:52:00:00:0e" and netns.client_mac_marker == "00095200000E"
    routes = netns.run_in_client(["ip", "route", "show"], check=True).stdout
    assert "default" not in routes and routes.strip()  # only the connected subnet: no default route
    groups = netns.run_in_server(["ip", "maddr", "show", "dev", netns.server_if], check=True).stdout
    assert "224.0.1.75" in groups
    assert netns.run_in_server(["ip", "-o", "addr", "show", "lo", "up"], check=True).stdout.strip()
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert netns.server_if not in host_links and netns.client_if not in host_links


def test_teardown_stops_every_process_and_deletes_the_namespaces(tmp_path: Path) -> None:
    with running_netns(tmp_path) as pair:
        spawned = pair.spawn_in_server(["sleep", "600"])
        # Not through spawn: a grandchild the bench does not know; the namespace's safety net ends it.
        pair.run_in_client(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"], check=True)
        orphans = subprocess.run(["ip", "netns", "pids", pair.client_ns], capture_output=True, text=True,
                                 check=True).stdout.split()
        assert orphans
    assert spawned.poll() is not None
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert pair.server_ns not in names and pair.client_ns not in names
    for pid in orphans:
        assert not Path(f"/proc/{pid}").exists() or "sleep" not in Path(f"/proc/{pid}/cmdline").read_text()


# --- DHCP ------------------------------------------------------------------------------------------------------


def test_isc_serves_the_vendor_example_66_and_the_bootp_file_field(netns: NetnsPair,
                                                                      dhcp_server: DhcpServerFactory) -> None:
    dhcp_server("isc")
    ack = inform(netns)
    assert option(ack, 53) == b"\x05"  # DHCPACK
    assert option(ack, 66) == b"http://10.123.0.1:8080"  # ISC: no trailing NUL
    assert field(ack, "file") == b"prov/<MACADR>.xml"  # `filename` → BOOTP file, not option 67
    assert option(ack, 67) is None and option(ack, 43) is None and option(ack, 42) is None
    assert field(ack, "sname") == b"" and ack["yiaddr"] == "0.0.0.0"  # INFORM: no address handed out


def test_isc_sends_option_43_only_to_the_auerswald_vendor_class(netns: NetnsPair,
                                                                 dhcp_server: DhcpServerFactory) -> None:
    opt43 = auerswald_opt43("http://10.123.0.1:8080", "auerswald/{mac}.xml")
    dhcp_server("isc", opt43=opt43)
    ack = inform(netns)
    assert option(ack, 43) == opt43 == b"B\x17http://10.123.0.1:8080\x00C\x14auerswald/{mac}.xml\x00"
    assert option(ack, 66) == b"http://10.123.0.1:8080" and field(ack, "file") == b"prov/<MACADR>.xml"
    assert option(inform(netns, vendor_class="snom-D400"), 43) is None


def test_isc_sends_ntp_server_42(netns: NetnsPair, dhcp_server: DhcpServerFactory) -> None:
    dhcp_server("isc", ntp=True)
    assert option(inform(netns), 42) == bytes([10, 123, 0, 1])


@pytest.mark.parametrize("malformed", OPT43_MALFORMED.values(), ids=OPT43_MALFORMED.keys())
def test_isc_passes_malformed_option_43_through_unchanged(netns: NetnsPair, dhcp_server: DhcpServerFactory,
                                                          malformed: bytes) -> None:
    dhcp_server("isc", opt43=malformed)
    assert option(inform(netns), 43) == malformed


def test_isc_can_serve_nothing_useful(netns: NetnsPair, dhcp_server: DhcpServerFactory) -> None:
    dhcp_server("isc", opt66=None, file=None)
    ack = inform(netns)
    assert all(option(ack, code) is None for code in (42, 43, 66, 67))
    assert field(ack, "file") == field(ack, "sname") == b""


def test_dnsmasq_appends_nul_to_66_and_67(netns: NetnsPair, dhcp_server: DhcpServerFactory) -> None:
    opt43 = auerswald_opt43("http://10.123.0.1:8080", "prov/{mac}.xml")
    server = dhcp_server("dnsmasq", file=None, opt67="prov/<MACADR>.xml", opt43=opt43, ntp=True)
    ack = inform(netns)
    assert option(ack, 66) == b"http://10.123.0.1:8080\x00"
    assert option(ack, 67) == b"prov/<MACADR>.xml\x00"
    assert option(ack, 43) == opt43 and option(ack, 42) == bytes([10, 123, 0, 1])
    assert option(ack, 3) == bytes([10, 123, 0, 1])  # dnsmasq names itself the router, unasked
    assert ack["siaddr"] == "10.123.0.1" and field(ack, "file") == b""
    assert option(inform(netns, vendor_class="snom"), 43) is None
    assert "DHCPINFORM" in server.log_text()


def test_dnsmasq_puts_the_boot_file_into_option_67_when_asked_for(netns: NetnsPair,
                                                                  dhcp_server: DhcpServerFactory) -> None:
    """Unlike ISC's `filename`, dnsmasq's `dhcp-boot` file goes into option 67 when 67 is in option 55."""
    dhcp_server("dnsmasq")  # the vendor example: 66 + file
    ack = inform(netns)
    assert option(ack, 67) == b"prov/<MACADR>.xml\x00" and field(ack, "file") == b""


# --- NTP -------------------------------------------------------------------------------------------------------


def test_chrony_answers_stratum_8(netns: NetnsPair, ntp_server: NtpServerFactory) -> None:
    server = ntp_server()
    reply = probe(netns, "ntp", "--host", server.ip, "--port", str(server.port))
    assert (reply["mode"], reply["leap"], reply["stratum"], reply["version"]) == (4, 0, 8, 4)
    assert reply["tx_time"] > 0 and abs(reply["offset"]) < 1


def test_unsynchronised_chrony_answers_leap_3(netns: NetnsPair, ntp_server: NtpServerFactory) -> None:
    server = ntp_server(synced=False, port=1123)
    reply = probe(netns, "ntp", "--host", server.ip, "--port", "1123")
    assert (reply["mode"], reply["leap"], reply["stratum"]) == (4, 3, 0)


# --- SIP multicast PnP -----------------------------------------------------------------------------------------


def subscribe(pair: NetnsPair, *, at: str = "0", window: float = 3.0, stop_on_notify: bool = True) -> Any:
    return probe(pair, "subscribe", "--local-ip", pair.client_ip, "--mac", pair.client_mac_marker, "--at", at,
                 "--window", str(window), *(["--stop-on-notify"] if stop_on_notify else []))


def sip_header(text: str, name: str) -> str | None:
    head = text.split("\r\n\r\n", 1)[0]
    return next((line.partition(":")[2].strip() for line in head.split("\r\n")[1:]
                 if line.partition(":")[0].strip().lower() == name.lower()), None)


def test_sipp_answers_a_multicast_subscribe_with_200_and_a_notify(netns: NetnsPair,
                                                                   pnp_responder: PnpResponderFactory) -> None:
    url = "http://10.123.0.1:8080/prov/00095200000E.xml"
    responder = pnp_responder(url)
    result = subscribe(netns)
    (ok, notify) = result["received"]
    assert ok["data"].startswith("SIP/2.0 200 OK") and ok["from"] == [netns.server_ip, 5060]
    assert notify["from"] == [netns.server_ip, 5060]  # to the SUBSCRIBE's source address and port
    text = notify["data"]
    assert text.startswith(f"NOTIFY sip:{netns.client_ip}:5060 SIP/2.0")  # Request-URI from our Contact
    assert sip_header(text, "Call-ID") == result["call_id"]
    assert (sip_header(text, "Event") or "").startswith("ua-profile")
    assert sip_header(text, "Content-Type") == "application/url"
    assert text.split("\r\n\r\n", 1)[1].strip() == url
    assert responder.wait_finished() == 0  # sipp got our 200 to its NOTIFY
    (sub,) = responder.subscribes()
    assert (sub.src, sub.sport, sub.dst, sub.dport, sub.ttl) == (netns.client_ip, 5060, "224.0.1.75", 5060, 1)
    assert sub.start_line == "SUBSCRIBE sip:MAC%3a00095200000E@224.0.1.75 SIP/2.0"
    assert (sub.header("Expires"), sub.header("Accept")) == ("0", "application/url")
    received = [m for m in responder.messages() if not m.sent]
    assert received[0].start_line == sub.start_line and received[1].start_line.startswith("SIP/2.0 200")


def test_sipp_answers_a_retransmitted_subscribe_again_without_a_second_notify(
        netns: NetnsPair, pnp_responder: PnpResponderFactory) -> None:
    responder = pnp_responder("http://10.123.0.1:8080/x.xml", notify_delay_ms=400)
    result = subscribe(netns, at="0,0.1")
    first, second, notify = (message["data"] for message in result["received"])
    assert first == second and first.startswith("SIP/2.0 200 OK") and notify.startswith("NOTIFY ")
    assert responder.wait_finished() == 0 and len(responder.subscribes()) == 2


def test_silent_responder_records_every_retransmit(netns: NetnsPair, pnp_responder: PnpResponderFactory) -> None:
    responder = pnp_responder(mode=PnpMode.SILENT)
    result = subscribe(netns, at="0,0.1,0.3", window=0.4, stop_on_notify=False)
    assert result["received"] == []
    subs = responder.wait_subscribes(3)
    assert len({s.payload for s in subs}) == 1 and all(s.sport == 5060 for s in subs)
    assert 0.25 < subs[2].time - subs[0].time < 1.0
    assert responder.sent() == []
    assert [m.sent for m in responder.messages()] == [False, False, False]  # sipp logs retransmits too


@pytest.mark.parametrize("mode", [PnpMode.OTHER_CALL_ID, PnpMode.EXTERNAL_BODY, PnpMode.OTHER_PORT],
                         ids=lambda mode: mode.value)
def test_responder_variants(netns: NetnsPair, pnp_responder: PnpResponderFactory, mode: PnpMode) -> None:
    url = "http://10.123.0.1:8080/prov/x.xml"
    responder = pnp_responder(url, mode=mode)
    result = subscribe(netns)
    notify = result["received"][-1]
    text = notify["data"]
    assert text.startswith("NOTIFY ") and result["received"][0]["data"].startswith("SIP/2.0 200 OK")
    assert result["received"][0]["from"] == [netns.server_ip, 5060]
    if mode is PnpMode.OTHER_CALL_ID:
        assert sip_header(text, "Call-ID") != result["call_id"]
    else:
        assert sip_header(text, "Call-ID") == result["call_id"]
    if mode is PnpMode.EXTERNAL_BODY:
        assert sip_header(text, "Content-Type") == f'message/external-body;access-type="URL";URL="{url}"'
        assert text.split("\r\n\r\n", 1)[1].strip() == "Content-Type: application/url"
    else:
        assert text.split("\r\n\r\n", 1)[1].strip() == url
    if mode is PnpMode.OTHER_PORT:
        assert notify["from"][0] == netns.server_ip and notify["from"][1] != 5060
    else:
        assert notify["from"] == [netns.server_ip, 5060]
    assert responder.wait_finished() == 0


def test_responder_body_need_not_be_a_url(netns: NetnsPair, pnp_responder: PnpResponderFactory) -> None:
    pnp_responder("Provisioning is not available here")
    text = subscribe(netns)["received"][-1]["data"]
    assert text.split("\r\n\r\n", 1)[1].strip() == "Provisioning is not available here"


# --- check-sync ------------------------------------------------------------------------------------------------


def listener(pair: NetnsPair, status: int, reason: str | None = None) -> NsProcess:
    """A check-sync stand-in in the client namespace answering `status` once; `heard` tells what it got."""
    argv = nettools_argv("sip-answer", "--bind", pair.client_ip, "--status", str(status), "--timeout", "10",
                         *(["--reason", reason] if reason else []))
    process = pair.start(Side.CLIENT, "sip-answer", argv, ready_line=True)
    process.wait_line("ready")
    return process


def heard(process: NsProcess) -> list[dict[str, Any]]:
    process.wait(10)
    assert process.popen.stdout is not None
    return [json.loads(line) for line in process.popen.stdout.read().decode().splitlines() if line.strip()]


@pytest.mark.parametrize(("event", "body", "status"), [
    ("check-sync", None, 200),
    ("check-sync;reboot=true", None, 200),
    ("check-sync", notify_sync_body("http://10.123.0.1:8080/prov/a.xml"), 200),
    ("check-sync", settings_snippet_body("http://10.123.0.1:8080/b.xml"), 403),
    ("presence", None, 489),
], ids=["plain", "reboot", "notifySync", "settings", "bad-event"])
def test_sipp_sender_reports_the_phones_answer(netns: NetnsPair, check_sync: CheckSyncSender, event: str,
                                               body: str | None, status: int) -> None:
    phone = listener(netns, status)
    result = check_sync.sipp(event, body=body)
    assert result.status == status and result.status_line is not None
    assert result.status_line.startswith(f"SIP/2.0 {status} ") and result.exit_code == 0
    assert f"STATUS {status}" in result.output
    (notify,) = heard(phone)
    assert notify["from"] == [netns.server_ip, 5070]
    text = notify["data"]
    assert text.startswith(f"NOTIFY sip:1001@{netns.client_ip}:5060 SIP/2.0")
    assert sip_header(text, "Event") == event and sip_header(text, "Max-Forwards") == "70"
    assert ";tag=" in (sip_header(text, "From") or "")
    if body is None:
        assert sip_header(text, "Content-Length") == "0" and sip_header(text, "Content-Type") is None
    else:
        assert sip_header(text, "Content-Type") == "application/xml"
        wire_body = text.split("\r\n\r\n", 1)[1]
        assert wire_body.strip() == body.strip() and int(sip_header(text, "Content-Length") or 0) == len(wire_body)
    assert result.sent.startswith("NOTIFY sip:1001@")


def test_sipp_sender_reports_no_answer(netns: NetnsPair, check_sync: CheckSyncSender) -> None:
    result = check_sync.sipp(timeout=1.0)
    assert result.status is None and result.status_line is None and result.elapsed_s < 5


def test_sipsak_sends_the_administrators_notify(netns: NetnsPair, check_sync: CheckSyncSender) -> None:
    phone = listener(netns, 200)
    capture = netns.capture([5060], side=Side.CLIENT)
    result = check_sync.sipsak("check-sync;reboot=false")
    assert (result.status, result.exit_code) == (200, 0) and result.status_line == "SIP/2.0 200 OK"
    (notify,) = heard(phone)
    text = notify["data"]
    assert sip_header(text, "From") == f"<sip:pbx@{netns.server_ip}>"  # no tag
    assert sip_header(text, "Max-Forwards") is None and sip_header(text, "Content-Length") is None
    assert sip_header(text, "Event") == "check-sync;reboot=false"
    via = sip_header(text, "Via") or ""
    assert via.startswith(f"SIP/2.0/UDP {netns.server_ip}:5070;") and "rport" in via  # sipsak's own Via
    assert notify["from"][0] == netns.server_ip and notify["from"][1] != 5070  # sent from an ephemeral port
    (packet,) = capture.wait_for(lambda p: not p.outgoing and p.payload.startswith(b"NOTIFY"))
    assert isinstance(packet, WirePacket) and b"\r\n" in packet.payload and b"\n\n" not in packet.payload


# --- Redirect Service and nginx --------------------------------------------------------------------------------


def test_redirect_service_answers_each_configured_mode(netns: NetnsPair,
                                                       redirect_service: RedirectServiceFactory) -> None:
    service = redirect_service(200, "\n  \nhttp://10.123.0.1:8080/prov/00095200000E.xml\nignored\n")
    url = service.origin + "/?mac=00095200000E&serial=0123456789&type=D400"

    def get(timeout: float = 5.0) -> Any:
        return probe(netns, "http-get", "--url", url, "--ca", str(service.ca_file), "--timeout", str(timeout))

    first = get()
    assert first["status"] == 200
    first_line = next(line for line in first["body"].splitlines() if line.strip())
    assert first_line == "http://10.123.0.1:8080/prov/00095200000E.xml"
    for status in (204, 404, 500):
        service.set(status, "" if status == 204 else "no\n")
        assert get()["status"] == status
    service.set(200, "http://late/\n", delay_s=1.0)
    slow = get(timeout=0.3)
    assert "error" in slow and "timed out" in slow["error"]
    requests = service.wait_for_requests(5)
    assert requests[0].path == "/" and requests[0].target == "/?mac=00095200000E&serial=0123456789&type=D400"
    assert requests[0].query == {"mac": ["00095200000E"], "serial": ["0123456789"], "type": ["D400"]}
    assert service.url_template == "https://10.123.0.1/?mac={mac}&serial={serial}&type={type}"


def test_redirect_certificate_is_for_the_server_address_only(netns: NetnsPair,
                                                             redirect_service: RedirectServiceFactory) -> None:
    redirect_service(204)
    untrusted = probe(netns, "http-get", "--url", "https://10.123.0.1/?mac=x")  # system CAs only
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]


def test_nginx_serves_provisioning_files_on_8080(netns: NetnsPair, prov_http: ProvHttp) -> None:
    prov_http.write("prov/00095200000E.xml", "<configuration/>\n")
    got = probe(netns, "http-get", "--url", prov_http.url + "prov/00095200000E.xml")
    assert got == {"status": 200, "body": "<configuration/>\n", "elapsed": got["elapsed"]}
    (entry,) = prov_http.wait_for_log(lambda e: e.uri == "/prov/00095200000E.xml")
    assert entry.status == 200 and prov_http.url == "http://10.123.0.1:8080/"
