"""The shared sandbox server: TLS, fault injection in the CRM's own shape, call counts, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandboxes import start, start_salesforce
from sandboxes.server import (
    Faults,
    Request,
    Response,
    SandboxServer,
    normalise_endpoint,
)

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """A tiny emulator: remembers writes and echoes the request."""

    name = "recorder"
    request_encodings = ("gzip", "deflate")
    response_encodings = ("gzip",)

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.forms: list[dict[str, str]] = []

    def handle(self, request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("emulator bug")
        if request.path == "/big":
            return Response.json(200, {"rows": ["x" * 100] * 100})
        if request.path == "/form":
            self.forms.append(request.form())
        if request.method == "POST":
            self.writes.append(request.body)
        return Response.json(200, {"path": request.path, "query": request.query})

    def fault_response(self, kind: str) -> Response:
        return Response.json(int(kind), {"code": f"FAULT_{kind}"}, {"X-Fault": kind})


@pytest.fixture(params=[True, False], ids=["https", "http"])
def server(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    with SandboxServer(Recorder(), tls=request.param) as running:
        yield running


@pytest.fixture
def http(server: SandboxServer) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.verify = server.ca_bundle or True
        session.trust_env = False
        yield session


def test_faults_parse_from_the_cli_spec() -> None:
    faults = Faults.parse("latency_ms=50, rate_429=0.1,burst_429=3,expire_tokens_after_s=none")
    assert (faults.latency_ms, faults.rate_429, faults.burst_429) == (50.0, 0.1, 3)
    assert faults.expire_tokens_after_s is None
    assert Faults.parse("") == Faults()
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse("rate_999=1")
    with pytest.raises(ValueError):
        Faults.parse("burst_429=many")


def test_rates_are_reproducible_for_a_seed() -> None:
    a, b = Faults(seed=3), Faults(seed=3)
    assert [a.roll(0.5) for _ in range(50)] == [b.roll(0.5) for _ in range(50)]


def test_endpoints_are_normalised_for_counting() -> None:
    assert (
        normalise_endpoint("/services/data/v62.0/sobjects/Account/0015g0000000007AAA/")
        == "/services/data/v62.0/sobjects/Account/{id}"
    )
    assert normalise_endpoint("/services/data/v62.0/query/01gABC-2000") == (
        "/services/data/v62.0/query/{id}"
    )
    assert normalise_endpoint("/crm/v8/Accounts/5843104000000424001") == "/crm/v8/Accounts/{id}"
    assert normalise_endpoint("/crm/v8/Accounts") == "/crm/v8/Accounts"


def test_serves_requests_and_counts_calls(server: SandboxServer, http: requests.Session) -> None:
    assert server.base_url.startswith("https://" if server.tls else "http://")
    answer = http.get(server.base_url + "/a/b?x=1&x=2", timeout=5)
    assert answer.json() == {"path": "/a/b", "query": {"x": ["1", "2"]}}
    http.get(server.base_url + "/a/b", timeout=5)
    assert server.calls[("GET", "/a/b")] == 2


def test_repeated_slashes_and_absolute_targets_reach_the_emulator_as_plain_paths(
    plain: SandboxServer,
) -> None:
    # `//a//b` is origin-form with empty segments (the Salesforce CLI sends `//services/...`).
    answers = _raw_exchange(plain, b"GET //a//b?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b'"path": "/a/b"' in answers[0]
    assert b'"x": ["1"]' in answers[0]
    absolute = _raw_exchange(plain, b"GET http://x/c/d?y=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b'"path": "/c/d"' in absolute[0]


def test_tls_is_verified_against_the_test_ca() -> None:
    with SandboxServer(Recorder()) as running, requests.Session() as session:
        session.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            session.get(running.base_url + "/", timeout=5)  # system CAs do not know it
        session.verify = running.ca_bundle
        assert session.get(running.base_url + "/", timeout=5).status_code == 200


def test_a_client_that_stalls_before_the_tls_handshake_blocks_nobody() -> None:
    import socket

    with SandboxServer(Recorder()) as running, requests.Session() as session:
        session.verify = running.ca_bundle
        session.trust_env = False
        with socket.create_connection((running.host, running.port), timeout=5):
            # Connected, silent: a handshake in the accept loop would hold the next client up
            # until the server's 10 s socket timeout.
            began = time.monotonic()
            assert session.get(running.base_url + "/x", timeout=3).status_code == 200
            assert time.monotonic() - began < 2


def test_plain_http_to_the_https_port_is_closed_without_an_error() -> None:
    with SandboxServer(Recorder()) as running:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://{running.host}:{running.port}/x", timeout=5)
        assert not running.errors


def test_burst_429_then_normal(server: SandboxServer, http: requests.Session) -> None:
    server.faults.burst_429 = 2
    statuses = [http.get(server.base_url + "/x", timeout=5).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]


@pytest.mark.parametrize(
    ("field", "status"), [("rate_429", 429), ("rate_503", 503), ("rate_500", 500)]
)
def test_fault_rates_answer_in_the_emulator_shape(
    server: SandboxServer, http: requests.Session, field: str, status: int
) -> None:
    setattr(server.faults, field, 1.0)
    answer = http.get(server.base_url + "/x", timeout=5)
    assert answer.status_code == status
    assert answer.json() == {"code": f"FAULT_{status}"}
    assert answer.headers["X-Fault"] == str(status)
    setattr(server.faults, field, 0.0)  # switched off at run time
    assert http.get(server.base_url + "/x", timeout=5).status_code == 200


def test_dropped_connection(server: SandboxServer, http: requests.Session) -> None:
    server.faults.rate_drop = 1.0
    with pytest.raises(requests.ConnectionError):
        http.get(server.base_url + "/x", timeout=5)
    server.faults.rate_drop = 0.0
    assert http.get(server.base_url + "/x", timeout=5).status_code == 200


def test_drop_after_commit_applies_the_write(server: SandboxServer, http: requests.Session) -> None:
    emulator = server.emulator
    assert isinstance(emulator, Recorder)
    server.faults.drop_after_commit = 1
    with pytest.raises(requests.ConnectionError):
        http.post(server.base_url + "/w", data=b"one", timeout=5)
    assert emulator.writes == [b"one"]  # committed, though the client never heard
    assert http.post(server.base_url + "/w", data=b"two", timeout=5).status_code == 200


def test_latency(server: SandboxServer, http: requests.Session) -> None:
    server.faults.latency_ms = 150
    began = time.monotonic()
    http.get(server.base_url + "/x", timeout=5)
    assert time.monotonic() - began >= 0.15
    server.faults.latency_ms = 0


def test_emulator_bug_is_a_500_and_recorded(server: SandboxServer, http: requests.Session) -> None:
    assert http.get(server.base_url + "/boom", timeout=5).status_code == 500
    assert "emulator bug" in server.errors[0]
    server.errors.clear()


def test_start_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown sandbox kind"):
        start("sugarcrm")  # fxiaoke was the unknown example until its sandbox landed


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sf.json"
    with start_salesforce(accounts=5, state_file=str(state)) as first:
        account = first.emulator.records("Account")[0]["Id"]
        first.emulator.set_field("Account", account, "Risk_Rating__c", "D")
    assert state.exists()
    with start_salesforce(accounts=5, state_file=str(state)) as second:
        saved = {r["Id"]: r for r in second.emulator.records("Account")}
        assert saved[account]["Risk_Rating__c"] == "D"


def test_serve_cli_prints_one_json_line_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandboxes",
            "serve",
            "--crm",
            "salesforce",
            "--json",
            "--accounts",
            "5",
            "--faults",
            "latency_ms=1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        for key in (
            "crm",
            "base_url",
            "token_url",
            "client_id",
            "client_secret",
            "refresh_token",
            "ca_bundle",
            "config_snippet",
        ):
            assert key in info
        assert info["crm"] == "salesforce"
        with requests.Session() as session:
            session.verify = info["ca_bundle"]
            session.trust_env = False
            token = session.post(
                info["token_url"],
                data={"grant_type": "client_credentials"},
                auth=(info["client_id"], info["client_secret"]),
                timeout=10,
            )
            assert token.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one line


def _raw_exchange(server: SandboxServer, payload: bytes, *, reads: int = 1) -> list[bytes]:
    """Send bytes on one plain-HTTP connection and read `reads` answers (split on status lines)."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < reads or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


@pytest.fixture
def plain() -> Iterator[SandboxServer]:
    with SandboxServer(Recorder(), tls=False) as running:
        yield running


def test_chunked_request_body_arrives_whole_and_the_connection_stays_usable(
    plain: SandboxServer,
) -> None:
    emulator = plain.emulator
    assert isinstance(emulator, Recorder)
    chunked = (
        b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    follow_up = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
    answers = _raw_exchange(plain, chunked + follow_up, reads=2)
    assert emulator.writes == [b"hello world"]
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert b'"/after"' in answers[1]  # the chunk bytes were not taken for a second request


def test_expect_100_continue_is_answered_before_the_body(plain: SandboxServer) -> None:
    import socket

    emulator = plain.emulator
    assert isinstance(emulator, Recorder)
    with socket.create_connection((plain.host, plain.port), timeout=5) as sock:
        sock.sendall(
            b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"body")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert emulator.writes == [b"body"]


def test_keep_alive_serves_many_requests_on_one_connection(server: SandboxServer) -> None:
    import http.client
    import ssl

    if server.tls:
        context = ssl.create_default_context(cafile=server.ca_bundle)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            server.host, server.port, context=context, timeout=5
        )
    else:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("GET", "/one")
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", "/again")
            answer = conn.getresponse()
            assert answer.status == 200
            answer.read()
        assert conn.sock is sock  # never reconnected
    finally:
        conn.close()


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_request_bodies_are_inflated_when_the_api_accepts_them(
    plain: SandboxServer, coding: str
) -> None:
    import gzip
    import zlib

    emulator = plain.emulator
    assert isinstance(emulator, Recorder)
    packed = gzip.compress(b'{"a": 1}') if coding == "gzip" else zlib.compress(b'{"a": 1}')
    answer = requests.post(
        plain.base_url + "/w", data=packed, headers={"Content-Encoding": coding}, timeout=5
    )
    assert answer.status_code == 200
    assert emulator.writes == [b'{"a": 1}']


def test_a_coding_the_api_does_not_accept_reaches_the_emulator_as_sent(
    plain: SandboxServer,
) -> None:
    emulator = plain.emulator
    assert isinstance(emulator, Recorder)
    requests.post(plain.base_url + "/w", data=b"zz", headers={"Content-Encoding": "br"}, timeout=5)
    assert emulator.writes == [b"zz"]


def test_multipart_and_urlencoded_forms_read_the_same(plain: SandboxServer) -> None:
    emulator = plain.emulator
    assert isinstance(emulator, Recorder)
    fields = {"grant_type": "refresh_token", "refresh_token": "1000.abc", "note": "a b&c=d"}
    requests.post(plain.base_url + "/form", data=fields, timeout=5)
    requests.post(
        plain.base_url + "/form", files={k: (None, v) for k, v in fields.items()}, timeout=5
    )
    assert emulator.forms == [fields, fields]


def test_answers_are_gzipped_only_when_accepted_and_large(plain: SandboxServer) -> None:
    import gzip

    with requests.Session() as session:
        big = session.get(plain.base_url + "/big", timeout=5)
        assert big.headers["Content-Encoding"] == "gzip"
        assert big.json()["rows"][0] == "x" * 100  # requests inflates it
        small = session.get(plain.base_url + "/x", timeout=5)
        assert "Content-Encoding" not in small.headers
        raw = session.get(
            plain.base_url + "/big", headers={"Accept-Encoding": "identity"}, timeout=5
        )
        assert "Content-Encoding" not in raw.headers
    packed = requests.get(plain.base_url + "/big", stream=True, timeout=5)
    assert gzip.decompress(packed.raw.read()) == raw.content
