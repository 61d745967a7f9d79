"""Connection discipline on a real socket (issue 13, findings 1, 6, 8 and 11): the runner
under uvicorn with its own protocol (runner/connections.py), on 127.0.0.1 only."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest
from conftest import served_over_tcp
from helpers import wait_until

TOKEN = "conn-test-token"
BODY = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}


def connect(url: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.settimeout(15)
    return sock


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (reading what it sends)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length, or what came before the server closed."""
    received = b""
    while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    while found and len(body) < int(found[1]) and (chunk := sock.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def request_head(length: int | None = None, token: str = TOKEN) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        "POST /text-to-image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def server(make_settings):
    settings = make_settings(header_timeout=1.0, auth_token=TOKEN, body_timeout=30.0)
    with served_over_tcp(settings) as running:
        yield running


def test_silent_and_half_sent_heads_are_closed_after_the_header_timeout(server):
    url, _ = server
    silent = connect(url)
    half = connect(url)
    half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never ends its head
    started = time.monotonic()
    assert closed_by_server(silent, 10) and closed_by_server(half, 10)
    assert time.monotonic() - started < 5
    assert httpx.get(url + "/health").json()["status"] == "IDLE"


def test_a_refused_body_is_not_read_to_its_end(server):
    """With a wrong token the 401 comes at once; the rest of an endless chunked body is
    not drained (three such connections made the server read 48 GB in 20 s)."""
    url, _ = server
    sock = connect(url)
    sock.sendall(request_head(token="wrong"))
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    deadline = time.monotonic() + 30
    with pytest.raises(OSError):  # the server closed: broken pipe or reset
        while time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
    assert sent < 64 * 1024 * 1024  # socket buffers and the bounded linger, not the stream


def test_the_answer_reaches_a_client_whose_refused_body_is_still_coming(server):
    url, _ = server
    sock = connect(url)
    sock.sendall(request_head(10_000_000, token="wrong") + b"x" * 100_000)
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401 ")


def test_a_half_closed_client_still_gets_its_answer(server):
    url, _ = server
    payload = json.dumps(BODY).encode()
    sock = connect(url)
    sock.sendall(request_head(len(payload)) + payload)
    sock.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    # Interim 102 answers may come first (the runner's probe of a closed end); HTTP/1.1
    # clients skip them, Go's up to five.
    interim = 0
    while received.startswith(b"HTTP/1.1 102 "):
        received = received.partition(b"\r\n\r\n")[2]
        interim += 1
    assert interim <= 3
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(json.loads(body)["images"]) == 1


def test_a_trickling_body_is_refused_at_the_minimum_rate(server):
    url, app = server
    sock = connect(url)
    sock.sendall(request_head(1000) + b'{"prompt": ')
    started = time.monotonic()
    answer = b""
    while b"\r\n\r\n" not in answer and time.monotonic() - started < 20:
        sock.sendall(b" ")  # one byte a second
        try:
            sock.settimeout(1)
            answer += sock.recv(65536)
        except TimeoutError:
            continue
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert 5 <= time.monotonic() - started < 10
    sock.settimeout(5)
    answer += sock.recv(65536)
    assert b"Request body arriving too slowly" in answer
    assert app.state.runtime.admission.admitted == 0


def test_past_the_cap_the_oldest_waiting_connection_makes_room(make_settings):
    settings = make_settings(header_timeout=60.0, max_connections=8)
    with served_over_tcp(settings) as (url, _):
        idle = [connect(url) for _ in range(8)]
        assert httpx.get(url + "/health", timeout=5).json()["status"] == "IDLE"
        assert closed_by_server(idle[0], 5)  # the oldest went first
        assert not closed_by_server(idle[-1], 0.2)


def test_past_the_cap_a_pooled_connection_outlives_silent_ones(make_settings):
    """A client's keep-alive connection, idle between its requests, is not the first to go
    when silent sockets push past the cap, however long it has been open: closing it under a
    client about to reuse it loses that client's request (the attack mix of
    benchmarks/bench_load.py lost legitimate requests this way)."""
    settings = make_settings(header_timeout=60.0, max_connections=8)
    with served_over_tcp(settings) as (url, _):
        pooled = connect(url)
        pooled.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(pooled).startswith(b"HTTP/1.1 200 ")
        silent = [connect(url) for _ in range(12)]
        assert closed_by_server(silent[0], 5)  # past the cap: the silent ones go first
        pooled.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection
        assert read_answer(pooled).startswith(b"HTTP/1.1 200 ")
        assert sum(not closed_by_server(s, 0.05) for s in silent) >= 5


def test_bodies_in_transit_do_not_keep_legitimate_requests_out(make_settings):
    """Issue 13, finding 6: five connections trickling their bodies held every place, and
    every real request was refused. Bodies are now read before they take a place."""
    settings = make_settings(capacity=1, max_queue=1, auth_token=TOKEN)
    with served_over_tcp(settings) as (url, app):
        slow = [connect(url) for _ in range(3)]
        for sock in slow:
            sock.sendall(request_head(10_000) + b'{"prompt": ')
        runtime = app.state.runtime
        deadline = time.monotonic() + 10
        while runtime.admission.bodies_in_transit < 3:
            assert time.monotonic() < deadline, "the slow bodies never arrived"
            time.sleep(0.02)
        answer = httpx.post(
            url + "/text-to-image",
            json=BODY,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        # The place is given back once the answer has gone out, a moment after the
        # client has it; the trickling bodies are still being read and hold none.
        wait_until(lambda: runtime.admission.admitted == 0, timeout=10, what="the place freed")
        assert runtime.admission.bodies_in_transit == 3
        for sock in slow:
            sock.close()
