"""Check-sync over IPv6 (docs/design.md §6, §7, §11): the daemon's own listener on `[::1]` and on a dual-stack `[::]`,
sipp (and a plain UDP client) sending NOTIFYs over loopback of either family, and the allowlist's IPv6 forms.
One test goes between network namespaces over IPv6: sipp from the server's global address."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provd import config
from provd.errors import ConfigError
from tests.support.cli import Provd
from tests.support.daemon import (
    RunningDaemon,
    configure,
    free_dual_udp_port,
    keys,
    listen_at,
    notify_message,
    running_daemon,
    send_udp_to,
    set_allowlist,
)
from tests.support.peers.http import Served
from tests.support.peers.netns import NetnsPair, Side
from tests.support.peers.sip import CheckSyncSender, sipp_check_sync_loopback
from tests.support.polling import wait_until


@contextmanager
def listening_daemon(tmp_path: Path, served: Served, listen_host: str,
                     *allow: str) -> Iterator[tuple[RunningDaemon, int]]:
    """The daemon with `sip.listen: "[listen_host]:PORT"` and the allowlist `allow`; its check-sync runs fetch
    keys from the HTTP peer."""
    served.write("cs.xml", keys(4, "check-sync-v6"))
    port = free_dual_udp_port()
    provd = configure(tmp_path, url=served.http_url + "cs.xml")
    listen_at(provd, f"[{listen_host}]:{port}")
    set_allowlist(provd, tmp_path, *allow)
    with running_daemon(provd, tmp_path) as daemon:
        yield daemon, port


def daemon_log(tmp_path: Path) -> str:
    return (tmp_path / "daemon.log").read_text(errors="replace")


def assert_applied(daemon: RunningDaemon) -> None:
    report = daemon.wait_idle_after(1)
    assert (report["trigger"], report["outcome"]) == ("check-sync", "applied")
    assert 'label="check-sync-v6"' in daemon.provd.run("show", "keys", check=0).stdout


@pytest.mark.parametrize(("listen_host", "entry"), [
    pytest.param("::1", "::1", id="v6-listener-address"),
    pytest.param("::1", "0:0:0:0:0:0:0:1", id="v6-listener-expanded-entry"),
    pytest.param("::1", "::1/128", id="v6-listener-network-128"),
    pytest.param("::", "::/0", id="dual-listener-every-v6"),
    pytest.param("::", "[::1]", id="dual-listener-bracketed-entry"),
])
def test_sipp_over_ipv6_from_an_allowlisted_sender_runs(tmp_path: Path, served: Served, listen_host: str,
                                                         entry: str) -> None:
    with listening_daemon(tmp_path, served, listen_host, entry) as (daemon, port):
        result = sipp_check_sync_loopback(tmp_path, "::1", port, from_ip="::1")
        assert result.status == 200, result.output
        assert "Via: SIP/2.0/UDP [::1]:" in result.sent  # it really came over IPv6
        assert_applied(daemon)
    assert "check-sync from [::1]:" in daemon_log(tmp_path)  # the sender as [address]:port


@pytest.mark.parametrize("allow", [
    pytest.param(("2001:db8::/32",), id="other-v6-network"),
    pytest.param(("127.0.0.1", "::ffff:127.0.0.1"), id="v4-loopback-is-not-v6-loopback"),
    pytest.param(("0.0.0.0/0",), id="every-v4-is-no-v6"),
])
def test_ipv6_sender_not_on_the_allowlist_is_refused(tmp_path: Path, served: Served, allow: tuple[str, ...]) -> None:
    with listening_daemon(tmp_path, served, "::1", *allow) as (daemon, port):
        result = sipp_check_sync_loopback(tmp_path, "::1", port, from_ip="::1")
        assert result.status == 403, result.output
        plain = send_udp_to("::1", port, notify_message("[::1]", branch="z9hG4bKplain6"), source="::1")
        assert plain is not None and plain.startswith(b"SIP/2.0 403")
        assert daemon.runs_started() == 0
        assert daemon.proc.poll() is None


@pytest.mark.parametrize("entry", [
    pytest.param("127.0.0.1", id="v4-entry"),
    pytest.param("127.0.0.0/8", id="v4-network"),
    pytest.param("::ffff:127.0.0.1", id="mapped-entry"),
])
def test_ipv4_sender_to_the_dual_stack_listener_is_matched_as_ipv4(tmp_path: Path, served: Served,
                                                                   entry: str) -> None:
    """On `[::]` an IPv4 sender arrives as ::ffff:127.0.0.1; it is compared, answered and logged as 127.0.0.1."""
    with listening_daemon(tmp_path, served, "::", entry) as (daemon, port):
        result = sipp_check_sync_loopback(tmp_path, "127.0.0.1", port, from_ip="127.0.0.1")
        assert result.status == 200, result.output
        assert "Via: SIP/2.0/UDP 127.0.0.1:" in result.sent
        assert_applied(daemon)
        # The same listener refuses an IPv6 sender the allowlist does not name: one socket, both families.
        refused = send_udp_to("::1", port, notify_message("[::1]", branch="z9hG4bKv6"), source="::1")
        assert refused is not None and refused.startswith(b"SIP/2.0 403")
        assert daemon.runs_started() == 1
    log = daemon_log(tmp_path)
    assert "check-sync from 127.0.0.1:" in log and "::ffff:" not in log


def test_plain_udp_to_the_dual_stack_listener_is_answered_to_its_source(tmp_path: Path, served: Served) -> None:
    """The answer goes back to the datagram's source through the listening socket, for each family, and a
    retransmission (same branch, same sender) gets the same answer without a second run."""
    with listening_daemon(tmp_path, served, "::", "127.0.0.1", "::1") as (daemon, port):
        v4 = send_udp_to("127.0.0.1", port, notify_message("127.0.0.1", branch="z9hG4bKdual"), source="127.0.0.1")
        assert v4 is not None and v4.startswith(b"SIP/2.0 200 OK")
        assert_applied(daemon)
        again = send_udp_to("127.0.0.1", port, notify_message("127.0.0.1", branch="z9hG4bKdual"), source="127.0.0.1")
        assert again == v4
        v6 = send_udp_to("::1", port, notify_message("[::1]", branch="z9hG4bKdual6"), source="::1")
        assert v6 is not None and v6.startswith(b"SIP/2.0 200 OK")  # answered; its run is spaced (one per 10 s)


@pytest.mark.parametrize("allow", [
    pytest.param(("pbx.example.com", "[::1", "::1/129", "::1%", "::1"), id="malformed-beside-a-good-one"),
    pytest.param(("::1/129", "2001:db8::1::2"), id="only-malformed"),
])
def test_a_malformed_allowlist_entry_is_ignored_and_reported_once(tmp_path: Path, served: Served,
                                                                  allow: tuple[str, ...]) -> None:
    accept = "::1" in allow
    with listening_daemon(tmp_path, served, "::1", *allow) as (daemon, port):
        wait_until(lambda: "'::1/129'" in daemon_log(tmp_path), 5.0, "the warning at start, before any NOTIFY")
        first = sipp_check_sync_loopback(tmp_path, "::1", port, from_ip="::1")
        assert first.status == (200 if accept else 403), first.output
        if accept:
            assert_applied(daemon)
        second = send_udp_to("::1", port, notify_message("[::1]", branch="z9hG4bKagain"), source="::1")
        assert second is not None and second.startswith(b"SIP/2.0 200" if accept else b"SIP/2.0 403")
        assert daemon.runs_started() == (1 if accept else 0)
        assert daemon.proc.poll() is None
    log = daemon_log(tmp_path)
    assert log.count("'::1/129'") == 1  # one warning for the entry, not one per NOTIFY


def test_ipv6_between_namespaces(netns_dual: NetnsPair, tmp_path: Path) -> None:
    """The phone on a dual-stack link listens on `[::]:5060`; sipp (as a PBX) sends over IPv6 from the server's
    global address: allowed by its /64 (a run starts; its URL has no server, which is not the point here), then
    refused from another address of the server once only the first one is allowed. (Dual stack, not IPv6 only:
    the run's preconditions want an IPv4 address unless DHCPv6 is on, and the run is not what this tests.)"""
    pair, check_sync = netns_dual, CheckSyncSender(netns_dual)
    url = f"http://[{pair.server_ip6}]:9/nothing.xml"
    cfg = tmp_path / "phone.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "1", "mac": "auto", "interface": pair.client_if},
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"}, "sip": {"listen": "[::]:5060"},
    }))
    provd = Provd(cfg, tmp_path / "state")
    settings = tmp_path / "settings.xml"
    settings.write_text(f"<provisioning><active>false</active><dhcp>false</dhcp><redirect>false</redirect>"
                        f"<pbx>false</pbx><url>{url}</url><sip><active>true</active><allowlist><allowlistEntry>"
                        f"2001:DB8:7B::/64</allowlistEntry></allowlist></sip></provisioning>")
    provd.run("apply", str(settings), check=0)
    with running_daemon(provd, tmp_path, prefix=("ip", "netns", "exec", pair.client_ns)) as daemon:
        wait_until(lambda: pair.run_in_client(["ss", "-Hlun", "sport = :5060"]).stdout.strip() != "",
                   what="the SIP listener")
        result = check_sync.sipp("check-sync", to_ip=f"[{pair.client_ip6}]", from_ip=pair.server_ip6)
        assert result.status == 200, result.output
        assert f"Via: SIP/2.0/UDP [{pair.server_ip6}]:" in result.sent
        report = daemon.wait_idle_after(1)
        assert (report["trigger"], report["url"]) == ("check-sync", url)
        set_allowlist(provd, tmp_path, pair.server_ip6)  # through the daemon: an `apply` run of its own
        runs = daemon.wait_idle_after(2)["run"]
        stranger = "2001:db8:7b::66"
        pair.run_in_server(["ip", "-6", "addr", "add", f"{stranger}/64", "dev", pair.server_if, "nodad"])
        refused = check_sync.sipp("check-sync", to_ip=f"[{pair.client_ip6}]", from_ip=stranger)
        assert refused.status == 403, refused.output
        assert daemon.runs_started() == 2 and daemon.status()["last_report"]["run"] == runs
    assert f"check-sync from [{pair.server_ip6}]:5070" in daemon_log(tmp_path)


def test_link_local_listener_with_a_zone(netns_dual: NetnsPair, tmp_path: Path) -> None:
    """`sip.listen: "[fe80::…%veth]:PORT"` binds the link-local address on that link (the zone gives the scope
    id); a NOTIFY from the server's link-local address is matched by a `fe80::/64` entry and answered."""
    pair = netns_dual
    client_ll, server_ll = pair.link_local(Side.CLIENT), pair.link_local(Side.SERVER)
    cfg = tmp_path / "phone.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "1", "mac": "auto", "interface": pair.client_if},
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"},
        "sip": {"listen": f"[{client_ll}%{pair.client_if}]:5060"},
    }))
    provd = Provd(cfg, tmp_path / "state")
    settings = tmp_path / "settings.xml"  # no source but the (unserved) URL: nothing leaves the namespaces
    settings.write_text(f"<provisioning><active>false</active><dhcp>false</dhcp><redirect>false</redirect>"
                        f"<pbx>false</pbx><url>http://[{server_ll}%{pair.client_if}]:9/x.xml</url><sip><active>"
                        "true</active><allowlist><allowlistEntry>fe80::/64</allowlistEntry></allowlist></sip>"
                        "</provisioning>")
    provd.run("apply", str(settings), check=0)
    message = notify_message(f"[{server_ll}]", branch="z9hG4bKll").decode()
    send = ("import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.settimeout(5); "
            f"s.bind(({server_ll!r}, 5070, 0, socket.if_nametoindex({pair.server_if!r}))); "
            f"s.sendto({message!r}.encode(), ({client_ll!r}, 5060, 0, socket.if_nametoindex({pair.server_if!r}))); "
            "sys.stdout.write(s.recv(65535).decode())")
    with running_daemon(provd, tmp_path, prefix=("ip", "netns", "exec", pair.client_ns)) as daemon:
        wait_until(lambda: pair.run_in_client(["ss", "-Hlun", "sport = :5060"]).stdout.strip() != "",
                   what="the SIP listener")
        answer = pair.run_in_server([sys.executable, "-c", send], timeout=10)
        assert answer.stdout.startswith("SIP/2.0 200 OK"), answer.stdout + answer.stderr
        report = daemon.wait_idle_after(1)
        assert report["trigger"] == "check-sync"
    assert f"check-sync from [{server_ll}%{pair.client_if}]:5070" in daemon_log(tmp_path)


@pytest.mark.parametrize(("listen", "expected"), [
    pytest.param("0.0.0.0:5060", ("0.0.0.0", 5060), id="v4-any"),
    pytest.param("127.0.0.1:5070", ("127.0.0.1", 5070), id="v4-loopback"),
    pytest.param("[::]:5060", ("::", 5060), id="dual-stack"),
    pytest.param("[::1]:5070", ("::1", 5070), id="v6-loopback"),
    pytest.param("[2001:db8::1]:5060", ("2001:db8::1", 5060), id="v6-global"),
    pytest.param("[fe80::1%eth0]:5060", ("fe80::1%eth0", 5060), id="v6-link-local-zone"),
])
def test_sip_listen_forms(listen: str, expected: tuple[str, int]) -> None:
    loaded = config.parse(f'sip: {{listen: "{listen}"}}\n', source="p.yaml")
    assert loaded.sip.listen == listen
    assert config.split_listen("sip.listen", listen) == expected


@pytest.mark.parametrize("listen", [
    pytest.param("::1:5060", id="v6-without-brackets"),
    pytest.param("2001:db8::1:5060", id="v6-global-without-brackets"),
    pytest.param("::", id="v6-any-without-brackets-or-port"),
    pytest.param("[::1]", id="no-port"),
    pytest.param("[::1]:", id="empty-port"),
    pytest.param("[::1:5060", id="unclosed-bracket"),
    pytest.param("[192.0.2.1]:5060", id="v4-in-brackets"),
    pytest.param("127.0.0.1:0", id="port-zero"),
    pytest.param("127.0.0.1:65536", id="port-too-big"),
    pytest.param("127.0.0.1:50\u0666", id="port-not-ascii"),
])
def test_sip_listen_malformed_is_a_config_error_naming_the_key(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"sip\.listen") as caught:
        config.parse(f'sip: {{listen: "{listen}"}}\n', source="p.yaml")
    assert str(caught.value).startswith("p.yaml")


def test_daemon_refuses_to_start_on_an_ipv6_listen_without_brackets(tmp_path: Path) -> None:
    provd = configure(tmp_path)
    listen_at(provd, "::1:5060")
    done = provd.run("run", timeout=20)
    assert done.returncode != 0
    assert "sip.listen" in done.stderr and "brackets" in done.stderr
