"""The fetch engine end to end against real servers (nginx, lighttpd, the fault server), as a user runs
`provd start --url URL`: reference chains, TLS, authentication, conditional requests, and faults in the
middle of a chain, each leaving the store byte-identical."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Provd
from tests.support.daemon import running_daemon
from tests.support.peers.http import HttpPeers, Served

MAC = "00:09:52:00:00:0E"


def make_provd(tmp_path: Path, peers: HttpPeers, **http: object) -> Provd:
    state = tmp_path / "state"
    settings = {"ca_file": str(peers.ca_file), "timeout_s": 5, **http}
    cfg = tmp_path / "provd.yaml"
    cfg.write_text(json.dumps({
        "device": {"type": "D400", "serial": "0123456789", "mac": MAC, "interface": "lo", "firmware": "2.12A-00000"},
        "paths": {"state_dir": str(state), "runtime_dir": str(tmp_path / "run")},
        "http": settings,
        "ntp": {"required": False},  # the clock is tested with chrony in the discovery tests
    }))
    return Provd(cfg, state)


@pytest.fixture
def phone(tmp_path: Path, http_peers: HttpPeers) -> Provd:
    return make_provd(tmp_path, http_peers)


def start(provd: Provd, url: str, *extra: str, check: int | None = None) -> dict[str, Any]:
    result = provd.run("start", "--url", url, "--json", *extra, check=check)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def key(number: int, label: str) -> str:
    return f'<keys><phoneXtensions><key keyNumber="{number}" label="{label}"/></phoneXtensions></keys>'


def url_leaf(value: str) -> str:
    return f"<provisioning><url>{value}</url></provisioning>"


def reference(*urls: str) -> str:
    return "<referencedSettings>" + "".join(f"<url>{u}</url>" for u in urls) + "</referencedSettings>"


def labels(provd: Provd) -> list[str]:
    text = provd.run("show", "keys", check=0).stdout
    return [part.split('"')[0] for part in text.split('label="')[1:]]


def test_reference_chain_with_markers(phone: Provd, served: Served) -> None:
    served.write("start.xml", reference("common.xml", "models/&lt;HWTYP&gt;.xml", "phones/{mac}.xml", "ops.xml"))
    served.write("common.xml", key(1, "common") + "")
    served.write("models/D400.xml", key(2, "model"))
    served.write("phones/00095200000E.xml", key(3, "phone"))
    served.write("ops.xml", "<operations><delete path=\"/keys/phoneXtensions/key[@keyNumber='1']\"/></operations>")
    report = start(phone, served.http_url + "start.xml", check=0)
    assert report["outcome"] == "applied"
    assert [f["url"].removeprefix(served.http_url) for f in report["files"]] == [
        "start.xml", "common.xml", "models/D400.xml", "phones/00095200000E.xml", "ops.xml"]
    assert [f["type"] for f in report["files"]] == ["reference", "patch", "patch", "patch", "operations"]
    assert labels(phone) == ["model", "phone"]
    assert report["generation"] == 2


def test_nested_chain_applies_depth_first_in_document_order(phone: Provd, served: Served) -> None:
    served.write("top.xml", reference("a.xml", "sub/mid.xml", "d.xml"))
    served.write("sub/mid.xml", reference("b.xml", "/" + served.http_url.split("/", 3)[3] + "c.xml"))
    for number, name in enumerate(("a", "sub/b", "c", "d"), start=1):
        served.write(f"{name}.xml", f"<configuration>{key(number, name)}{url_leaf(name)}</configuration>")
    report = start(phone, served.http_url + "top.xml", check=0)
    assert labels(phone) == ["a", "sub/b", "c", "d"]
    assert "<url>d</url>" in phone.run("show", "provisioning", check=0).stdout
    assert len(report["files"]) == 6


def test_same_file_twice_is_not_a_loop(phone: Provd, served: Served) -> None:
    served.write("top.xml", reference("a.xml", "b.xml", "a.xml"))
    served.write("a.xml", url_leaf("a"))
    served.write("b.xml", url_leaf("b"))
    assert start(phone, served.http_url + "top.xml", check=0)["outcome"] == "applied"
    assert "<url>a</url>" in phone.run("show", "provisioning", check=0).stdout


@pytest.mark.parametrize(("files", "needle"), [
    pytest.param({"top.xml": reference("a.xml"), "a.xml": reference("top.xml")}, "loop", id="loop"),
    pytest.param({"top.xml": reference("top.xml")}, "loop", id="self-loop"),
    pytest.param({"top.xml": reference("?x=1"), }, "loop", id="loop-through-query-is-not-a-loop-but-depth"),
    pytest.param({f"r{i}.xml": reference(f"r{i + 1}.xml") for i in range(12)}, "max_depth", id="depth"),
    pytest.param({"top.xml": reference(*[f"k{i}.xml" for i in range(70)])}, "max_files", id="file-count"),
    pytest.param({"top.xml": reference("common.xml", "missing.xml"), "common.xml": key(1, "x")}, "404",
                 id="404-in-chain"),
    pytest.param({"top.xml": reference("bad.xml"), "bad.xml": "<keys><oops></keys>"}, "well-formed",
                 id="malformed-in-chain"),
    pytest.param({"top.xml": reference("weird.xml"), "weird.xml": "<settings/>"}, "root element",
                 id="unknown-type-in-chain"),
    pytest.param({"top.xml": reference("file:///etc/passwd")}, "local file", id="remote-to-local-file"),
    pytest.param({"top.xml": reference("ftp://127.0.0.1/a.xml")}, "scheme", id="ftp-scheme"),
    pytest.param({"top.xml": "<referencedSettings/>"}, "top.xml", id="empty-reference"),
    pytest.param({"top.xml": reference("http://xn--/a.xml")}, "not a valid URL", id="host-idna-refuses"),
    pytest.param({"top.xml": reference("http://a&#x200d;b/a.xml")}, "not a valid URL", id="host-zero-width-joiner"),
    pytest.param({"top.xml": reference("http://ex ample/a.xml")}, "not a valid URL", id="host-with-space"),
    pytest.param({"top.xml": reference("http://127.0.0.1/&#x85;a.xml")}, "not a valid URL", id="c1-control"),
])
def test_chain_failures_commit_nothing(phone: Provd, served: Served, files: dict[str, str], needle: str) -> None:
    for name, text in files.items():
        served.write(name, text)
    for i in range(70):
        served.write(f"k{i}.xml", key(1, str(i)))
    before = phone.backup()
    first = "r0.xml" if "r0.xml" in files else "top.xml"
    report = start(phone, served.http_url + first, check=1)
    assert report["outcome"] == "failed"
    assert report["generation"] is None
    assert needle in " ".join(report["errors"])
    assert phone.backup() == before


@pytest.mark.parametrize("fault", ["reset", "truncated", "stall", "stall-headers", "big?bytes=200000",
                                   "big-chunked?bytes=200000", "status500", "status503"])
def test_fault_in_the_middle_of_a_chain(tmp_path: Path, http_peers: HttpPeers, served: Served, fault: str) -> None:
    phone = make_provd(tmp_path, http_peers, timeout_s=1.5, max_file_bytes=100_000)
    phone.run("apply", "/dev/null", check=1)  # creates the store
    target = {"status500": f"{http_peers.http_url}/status/500", "status503": f"{http_peers.http_url}/status/503"}
    served.write("top.xml", reference("a.xml", target.get(fault, served.fault_url + fault), "b.xml"))
    served.write("a.xml", key(1, "a"))
    served.write("b.xml", key(2, "b"))
    before = phone.backup()
    started = time.monotonic()
    report = start(phone, served.http_url + "top.xml", check=1)
    assert time.monotonic() - started < 10
    assert report["outcome"] == "failed"
    failed = [f for f in report["files"] if f.get("error")]
    assert len(failed) == 1
    assert report["retryable"] is not fault.startswith("big")  # a file over the cap will not shrink by waiting
    assert report["retry_after_s"] == (7.0 if fault == "status503" else None)
    assert phone.backup() == before


def test_conditional_second_run_is_cached_and_unchanged(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("top.xml", reference("a.xml", "b.xml"))
    served.write("a.xml", key(1, "a"))
    served.write("b.xml", url_leaf("b"))
    first = start(phone, served.http_url + "top.xml", check=0)
    assert first["outcome"] == "applied"
    assert not any(f["cached"] for f in first["files"])
    second = start(phone, served.http_url + "top.xml", check=0)
    assert second["outcome"] == "unchanged"
    assert second["generation"] is None
    assert [(f["status"], f["cached"]) for f in second["files"]] == [(304, True)] * 3
    log = http_peers.wait_for_log(lambda e: served.path.name in e.uri, count=6)
    assert [e.status for e in log][-3:] == [304, 304, 304]
    assert all(e.if_none_match for e in log[-3:])
    served.write("b.xml", url_leaf("changed"))
    third = start(phone, served.http_url + "top.xml", check=0)
    assert third["outcome"] == "applied"
    assert [f["cached"] for f in third["files"]] == [True, True, False]


def test_dry_run_commits_nothing_and_lists_changes(phone: Provd, served: Served) -> None:
    served.write("a.xml", f"<configuration>{key(5, 'five')}{url_leaf('x')}</configuration>")
    before = phone.backup()
    result = phone.run("start", "--url", served.http_url + "a.xml", "--dry-run", check=0)
    assert "+ /keys/phoneXtensions" in result.stdout
    assert "~ /provisioning/url" in result.stdout
    assert "nothing was committed" in result.stdout
    assert phone.backup() == before
    report = start(phone, served.http_url + "a.xml", "--dry-run", check=0)
    assert report["dry_run"] is True
    assert {d["section"] for d in report["diff"]} == {"keys", "provisioning"}


def test_https_with_ca_file(phone: Provd, served: Served) -> None:
    served.write("a.xml", key(1, "tls"))
    assert start(phone, served.https_url + "a.xml", check=0)["outcome"] == "applied"


@pytest.mark.parametrize("case", ["no-ca", "wrong-host", "mtls-without-cert"])
def test_tls_failures(tmp_path: Path, http_peers: HttpPeers, served: Served, case: str) -> None:
    served.write("a.xml", key(1, "tls"))
    phone = make_provd(tmp_path, http_peers, ca_file=None if case == "no-ca" else str(http_peers.ca_file))
    phone.run("apply", "/dev/null", check=1)
    before = phone.backup()
    url = {"no-ca": served.https_url, "mtls-without-cert": served.mtls_url,
           "wrong-host": http_peers.https_wrong_host_url + "/" + served.path.name + "/"}[case] + "a.xml"
    report = start(phone, url, check=1)
    assert report["outcome"] == "failed"
    if case != "mtls-without-cert":
        assert "TLS" in report["errors"][0]
    assert phone.backup() == before


def test_client_certificate(tmp_path: Path, http_peers: HttpPeers, served: Served) -> None:
    served.write("a.xml", key(1, "mtls"))
    phone = make_provd(tmp_path, http_peers, client_cert=str(http_peers.client_cert),
                       client_key=str(http_peers.client_key))
    assert start(phone, served.mtls_url + "a.xml", check=0)["outcome"] == "applied"


@pytest.mark.parametrize("scheme", ["digest", "basic"])
def test_credentials_in_url(phone: Provd, served: Served, http_peers: HttpPeers, scheme: str) -> None:
    served.write("a.xml", key(1, scheme))
    base = served.digest_url if scheme == "digest" else served.basic_url
    user, password = http_peers.digest_user, http_peers.digest_password
    with_creds = base.replace("://", f"://{user}:{password}@") + "a.xml"
    report = start(phone, with_creds, check=0)
    assert report["outcome"] == "applied"
    assert password not in json.dumps(report)
    wrong = base.replace("://", f"://{user}:wrong@") + "a.xml"
    assert "401" in start(phone, wrong, check=1)["errors"][0]


def test_redirect_limit(phone: Provd, http_peers: HttpPeers) -> None:
    assert start(phone, f"{http_peers.http_url}/hops/5", check=0)["outcome"] == "unchanged"  # body: <keys/>
    assert "redirects" in start(phone, f"{http_peers.http_url}/hops/6", check=1)["errors"][0]


def test_user_agent_names_provd_model_firmware_mac(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("ua.xml", key(1, "ua"))
    start(phone, served.http_url + "ua.xml", check=0)
    (entry,) = http_peers.wait_for_log(lambda e: e.uri.endswith(served.path.name + "/ua.xml"))
    assert entry.user_agent.startswith("provd/")
    for part in ("D400", "2.12A-00000", "00095200000E"):
        assert part in entry.user_agent


def test_local_file_url(phone: Provd, tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "start.xml").write_text(reference("keys.xml"))
    (stick / "keys.xml").write_text(key(4, "stick"))
    assert start(phone, (stick / "start.xml").as_uri(), check=0)["outcome"] == "applied"
    assert labels(phone) == ["stick"]


def test_run_byte_cap(tmp_path: Path, http_peers: HttpPeers, served: Served) -> None:
    phone = make_provd(tmp_path, http_peers, max_run_bytes=150_000, max_file_bytes=100_000)
    served.write("top.xml", reference(*[served.fault_url + "big?bytes=60000"] * 3))
    assert "max_run_bytes" in start(phone, served.http_url + "top.xml", check=1)["errors"][0]


def test_siblings_fetched_concurrently_applied_in_order(phone: Provd, served: Served) -> None:
    slow = [f"{served.fault_url}s{i}/slow?ms=400" for i in range(8)]
    served.write("top.xml", reference(*slow))
    started = time.monotonic()
    report = start(phone, served.http_url + "top.xml", check=0)
    elapsed = time.monotonic() - started
    assert [f["url"] for f in report["files"][1:]] == slow
    assert elapsed < 8 * 0.4  # one by one would take 3.2 s; four at a time about 0.8 s


def goto(origin: str, target: str) -> str:
    """A URL on `origin` (an nginx port) that answers 302 to `target`."""
    return f"{origin}/goto?to={target}"


def test_https_to_http_redirect_is_refused(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    served.write("down.xml", key(1, "downgraded"))
    before = phone.backup()
    plain = served.http_url + "down.xml"
    report = start(phone, goto(http_peers.https_url, plain), check=1)
    assert report["outcome"] == "failed"
    assert report["retryable"] is False
    (error,) = report["errors"]
    assert goto(http_peers.https_url, plain) in error and f"redirected to {plain}" in error
    assert phone.backup() == before
    http_peers.wait_for_log(lambda e: e.uri.startswith("/goto") and served.path.name in e.uri)
    assert not [e for e in http_peers.access_log() if e.uri == f"/{served.path.name}/down.xml"]


def test_report_names_the_final_url_of_a_redirect_chain(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    hops = start(phone, f"{http_peers.http_url}/hops/3", check=0)
    assert [(f["url"], f["requested"]) for f in hops["files"]] == [
        (f"{http_peers.http_url}/hops/0", f"{http_peers.http_url}/hops/3")]
    # An upgrade to HTTPS is followed; the entries resolve against where the reference file really was.
    served.write("sub/top.xml", reference("a.xml"))
    served.write("sub/a.xml", key(1, "final"))
    report = start(phone, goto(http_peers.http_url, served.https_url + "sub/top.xml"), check=0)
    assert [f["url"] for f in report["files"]] == [served.https_url + "sub/top.xml", served.https_url + "sub/a.xml"]
    assert "requested" not in report["files"][1]
    assert labels(phone) == ["final"]


def with_userinfo(url: str, user: str, password: str) -> str:
    return url.replace("://", f"://{user}:{password}@", 1)


@pytest.mark.parametrize("scheme", ["basic", "digest"])
def test_protected_reference_tree_applies(phone: Provd, served: Served, http_peers: HttpPeers, scheme: str) -> None:
    """The reference file's credentials go to its relative entries (RFC 3986 §5.2.2 keeps the authority), to
    absolute entries on the same origin, and along a redirect that stays on it (nginx's /redirect/1)."""
    base = served.basic_url if scheme == "basic" else served.digest_url
    origin = base.split("/" + served.path.name)[0]
    entries = ["a.xml", f"/{served.path.name}/b.xml", base + "c.xml"]
    if scheme == "basic":
        entries.append(f"{origin}/redirect/1")
    served.write("top.xml", reference(*entries))
    for number, name in enumerate("abc", start=1):
        served.write(f"{name}.xml", key(number, name))
    password = http_peers.basic_password
    report = start(phone, with_userinfo(base, http_peers.basic_user, password) + "top.xml", check=0)
    assert report["outcome"] == "applied", report["errors"]
    assert labels(phone) == ["a", "b", "c"]
    assert password not in json.dumps(report)
    assert report["files"][1]["url"] == f"{origin.replace('://', f'://{http_peers.basic_user}:***@')}" \
        f"/{served.path.name}/a.xml"
    if scheme == "basic":
        logged = http_peers.wait_for_log(lambda e: e.status == 200 and e.remote_user == http_peers.basic_user
                                         and (served.path.name in e.uri or e.uri == "/hello.xml"), count=5)
        assert {e.uri.rsplit("/", 1)[-1] for e in logged} >= {"top.xml", "a.xml", "b.xml", "c.xml", "hello.xml"}


def fault_requests(peers: HttpPeers, marker: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(peers.fault_url + "/requests", timeout=5) as answer:
        seen: list[dict[str, Any]] = json.load(answer)
    return [r for r in seen if marker in r["path"]]


@pytest.mark.parametrize("way", ["sibling", "redirect", "other-scheme"])
def test_credentials_never_go_to_another_origin(phone: Provd, served: Served, http_peers: HttpPeers,
                                                way: str) -> None:
    """The fault server on another port asks for credentials (401 Basic): provd has none for it, so it
    sends none — for an absolute entry, for a redirect leaving the origin, for the same host over HTTPS."""
    challenge = served.fault_url + f"{way}/challenge"
    if way == "sibling":
        entry = challenge
    elif way == "redirect":
        entry = goto(http_peers.basic_url, challenge)
    else:
        entry = served.https_url + "pub.xml"
        served.write("pub.xml", key(1, "public"))
    served.write("top.xml", reference(entry))
    url = with_userinfo(served.basic_url, http_peers.basic_user, http_peers.basic_password) + "top.xml"
    report = start(phone, url, check=None)
    if way == "other-scheme":
        assert report["outcome"] == "applied"
        logged = http_peers.wait_for_log(lambda e: e.uri.endswith(served.path.name + "/pub.xml"))
        assert [e.remote_user for e in logged] == [""]
        return
    assert report["outcome"] == "failed"
    assert "401" in report["errors"][0]
    seen = fault_requests(http_peers, f"{way}/challenge")
    assert len(seen) == 1
    assert "authorization" not in seen[0]["headers"]


def test_unencodable_url_is_a_clear_error(phone: Provd) -> None:
    """A lone surrogate (here from an undecodable argv byte, as `\\ud800` from the control socket) is no URL:
    one error line, the run recorded as failed, nothing committed (it died in the HTTP cache's key)."""
    before = phone.backup()
    result = phone.run("start", "--url", "http://127.0.0.1:1/a\udcff.xml", check=1)
    assert result.stderr.count("\n") == 1 and "provd: error:" in result.stderr
    assert "not a valid URL" in result.stderr and "\\udcff" in result.stderr
    report = start(phone, "http://127.0.0.1:1/\udcff", check=1)
    assert report["files"] == [] and report["retryable"] is False
    assert phone.backup() == before


def control(sock_path: Path, request: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """One control-socket request; the final `report` event (json.dumps writes a lone surrogate as \\ud800)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        stream = sock.makefile("rb")
        for line in stream:
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "report":
                report: dict[str, Any] = event["report"]
                return report
    raise AssertionError("the daemon closed the connection without a report")


def test_daemon_start_with_a_lone_surrogate_url_fails_the_run_only(tmp_path: Path, http_peers: HttpPeers) -> None:
    """Fuzzing found `{"cmd": "start", "url": "\\ud800"}` killing `provd run` (UnicodeEncodeError in the HTTP
    cache's key): now the URL is refused before any I/O, the run is recorded as failed, the daemon serves on."""
    phone = make_provd(tmp_path, http_peers)
    settings = tmp_path / "inactive.xml"
    settings.write_text("<provisioning><active>false</active></provisioning>")
    phone.run("apply", str(settings), check=0)
    before = phone.backup()
    with running_daemon(phone, tmp_path) as daemon:
        report = control(tmp_path / "run" / "provd.sock", {"cmd": "start", "url": "http://127.0.0.1:1/\ud800"})
        assert report["outcome"] == "failed"
        assert "not a valid URL" in report["errors"][0]
        assert daemon.proc.poll() is None
        assert daemon.status()["state"] == "idle"
    assert phone.backup() == before


def test_failure_after_a_redirect_names_both_urls(phone: Provd, served: Served, http_peers: HttpPeers) -> None:
    asked = goto(http_peers.http_url, served.http_url + "gone.xml")
    report = start(phone, asked, check=1)
    (error,) = report["errors"]
    assert error.startswith(asked + ": HTTP 404") and f"from {served.http_url}gone.xml, after redirects" in error
    assert report["files"][0]["url"] == asked  # a file that failed has no final URL to show
