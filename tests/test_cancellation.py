"""Cancellation, deadlines and faults, on the tiny SD model loaded through the real path.

Disconnects need a real server and a real socket: the app runs under uvicorn on a thread
of this process, so the tests can watch the UNet's calls and the executor's state.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from conftest import served_over_tcp, serving, wait_for_status
from helpers import wait_until

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2}
LONG = SMALL | {"num_inference_steps": 150}


def send_and_hang_up_later(url: str, body: dict) -> socket.socket:
    """A raw request whose connection the test closes when it wants the client gone."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    payload = json.dumps(body).encode()
    sock.sendall(
        b"POST /text-to-image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


class UNetWatch:
    """Counts the UNet's calls; can hold it at a call until released."""

    def __init__(self, app, hold_at: int | None = None) -> None:
        self.calls = 0
        self.reached = threading.Event()
        self.release = threading.Event()
        self.hold_at = hold_at
        unet = app.state.runtime.pipeline.pipe.unet
        self.handle = unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.calls += 1
        if self.calls == self.hold_at:
            self.reached.set()
            self.release.wait(60)

    def remove(self) -> None:
        self.release.set()
        self.handle.remove()


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def server(make_settings):
    with served_over_tcp(make_settings(capacity=1)) as running:
        yield running


def test_a_client_that_disconnects_mid_inference_stops_it_at_the_next_step(server):
    url, app = server
    watch = UNetWatch(app, hold_at=3)
    try:
        sock = send_and_hang_up_later(url, LONG)
        assert watch.reached.wait(60)
        sock.close()
        runtime = app.state.runtime
        wait_until(lambda: runtime.admission.admitted == 0)  # the server noticed the close
        watch.release.set()
        wait_until(lambda: runtime.admission.running == 0 and runtime.admission.admitted == 0)
        assert watch.calls <= 4  # stopped within one step of 150
        cancelled = 'runner_cancelled_requests_total{reason="disconnect"}'
        assert metric(url, cancelled) == 1
    finally:
        watch.remove()
    response = httpx.post(url + "/text-to-image", json=SMALL, timeout=60)
    assert response.status_code == 200


def test_an_orphaned_inference_keeps_health_ok_and_its_place_until_its_thread_ends(server):
    """Issue 13, finding 15: once the client left, /health said IDLE (the worker would send
    work to a container it believed idle) while the thread still ran on the device."""
    url, app = server
    runtime = app.state.runtime
    watch = UNetWatch(app, hold_at=1)  # held inside a step: the cancellation waits for it
    try:
        sock = send_and_hang_up_later(url, LONG)
        assert watch.reached.wait(60)
        sock.close()
        wait_until(lambda: runtime.admission.admitted == 0)  # the request itself is over
        assert httpx.get(url + "/health").json() == {"status": "OK"}
        assert runtime.admission.busy == 1 and runtime.admission.running == 1
        watch.release.set()
        wait_until(lambda: httpx.get(url + "/health").json() == {"status": "IDLE"})
        assert runtime.admission.busy == 0 and runtime.admission.running == 0
    finally:
        watch.remove()


def test_a_client_that_disconnects_while_queued_is_dropped_from_the_queue(server):
    url, app = server
    runtime = app.state.runtime
    alone = UNetWatch(app)
    httpx.post(url + "/text-to-image", json=SMALL, timeout=60).raise_for_status()
    alone.remove()
    watch = UNetWatch(app, hold_at=1)
    try:
        first = threading.Thread(
            target=lambda: httpx.post(url + "/text-to-image", json=SMALL, timeout=60)
        )
        first.start()
        assert watch.reached.wait(60)
        queued = send_and_hang_up_later(url, LONG)
        wait_until(lambda: runtime.admission.waiting == 1)
        queued.close()
        wait_until(lambda: runtime.admission.waiting == 0)
        assert runtime.admission.admitted == 1  # only the running request holds a place
        watch.release.set()
        first.join(60)
        assert watch.calls == alone.calls  # the first request's steps; the dropped one never ran
    finally:
        watch.remove()


def test_a_client_that_hangs_up_before_sending_its_whole_body_is_counted_499_not_500(server):
    # Found by benchmarks/bench_load.py: such requests were counted as answered 500s.
    url, app = server
    port = int(url.rsplit(":", 1)[1])
    runtime = app.state.runtime
    names = {
        code: f'runner_requests_total{{route="/text-to-image",status="{code}"}}'
        for code in (499, 500)
    }
    cancelled = 'runner_cancelled_requests_total{reason="disconnect"}'
    before = {name: metric(url, name) for name in [*names.values(), cancelled]}
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /text-to-image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"prompt": '
    )
    wait_until(lambda: runtime.admission.bodies_in_transit == 1)
    sock.close()
    wait_until(lambda: metric(url, names[499]) == before[names[499]] + 1)
    assert runtime.admission.admitted == 0
    assert metric(url, names[500]) == before[names[500]]
    assert metric(url, cancelled) == before[cancelled] + 1
    assert httpx.post(url + "/text-to-image", json=SMALL, timeout=60).status_code == 200


def test_a_request_past_its_deadline_is_stopped_and_answered_500(make_settings, caplog):
    with serving(make_settings(request_deadline=0.5)) as client:
        unet = client.app.state.runtime.pipeline.pipe.unet
        calls = []

        def slow(module, args):
            calls.append(1)
            time.sleep(0.2)

        handle = unet.register_forward_pre_hook(slow)
        try:
            response = client.post("/text-to-image", json=SMALL | {"num_inference_steps": 50})
        finally:
            handle.remove()
        assert response.status_code == 500
        assert response.json() == {
            "detail": {
                "msg": "Inference stopped: it ran past the 0.5 s deadline (REQUEST_DEADLINE)."
            }
        }
        assert len(calls) <= 4
        assert "answered 500: Inference stopped: it ran past the 0.5 s deadline" in caplog.text
        assert client.post("/text-to-image", json=SMALL).status_code == 200
        text = client.get("/metrics").text
        assert 'runner_cancelled_requests_total{reason="deadline"} 1.0' in text


def test_a_pipeline_that_returns_garbage_gets_a_500_and_serving_goes_on(make_settings):
    with serving(make_settings()) as client:
        pipeline = client.app.state.runtime.pipeline
        real_predict = pipeline.predict
        pipeline.predict = lambda params: object()
        try:
            response = client.post("/text-to-image", json=SMALL)
        finally:
            pipeline.predict = real_predict
        assert response.status_code == 500
        assert response.json() == {
            "detail": {"msg": "Inference failed: its output could not be encoded (AttributeError)."}
        }
        assert wait_for_status(client, {"IDLE"}) == "IDLE"
        assert client.post("/text-to-image", json=SMALL).status_code == 200


def test_a_prepare_whose_client_left_keeps_its_place_until_it_ends(server, monkeypatch):
    """A request's ``prepare`` (a LoRA's hub fetch) runs on the admission's threads beside the
    slots: when its client leaves, the thread runs on, and holds a place until it ends."""
    url, app = server
    runtime = app.state.runtime
    pipeline = runtime.pipeline
    entered, release = threading.Event(), threading.Event()
    prepare = pipeline.prepare

    def held_prepare(params):
        entered.set()
        assert release.wait(60)
        return prepare(params)

    monkeypatch.setattr(pipeline, "prepare", held_prepare)
    sock = send_and_hang_up_later(url, SMALL)
    try:
        assert entered.wait(60)
    finally:
        sock.close()
    wait_until(lambda: runtime.admission.admitted == 0)  # the request itself is over
    assert runtime.admission.busy == 1
    assert httpx.get(url + "/health").json() == {"status": "OK"}
    release.set()
    wait_until(lambda: runtime.admission.busy == 0)
    assert httpx.get(url + "/health").json() == {"status": "IDLE"}
    assert runtime.admission.running == 0  # the left request never reached a slot
