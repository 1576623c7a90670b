"""Check-sync end to end (docs/design.md §6, §7): the daemon listens in the phone's namespace; sipp (as a PBX sends
it) and sipsak (as administrators send it) send NOTIFYs from the server namespace."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cli import Provd
from tests.support.daemon import RunningDaemon, running_daemon
from tests.support.peers.netns import NetnsPair
from tests.support.peers.sip import CheckSyncSender, notify_sync_body, settings_snippet_body
from tests.support.peers.web import ProvHttp
from tests.support.polling import wait_until

KEYS = '<keys><phoneXtensions><key keyNumber="1" label="{label}"/></phoneXtensions></keys>'


@contextmanager
def phone_daemon(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp) -> Iterator[tuple[RunningDaemon, str]]:
    prov_http.write("cs/phone.xml", KEYS.format(label="check-sync"))
    url = f"http://{netns.server_ip}:8080/cs/phone.xml"
    hook_log = tmp_path / "hooks.log"
    record = f"import os; open({str(hook_log)!r}, 'a').write(os.environ.get('HOOK', 'changed') + chr(10))"
    cfg = tmp_path / "phone.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "1", "mac": "auto", "interface": netns.client_if},
        "paths": {"state_dir": str(tmp_path / "state"), "runtime_dir": str(tmp_path / "run")},
        "ntp": {"required": False}, "dhcp": {"mode": "off"},
        "sip": {"listen": f"{netns.client_ip}:5060"},
        "hooks": {"changed": {"*": [sys.executable, "-c", record]},
                  "reboot": ["env", "HOOK=reboot", sys.executable, "-c", record]},
    }))
    provd = Provd(cfg, tmp_path / "state")
    settings = tmp_path / "settings.xml"
    settings.write_text(f"<provisioning><active>false</active><dhcp>false</dhcp><redirect>false</redirect>"
                        f"<pbx>false</pbx><url>{url}</url><sip><active>true</active><allowlist><allowlistEntry>"
                        f"{netns.server_ip}</allowlistEntry></allowlist></sip></provisioning>")
    provd.run("apply", str(settings), check=0)
    with running_daemon(provd, tmp_path, prefix=("ip", "netns", "exec", netns.client_ns)) as daemon:
        wait_until(lambda: netns.run_in_client(["ss", "-Hlun", f"src {netns.client_ip}:5060"]).stdout.strip() != "",
                   what="the SIP listener")
        yield daemon, url


def hook_runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "hooks.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(("event", "body", "expect"), [
    pytest.param("check-sync", None, "run", id="plain"),
    pytest.param("check-sync;reboot=true", None, "run+reboot", id="reboot-param"),
    pytest.param("check-sync", "URL", "url", id="notifySync-url"),
    pytest.param("check-sync", "SNIPPET", "snippet", id="settings-snippet"),
])
def test_sipp_check_sync_from_allowlisted_pbx(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp,
                                              check_sync: CheckSyncSender, event: str, body: str | None,
                                              expect: str) -> None:
    prov_http.write("cs/other.xml", KEYS.format(label="notify-url"))
    other = f"http://{netns.server_ip}:8080/cs/other.xml"
    payload = {"URL": notify_sync_body(other), "SNIPPET": settings_snippet_body("https://new.example/{mac}.xml"),
               None: None}[body]
    with phone_daemon(netns, tmp_path, prov_http) as (daemon, _url):
        result = check_sync.sipp(event, body=payload)
        assert result.status == 200, result.output
        report = daemon.wait_idle_after(1)
        assert (report["trigger"], report["outcome"]) == ("check-sync", "applied")
        if expect == "run+reboot":
            wait_until(lambda: "reboot" in hook_runs(tmp_path), what="reboot hook")
    shown = daemon.provd.run("show", check=0).stdout
    if expect == "url":
        assert 'label="notify-url"' in shown
    elif expect == "snippet":
        assert "<url>https://new.example/{mac}.xml</url>" in shown
    else:
        assert 'label="check-sync"' in shown


def test_sipsak_as_administrators_send_it(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp,
                                          check_sync: CheckSyncSender) -> None:
    with phone_daemon(netns, tmp_path, prov_http) as (daemon, _url):
        result = check_sync.sipsak("check-sync")
        assert result.status == 200, result.output
        assert "Content-Length" not in result.sent and "Max-Forwards" not in result.sent
        report = daemon.wait_idle_after(1)
        assert report["trigger"] == "check-sync"


def test_check_sync_from_another_address_is_refused(netns: NetnsPair, tmp_path: Path, prov_http: ProvHttp,
                                                    check_sync: CheckSyncSender) -> None:
    stranger = "10.123.0.66"
    netns.add_server_ip(stranger)
    with phone_daemon(netns, tmp_path, prov_http) as (daemon, _url):
        result = check_sync.sipp("check-sync", from_ip=stranger)
        assert result.status == 403
        sak = check_sync.sipsak("check-sync", from_ip=stranger)
        assert sak.status == 403
        assert daemon.runs_started() == 0
        assert hook_runs(tmp_path) == ["changed"]  # only the set-up apply
