"""The HTTP test bench keeps its contract: each peer of `tests.support.peers.http`, probed with httpx alone
(no provd)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trustme

from tests.support.peers import http as bench
from tests.support.peers.http import HttpPeers, Served, running_http_peers

TIMEOUT = httpx.Timeout(5.0)
STALL = httpx.Timeout(5.0, read=0.3)  # how long "stalled" has to last to count


def cert_error(exc: BaseException) -> ssl.SSLCertVerificationError:
    """The certificate error under httpx's ConnectError (httpx → httpcore → ssl)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, f"no certificate error under {exc!r}"
    return cause


def port(url: str) -> int:
    found = urlsplit(url).port
    assert found is not None
    return found


# --- nginx, plain HTTP -------------------------------------------------------------------------------------------


def test_static_files_carry_validators_and_answer_304(served: Served) -> None:
    served.write("sub/dir/phone.xml", "<keys/>")
    url = served.http_url + "sub/dir/phone.xml"
    with httpx.Client(timeout=TIMEOUT) as client:
        first = client.get(url)
        assert first.status_code == 200 and first.text == "<keys/>"
        assert first.headers["content-type"] == "application/xml"
        etag, last_modified = first.headers["etag"], first.headers["last-modified"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304


def test_rewrite_of_same_length_gets_a_new_etag(served: Served) -> None:
    """nginx's ETag is mtime (seconds) + size: Served.write moves the mtime on so a rewrite is never a 304."""
    served.write("a.xml", "<keys>1</keys>")
    url = served.http_url + "a.xml"
    with httpx.Client(timeout=TIMEOUT) as client:
        etag = client.get(url).headers["etag"]
        served.write("a.xml", "<keys>2</keys>")
        again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.text == "<keys>2</keys>" and again.headers["etag"] != etag


def test_access_log_records_conditional_requests_on_one_kept_alive_connection(
        http_peers: HttpPeers, served: Served) -> None:
    served.write("log.xml", "<keys/>")
    url = served.http_url + "log.xml"
    with httpx.Client(timeout=TIMEOUT, headers={"User-Agent": "bench-probe/1"}) as client:
        etag = client.get(url).headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).headers.get("connection") == "keep-alive"
    path = urlsplit(url).path
    first, second = http_peers.wait_for_log(lambda entry: entry.uri == path, count=2)
    assert (first.status, second.status) == (200, 304)
    assert (first.if_none_match, second.if_none_match) == ("", etag)
    assert first.user_agent == "bench-probe/1" and first.request == f"GET {path} HTTP/1.1"
    assert first.bytes_sent > second.bytes_sent > 0
    assert first.connection == second.connection and (first.connection_requests, second.connection_requests) == (1, 2)


@pytest.mark.parametrize(("status", "retry_after"), [
    pytest.param(404, None, id="404"),
    pytest.param(500, None, id="500"),
    pytest.param(503, "7", id="503-retry-after-7"),
    pytest.param(429, "3", id="429-retry-after-3"),
])
def test_status_locations(http_peers: HttpPeers, status: int, retry_after: str | None) -> None:
    response = httpx.get(f"{http_peers.http_url}/status/{status}", timeout=TIMEOUT)
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after


def test_redirect_one_hop_to_hello(http_peers: HttpPeers) -> None:
    response = httpx.get(f"{http_peers.http_url}/redirect/1", timeout=TIMEOUT, follow_redirects=True)
    assert [r.status_code for r in response.history] == [302]
    assert response.status_code == 200 and response.url.path == "/hello.xml" and response.text == "<keys/>\n"


def test_six_hop_chain_exceeds_a_five_redirect_limit(http_peers: HttpPeers) -> None:
    url = f"{http_peers.http_url}/hops/6"
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True, max_redirects=5) as client, \
            pytest.raises(httpx.TooManyRedirects):
        client.get(url)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=True, max_redirects=6) as client:
        response = client.get(url)
    assert [r.url.path for r in response.history] == [f"/hops/{n}" for n in range(6, 0, -1)]
    assert response.status_code == 200 and response.text == "<keys/>"


# --- nginx, TLS --------------------------------------------------------------------------------------------------


def test_https_verifies_against_the_test_ca(http_peers: HttpPeers, served: Served) -> None:
    served.write("tls.xml", "<keys/>")
    response = httpx.get(served.https_url + "tls.xml", verify=http_peers.ssl_context(), timeout=TIMEOUT)
    assert response.status_code == 200 and response.text == "<keys/>" and response.http_version == "HTTP/1.1"
    assert "etag" in response.headers


def test_https_without_the_ca_fails_verification(http_peers: HttpPeers) -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"{http_peers.https_url}/hello.xml", timeout=TIMEOUT)  # system trust store only
    assert cert_error(caught.value).verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY


def test_https_negotiates_http2(http_peers: HttpPeers, served: Served) -> None:
    served.write("h2.xml", "<keys/>")
    with httpx.Client(http2=True, verify=http_peers.ssl_context(), timeout=TIMEOUT) as client:
        response = client.get(served.https_url + "h2.xml")
    assert response.http_version == "HTTP/2" and response.text == "<keys/>"
    entry, = http_peers.wait_for_log(lambda e: e.uri == urlsplit(served.https_url).path + "h2.xml")
    assert (entry.protocol, entry.scheme, entry.server_port) == ("HTTP/2.0", "https", port(http_peers.https_url))


def test_wrong_host_certificate_fails_hostname_check_only(http_peers: HttpPeers) -> None:
    url = f"{http_peers.https_wrong_host_url}/hello.xml"
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(url, verify=http_peers.ssl_context(), timeout=TIMEOUT)
    assert cert_error(caught.value).verify_code == 64  # X509_V_ERR_IP_ADDRESS_MISMATCH
    # The same certificate verifies for the name it was issued to: the CA is right, only the name is wrong.
    with httpx.Client(verify=http_peers.ssl_context(), timeout=TIMEOUT) as client:
        response = client.get(url, extensions={"sni_hostname": "wrong.example"})
    assert response.status_code == 200


def test_mtls_needs_a_client_certificate_from_the_ca(http_peers: HttpPeers, served: Served,
                                                     tmp_path: Path) -> None:
    served.write("m.xml", "<keys/>")
    url = served.mtls_url + "m.xml"
    # nginx completes the handshake without a client certificate and answers 400 (not a TLS alert).
    assert httpx.get(url, verify=http_peers.ssl_context(), timeout=TIMEOUT).status_code == 400
    stranger = trustme.CA().issue_cert("client.provd.test")
    stranger.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "stranger.pem"))
    foreign = http_peers.ssl_context()
    foreign.load_cert_chain(tmp_path / "stranger.pem")
    assert httpx.get(url, verify=foreign, timeout=TIMEOUT).status_code == 400
    response = httpx.get(url, verify=http_peers.ssl_context(client_cert=True), timeout=TIMEOUT)
    assert response.status_code == 200 and response.text == "<keys/>"
    path = urlsplit(url).path
    verdicts = [e.ssl_client_verify.split(":")[0] for e in http_peers.wait_for_log(lambda e: e.uri == path, 3)]
    assert verdicts == ["NONE", "FAILED", "SUCCESS"]


# --- authentication ----------------------------------------------------------------------------------------------


def test_digest_auth_on_lighttpd(http_peers: HttpPeers, served: Served) -> None:
    served.write("d.xml", "<keys/>")
    url = served.digest_url + "d.xml"
    challenge = httpx.get(url, timeout=TIMEOUT)
    assert challenge.status_code == 401 and challenge.headers["www-authenticate"].startswith("Digest ")
    wrong = httpx.DigestAuth(http_peers.digest_user, "not-the-password")
    assert httpx.get(url, auth=wrong, timeout=TIMEOUT).status_code == 401
    auth = httpx.DigestAuth(http_peers.digest_user, http_peers.digest_password)
    with httpx.Client(timeout=TIMEOUT, auth=auth) as client:
        response = client.get(url)
        assert response.status_code == 200 and response.text == "<keys/>"
        assert client.get(url, headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_basic_auth_on_nginx(http_peers: HttpPeers, served: Served) -> None:
    served.write("b.xml", "<keys/>")
    url = served.basic_url + "b.xml"
    challenge = httpx.get(url, timeout=TIMEOUT)
    assert challenge.status_code == 401 and challenge.headers["www-authenticate"] == 'Basic realm="provd"'
    assert httpx.get(url, auth=(http_peers.basic_user, "not-the-password"), timeout=TIMEOUT).status_code == 401
    response = httpx.get(url, auth=(http_peers.basic_user, http_peers.basic_password), timeout=TIMEOUT)
    assert response.status_code == 200 and response.text == "<keys/>"


# --- the fault server --------------------------------------------------------------------------------------------


def test_reset_is_a_connection_reset(served: Served) -> None:
    # A FIN would be RemoteProtocolError ("server disconnected"); a RST is a read error (ECONNRESET).
    with pytest.raises(httpx.ReadError):
        httpx.get(served.fault_url + "reset", timeout=TIMEOUT)


def test_truncated_body_is_a_protocol_error(served: Served) -> None:
    with httpx.Client(timeout=TIMEOUT) as client, client.stream("GET", served.fault_url + "truncated") as response:
        assert response.status_code == 200 and response.headers["content-length"] == "1000"
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_stall_sends_headers_then_nothing(served: Served) -> None:
    with httpx.Client(timeout=STALL) as client, client.stream("GET", served.fault_url + "stall") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            response.read()


def test_stall_headers_never_answers(served: Served) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(served.fault_url + "stall-headers", timeout=STALL)


@pytest.mark.parametrize("route", ["big", "big-chunked"])
@pytest.mark.parametrize("size", [24, 1000, 300_001])
def test_big_bodies_are_exactly_n_bytes_of_xml(served: Served, route: str, size: int) -> None:
    response = httpx.get(f"{served.fault_url}{route}?bytes={size}", timeout=TIMEOUT)
    assert response.status_code == 200 and len(response.content) == size
    assert ET.fromstring(response.content).tag == "keys"
    if route == "big":
        assert response.headers["content-length"] == str(size)
    else:
        assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers


def test_big_below_the_xml_overhead_is_refused(served: Served) -> None:
    assert httpx.get(served.fault_url + "big?bytes=5", timeout=TIMEOUT).status_code == 400


def test_slow_answers_after_the_delay_and_count_sees_it(http_peers: HttpPeers, served: Served) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        started = time.monotonic()
        response = client.get(served.fault_url + "slow?ms=200")
        assert time.monotonic() - started >= 0.2 and response.text == "<keys/>"
        client.get(served.fault_url + "slow?ms=0")
        counts = client.get(f"{http_peers.fault_url}/count").json()
    assert counts[urlsplit(served.fault_url).path + "slow"] == 2


def test_fault_file_server_answers_conditionals_and_records_them(http_peers: HttpPeers, served: Served) -> None:
    served.write("f.xml", "<keys/>")
    url = served.fault_file_url + "f.xml"
    path = urlsplit(url).path
    with httpx.Client(timeout=TIMEOUT) as client:
        first = client.get(url)
        assert first.status_code == 200 and first.text == "<keys/>"
        etag = first.headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(url, headers={"If-Modified-Since": first.headers["last-modified"]}).status_code == 304
        assert client.get(served.fault_file_url + "missing.xml").status_code == 404
        assert client.get(served.fault_file_url + "../../etc/passwd").status_code == 404
        counts = client.get(f"{http_peers.fault_url}/count").json()
        seen = [r for r in client.get(f"{http_peers.fault_url}/requests").json() if r["path"] == path]
    assert counts[path] == 3
    assert [r["headers"].get("if-none-match") for r in seen] == [None, etag, None]


# --- the fixtures themselves -------------------------------------------------------------------------------------


def test_served_directory_is_the_same_file_on_every_peer(http_peers: HttpPeers, served: Served) -> None:
    served.write("all.xml", "<keys>all</keys>")
    assert served.path.parent == http_peers.root
    probes = [
        httpx.get(served.http_url + "all.xml", timeout=TIMEOUT),
        httpx.get(served.https_url + "all.xml", verify=http_peers.ssl_context(), timeout=TIMEOUT),
        httpx.get(served.mtls_url + "all.xml", verify=http_peers.ssl_context(client_cert=True), timeout=TIMEOUT),
        httpx.get(served.basic_url + "all.xml", auth=(http_peers.basic_user, http_peers.basic_password),
                  timeout=TIMEOUT),
        httpx.get(served.digest_url + "all.xml", auth=httpx.DigestAuth(http_peers.digest_user,
                                                                       http_peers.digest_password), timeout=TIMEOUT),
        httpx.get(served.fault_file_url + "all.xml", timeout=TIMEOUT),
    ]
    assert [(p.status_code, p.text) for p in probes] == [(200, "<keys>all</keys>")] * len(probes)


def test_served_urls_end_in_slash_and_differ_per_test(served: Served) -> None:
    urls = [served.http_url, served.https_url, served.mtls_url, served.basic_url, served.digest_url,
            served.fault_file_url, served.fault_url]
    assert all(url.endswith("/") for url in urls)
    assert served.path.is_dir() and not any(served.path.iterdir())


def test_peers_are_stopped_when_the_body_fails(tmp_path: Path) -> None:
    """Teardown runs whatever happens inside: afterwards no port of any peer accepts a connection."""
    urls: list[str] = []

    def failing_test() -> None:
        with running_http_peers(tmp_path) as peers:
            urls.extend([peers.http_url, peers.https_url, peers.https_wrong_host_url, peers.mtls_url,
                         peers.digest_url, peers.basic_url, peers.fault_url])
            assert httpx.get(f"{peers.fault_url}/count", timeout=TIMEOUT).status_code == 200
            raise KeyError("a failing test")

    with pytest.raises(KeyError):
        failing_test()
    assert len(urls) == 7
    for url in urls:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port(url)), timeout=1).close()


def test_a_port_taken_before_the_server_binds_it_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race between picking a free port and the server binding it: the start is retried on fresh ports."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        picks = iter([[taken.getsockname()[1]]])
        free_ports = bench._free_ports
        monkeypatch.setattr(bench, "_free_ports", lambda count: next(picks, None) or free_ports(count))
        dirs = bench._Dirs(tmp_path)
        with contextlib.ExitStack() as stack:
            (bound,), _ = bench._start_with_free_ports(stack, 1, lambda ports: bench._start_lighttpd(dirs, ports[0]))
            assert bound != taken.getsockname()[1]
            assert httpx.get(f"http://127.0.0.1:{bound}/", timeout=TIMEOUT).status_code == 401
