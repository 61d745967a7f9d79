"""The runner as a go-livepeer live runner: its own registration (runner/live_runner.py)
against the stand-in orchestrator (tests/stand_in_orchestrator.py, written from go-livepeer's
doc/live-runner.md and ai/runner/live_runner.go), the network SDK's ``register_runner``
against the same stand-in, and the SDK's ``call_runner`` through the stand-in's proxy
(server/ai_http.go ``ProxyLiveRunnerSingleShot``)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import soundfile
import uvicorn
from conftest import free_port
from examples import TINY, VALID
from helpers import decode_image, long_text_to_image
from stand_in_orchestrator import StandInOrchestrator, go_decode, go_duration_text

from runner import hardware
from runner.app import create_app
from runner.cli import main
from runner.lifecycle import Lifecycle
from runner.live_runner import go_duration, process_gpu
from runner.schemas import GPUComputeInfo
from runner.server import uvicorn_config

lg = pytest.importorskip("livepeer_gateway.live_runner", reason="the sdk extra")
from livepeer_gateway.errors import LivepeerHTTPError  # noqa: E402

SECRET = "orch-secret-7c1e9b2d-not-for-logs"
LONG = long_text_to_image(40)


def orchestrator(**options: object) -> StandInOrchestrator:
    values: dict[str, object] = {"secret": SECRET, "interval": 0.3, "ttl": 1.5}
    values.update(options)
    return StandInOrchestrator(**values)  # type: ignore[arg-type]


def live_settings(make_settings, orchestrator_url: str, **overrides: object):
    port = free_port()
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "live_runner_orchestrator": orchestrator_url,
        "live_runner_secret": SECRET,
        "live_runner_url": f"http://127.0.0.1:{port}",
        "live_runner_price": "0.002",
    }
    values.update(overrides)
    return make_settings(**values)


@contextmanager
def runner_over_tcp(settings) -> Iterator[tuple[str, object]]:
    """The app under uvicorn on a thread (a real socket the stand-in can proxy to), from
    the start of its load; its lifespan's end unregisters."""
    app = create_app(settings)
    config = uvicorn_config(app, settings, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = settings.live_runner_url
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/health", timeout=1.0)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the runner never listened"
            time.sleep(0.05)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(60)


def wait_health(url: str, wanted: set[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(url + "/health", timeout=5.0).json()["status"] not in wanted:
        assert time.monotonic() < deadline, f"/health never reached {wanted}"
        time.sleep(0.05)


def wait_log(caplog, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{caplog.text}"
        time.sleep(0.02)


def assert_no_secret(text: str, orch: StandInOrchestrator) -> None:
    for secret in (SECRET, *orch.issued):
        assert secret not in text


def live_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "runner.live_runner"]


# -- the runner's own registration ----------------------------------------------------------


def test_registers_only_when_ready_then_heartbeats_and_leaves(make_settings, caplog):
    """Registration waits for the load (the runner's /ready answers 200 when the orchestrator
    first hears of it), is prompt after it, carries what the SDK sends, and ends with an
    unregister when the server stops."""
    caplog.set_level(logging.INFO)
    readiness_at_registration: list[int] = []
    orch = orchestrator(interval=30.0, ttl=60.0)  # heartbeats only when something changes
    settings = live_settings(make_settings, orch.url, warmup=True, capacity=2)
    orch.on_registration = lambda request: readiness_at_registration.append(
        httpx.get(request["runner_url"] + "/ready", timeout=5.0).status_code
    )
    with orch, runner_over_tcp(settings) as (url, app):
        orch.wait_for(lambda: orch.count("registered") == 1, what="a registration")
        assert readiness_at_registration == [200]
        (runner,) = orch.runners.values()
        assert runner.request["runner_url"] == url
        assert runner.request["app"] == f"text-to-image/{TINY['text-to-image']}"
        assert runner.request["mode"] == "single-shot" and runner.request["capacity"] == 2
        assert runner.request["status"] == "ready" and runner.request["gpu"] is None  # CPU
        assert runner.request["price_info"] == {
            "price": "0.002",
            "currency": "usd",
            "unit": "fixed",
        }
        (entry,) = orch.discovery()
        assert entry["url"] == f"{orch.url}/apps/{runner.runner_id}/app"

        # Readiness that changes is announced at once, not at the next 30-second interval.
        # A device failure is for good; a failed lifecycle stands in for one, then is taken
        # away again, so the test sees the status change both ways.
        runtime = app.state.runtime
        healthy, failed = runtime.lifecycle, Lifecycle()
        failed.unusable("stand-in device failure")
        runtime.lifecycle = failed
        orch.wait_for(lambda: orch.discovery() == [], timeout=5, what="status unavailable")
        assert ("heartbeat", runner.runner_id, "unavailable") in orch.events
        runtime.lifecycle = healthy
        orch.wait_for(lambda: orch.discovery() != [], timeout=5, what="status ready again")
        heartbeats = orch.count("heartbeat")
        assert heartbeats == 2, orch.events
    assert orch.events[-1] == ("unregistered", runner.runner_id)
    lines = live_lines(caplog)
    assert f"live runner: unregistered {runner.runner_id} from {orch.url}" in lines
    assert "live runner: not discoverable (status unavailable: ERROR)" in lines
    assert_no_secret(caplog.text, orch)


def test_a_failed_load_is_never_discoverable(make_settings, caplog):
    caplog.set_level(logging.INFO)
    orch = orchestrator()
    settings = live_settings(make_settings, orch.url, model_id="org/absent")
    with orch, runner_over_tcp(settings) as (url, _):
        wait_health(url, {"ERROR"})
        wait_log(caplog, "live runner: not registering with")
        assert orch.events == [] and orch.discovery() == []
        assert httpx.get(url + "/ready").status_code == 503
    assert orch.events == []


def test_registers_again_after_the_orchestrator_forgets_it(make_settings, caplog):
    """After a restart go-livepeer answers the old heartbeat secret 401 "invalid registration
    authorization" (live_runner.go Heartbeat: an unknown runner id needs the orchSecret)."""
    caplog.set_level(logging.INFO)
    orch = orchestrator()
    with orch, runner_over_tcp(live_settings(make_settings, orch.url)):
        orch.wait_for(lambda: orch.count("heartbeat") >= 2, what="heartbeats")
        (first,) = orch.runners
        orch.forget()
        orch.wait_for(lambda: orch.count("registered") == 2, what="a second registration")
        assert ("refused", 401, "registration") in orch.events
        assert list(orch.runners) == [first]  # it proposes the same runner id again
        assert len(orch.discovery()) == 1
        orch.wait_for(lambda: orch.events[-1][0] == "heartbeat", what="heartbeats again")
    lines = live_lines(caplog)
    assert sum("no longer knows runner" in line for line in lines) == 1
    assert sum(line.startswith("live runner: registered with") for line in lines) == 2
    assert_no_secret(caplog.text, orch)


def test_an_expired_runner_keeps_trying_and_registers_again(make_settings, caplog):
    """A runner silent past the TTL gets 404 until the expiry loop drops it (live_runner.go
    liveRunnerExpiredLocked, expiryLoop), then 401, and registers again."""
    caplog.set_level(logging.INFO)
    orch = orchestrator()
    with orch, runner_over_tcp(live_settings(make_settings, orch.url)) as (_, app):
        orch.wait_for(lambda: orch.count("registered") == 1, what="a registration")
        (runner,) = orch.runners.values()
        orch.dropping = False
        with orch.lock:  # as if its heartbeats had been lost for longer than the TTL
            runner.last_heartbeat -= 5.0
        orch.wait_for(lambda: orch.count("refused") >= 2, what="expired heartbeats")
        assert orch.count("registered") == 1
        orch.dropping = True
        orch.wait_for(lambda: orch.count("registered") == 2, what="a second registration")
        live = app.state.live_runner
        assert live.registered and live.announced == "ready"
        assert ("refused", 404, runner.runner_id) in orch.events
    expired = [line for line in live_lines(caplog) if "(404 'runner not found')" in line]
    assert len(expired) == 1, live_lines(caplog)
    assert_no_secret(caplog.text, orch)


def test_health_stays_fast_while_the_orchestrator_is_down_and_it_registers_once_up(
    make_settings, caplog
):
    """Failures are logged once, not at each retry; /health never waits for them."""
    caplog.set_level(logging.INFO)
    port = free_port()
    attempts = []
    down = socket.socket()
    down.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    down.bind(("127.0.0.1", port))
    down.listen(16)

    def refuse() -> None:  # accepts and closes: an orchestrator that is not serving
        while True:
            try:
                connection, _ = down.accept()
            except OSError:
                return
            attempts.append(time.monotonic())
            connection.close()

    refusing = threading.Thread(target=refuse, daemon=True)
    refusing.start()
    orch_url = f"http://127.0.0.1:{port}"
    settings = live_settings(make_settings, orch_url)
    with runner_over_tcp(settings) as (url, _):
        wait_health(url, {"IDLE"})
        with httpx.Client(base_url=url, timeout=httpx.Timeout(1.0)) as client:
            deadline = time.monotonic() + 60
            while len(attempts) < 3:
                assert time.monotonic() < deadline, "the runner stopped trying"
                assert client.get("/health").json() == {"status": "IDLE"}
        down.shutdown(socket.SHUT_RDWR)  # wakes the accept, so the port is free again
        down.close()
        refusing.join(10)
        unreachable = [line for line in live_lines(caplog) if "unreachable" in line]
        assert unreachable == [
            f"live runner: orchestrator {orch_url} unreachable (the exchange broke off); "
            "trying again with backoff"
        ]
        assert attempts[2] - attempts[1] > attempts[1] - attempts[0]  # it backs off
        with orchestrator(port=port) as orch:
            orch.wait_for(lambda: orch.count("registered") == 1, what="a registration")
            assert len(orch.discovery()) == 1
            wait_log(caplog, f"live runner: {orch_url} answers again")
    assert_no_secret(caplog.text, orch)


def test_a_wrong_secret_is_an_error_logged_once(make_settings, caplog):
    caplog.set_level(logging.INFO)
    orch = orchestrator(secret="the-real-orch-secret")
    with orch, runner_over_tcp(live_settings(make_settings, orch.url)):
        orch.wait_for(lambda: orch.count("refused") >= 2, what="two refused registrations")
        assert orch.runners == {}
    refused = [r for r in caplog.records if "refused the registration" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.ERROR
    assert "(401 'invalid registration authorization')" in refused[0].getMessage()
    assert SECRET not in caplog.text and "the-real-orch-secret" not in caplog.text


def test_sigterm_unregisters_before_the_drain(runner_process):
    """``ai-runner serve`` as the container runs it: SIGTERM takes the runner out of the
    orchestrator's discovery at once, while the request in flight still finishes."""
    with orchestrator(interval=0.5, ttl=5.0) as orch:
        runner = runner_process(
            LIVE_RUNNER_ORCHESTRATOR=orch.url,
            LIVE_RUNNER_SECRET=SECRET,
            LIVE_RUNNER_URL="http://runner.internal:8000",
            LIVE_RUNNER_PRICE="0.5",
            LIVE_RUNNER_UNIT="hour",
            SHUTDOWN_GRACE="60",
        )
        orch.wait_for(lambda: orch.count("heartbeat") >= 1, timeout=120, what="a heartbeat")
        result: dict = {}

        def generate() -> None:
            result["response"] = httpx.post(runner.url + "/text-to-image", json=LONG, timeout=300)

        worker = threading.Thread(target=generate)
        worker.start()
        runner.wait_status({"OK"})
        runner.proc.send_signal(signal.SIGTERM)
        orch.wait_for(lambda: orch.count("unregistered") == 1, timeout=10, what="the unregister")
        assert worker.is_alive() and runner.proc.poll() is None  # the drain goes on after it
        worker.join()
        assert result["response"].status_code == 200
        assert runner.proc.wait(30) == 0
        assert orch.discovery() == []
        log = runner.log()
        assert "live runner: unregistered runner_" in log
        assert log.index("live runner: unregistered") > log.index("SIGTERM: no new requests")
        assert_no_secret(log, orch)


def test_live_runner_settings(make_settings, monkeypatch, capsys):
    settings = make_settings(
        live_runner_orchestrator="http://orch:8935/",
        live_runner_secret=SECRET,
        live_runner_url="http://runner:8000",
    )
    assert settings.live_runner_orchestrator == "http://orch:8935"
    assert settings.live_runner_app == f"text-to-image/{TINY['text-to-image']}"
    assert settings.live_runner_unit == "fixed" and settings.live_runner_price == 0
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    monkeypatch.setenv("PIPELINE", "upscale")
    monkeypatch.setenv("LIVE_RUNNER_ORCHESTRATOR", "http://orch:8935")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "ai-runner: error: invalid settings: LIVE_RUNNER_ORCHESTRATOR is set, so the runner "
        "registers itself; it needs LIVE_RUNNER_SECRET and LIVE_RUNNER_URL too\n"
    )
    monkeypatch.setenv("LIVE_RUNNER_SECRET", SECRET)
    monkeypatch.setenv("LIVE_RUNNER_URL", "runner:8000")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ai-runner: error: invalid setting LIVE_RUNNER_URL='runner:8000'")
    assert SECRET not in err
    monkeypatch.setenv("LIVE_RUNNER_URL", "http://runner:8000")
    monkeypatch.setenv("LIVE_RUNNER_UNIT", "minute")
    assert main(["serve"]) == 2
    assert "invalid setting LIVE_RUNNER_UNIT='minute'" in capsys.readouterr().err


def test_the_secret_is_in_no_answer(make_settings):
    orch = orchestrator()
    with orch, runner_over_tcp(live_settings(make_settings, orch.url)) as (url, _):
        orch.wait_for(lambda: orch.count("registered") == 1, what="a registration")
        for path in ("/health", "/ready", "/metrics", "/version", "/hardware/info", "/docs"):
            assert_no_secret(httpx.get(url + path).text, orch)


def test_the_gpu_registered_is_nvmls(make_settings, monkeypatch):
    """The GPU as NVML reports it (runner/hardware.py, here given the facts of an H100), in
    go-livepeer's LiveRunnerGPU fields, the first device (a runner container is given one);
    none on the CPU or where NVML sees no GPU."""
    h100 = GPUComputeInfo(
        id="GPU-5f1c",
        name="NVIDIA H100 80GB HBM3",
        memory_total=85_520_809_984,
        memory_free=1,
        major=9,
        minor=0,
    )
    monkeypatch.setattr(
        hardware, "gpu_info", lambda: {1: h100, 0: h100.model_copy(update={"id": "GPU-0"})}
    )
    gpu = process_gpu(make_settings())
    assert gpu == {"id": "GPU-0", "name": "NVIDIA H100 80GB HBM3", "vram_mb": 81559}
    assert go_decode(json.dumps({"gpu": gpu}).encode())["gpu"] == gpu
    assert process_gpu(make_settings(device="cpu")) is None
    monkeypatch.setattr(hardware, "gpu_info", dict)
    assert process_gpu(make_settings()) is None


def test_go_durations():
    """Go's time.Duration.String() as go-livepeer writes heartbeat_interval and _ttl."""
    cases = {"5s": 5.0, "20s": 20.0, "1m30s": 90.0, "500ms": 0.5, "1h0m0s": 3600.0, "0s": 0.0}
    assert {text: go_duration(text) for text in cases} == cases
    assert [go_duration(text) for text in ("5", "", "five seconds", None)] == [None] * 4
    for seconds in (0.3, 1.5, 5.0, 20.0, 90.0, 3600.0):
        assert go_duration(go_duration_text(seconds)) == pytest.approx(seconds)


# -- the SDK's register_runner against the same stand-in --------------------------------------


def test_the_sdks_register_runner_against_the_stand_in():
    """livepeer_gateway.live_runner.register_runner registers, heartbeats, registers again
    after a forget (its 401 handling), and unregisters on close: the stand-in takes exactly
    what the network's client sends."""

    async def scenario(orch: StandInOrchestrator) -> None:
        registration = await lg.register_runner(
            orch.url,
            secret=SECRET,
            runner_url="http://127.0.0.1:9/runner",
            app="text-to-image/some-model",
            price="0.01",
            unit="fixed",
            mode="single-shot",
            capacity=2,
            auto_detect_gpu=False,
        )
        assert registration.heartbeat_interval_s == pytest.approx(0.3)
        assert registration.heartbeat_ttl_s == pytest.approx(1.5)
        while orch.count("heartbeat") < 2:
            await asyncio.sleep(0.02)
        (entry,) = orch.discovery()
        assert entry["app"] == "text-to-image/some-model" and entry["capacity"] == 2
        orch.forget()
        while orch.count("registered") < 2:
            await asyncio.sleep(0.02)
        assert list(orch.runners) == [registration.runner_id]
        await registration.close()
        assert orch.events[-1] == ("unregistered", registration.runner_id)

    with orchestrator() as orch:
        asyncio.run(asyncio.wait_for(scenario(orch), 30))
        assert orch.discovery() == []


def test_the_stand_in_refuses_a_wrong_secret_from_the_sdk():
    with orchestrator() as orch:
        with pytest.raises(LivepeerHTTPError) as refused:
            asyncio.run(
                lg.register_runner(
                    orch.url,
                    secret="not-the-secret",
                    runner_url="http://127.0.0.1:9/",
                    app="a/b",
                    price=1,
                    auto_detect_gpu=False,
                )
            )
        assert refused.value.status_code == 401
        assert refused.value.body == "invalid registration authorization\n"
        assert orch.runners == {}


GOOD = {
    "runner_url": "http://127.0.0.1:9/",
    "app": "text-to-image/m",
    "mode": "single-shot",
    "capacity": 1,
    "price_info": {"price": 1, "currency": "usd", "unit": "fixed"},
}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "runner_url"}, "invalid runner_url"),
        ({**GOOD, "runner_url": "127.0.0.1:9"}, "invalid runner_url"),
        ({k: v for k, v in GOOD.items() if k != "app"}, "app must be trimmed"),
        ({**GOOD, "app": " a/b"}, "app must be trimmed"),
        ({**GOOD, "status": "Ready"}, "status must be lowercase and trimmed"),
        ({**GOOD, "mode": "batch"}, 'mode must be "persistent" or "single-shot"'),
        ({**GOOD, "capacity": -1}, "capacity must be >= 0"),
        ({**GOOD, "price_info": {"price": 0}}, "price_info.price must be a positive decimal"),
        (
            {**GOOD, "price_info": {"price": 1, "currency": "eth"}},
            "price_info.currency must be usd",
        ),
        (
            {**GOOD, "price_info": {"price": 1, "unit": "minute"}},
            "price_info.unit must be hour, 720p, or fixed",
        ),
        ({**GOOD, "metadata": "x" * 1025}, "metadata must be at most 1024 bytes"),
        (
            {**GOOD, "capacity": "1"},
            "json: cannot unmarshal string into Go struct field "
            "LiveRunnerHeartbeatRequest.capacity of type int",
        ),
        (
            {**GOOD, "capacity": 1.5},
            "json: cannot unmarshal number into Go struct field "
            "LiveRunnerHeartbeatRequest.capacity of type int",
        ),
        (
            {**GOOD, "session_ids": "s"},
            "json: cannot unmarshal string into Go struct field "
            "LiveRunnerHeartbeatRequest.session_ids of type []string",
        ),
        (
            [GOOD],
            "json: cannot unmarshal array into Go value of type runner.LiveRunnerHeartbeatRequest",
        ),
        (b"", "EOF"),
    ],
)
def test_the_stand_in_refuses_what_go_livepeer_refuses(body, message):
    """live_runner.go normalizeHeartbeat / normalizeLiveRunnerPriceInfo, and Go's decoding in
    ai_http.go LiveRunnerHeartbeat; answered as respondWithError answers (400, plain text)."""
    with orchestrator() as orch:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = httpx.post(
            orch.url + "/runners/heartbeat", content=content, headers={"Authorization": SECRET}
        )
        assert (answer.status_code, answer.text) == (400, message + "\n")
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert orch.runners == {}


def test_the_stand_in_decodes_as_go_does():
    """What Go's encoding/json accepts is accepted: unknown fields, keys in another case, a
    price as a string holding a number, a GPU as a device index, null, data after the value."""
    decoded = go_decode(
        b'{"Runner_URL": "http://r:1", "APP": "a/b", "extra": [1], "gpu": 0, "status": null,'
        b' "price_info": {"price": "0.5"}, "capacity": 2} trailing'
    )
    assert decoded["runner_url"] == "http://r:1" and decoded["app"] == "a/b"
    assert decoded["gpu"] == {"id": "0"} and decoded["status"] == ""
    assert decoded["price_info"] == {"price": "0.5", "currency": "", "unit": ""}
    with orchestrator() as orch:
        answer = httpx.get(orch.url + "/runners/heartbeat")
        assert answer.status_code == 405  # POST /runners/heartbeat only
        unregister = orch.url + "/runners/runner_x/unregister"
        unknown = httpx.post(unregister, headers={"Authorization": "x"})
        assert (unknown.status_code, unknown.text) == (404, "runner not found\n")


# -- call_runner through the stand-in's proxy -------------------------------------------------


def check_text_to_image(data: dict, request: dict) -> None:
    (image,) = data["images"]
    assert decode_image(image["url"]).size == (request["width"], request["height"])


def check_text_to_speech(data: dict, request: dict) -> None:
    url = data["audio"]["url"]
    prefix = "data:audio/wav;base64,"
    assert url.startswith(prefix)
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(url[len(prefix) :])))
    assert rate == 16_000 and samples.ndim == 1 and len(samples) > 1000


# The eight pipelines call_runner reaches with a JSON body, each with its request
# (tests/examples.py) and what its answer must hold.
def as_json_body(request: dict) -> dict:
    """A multipart request as call_runner sends it: JSON, each file a base64 data URL
    (README, "JSON bodies"); form fields as they are."""
    kinds = {b"\x89PNG": "image/png", b"RIFF": "audio/wav"}
    body = {}
    for name, value in request.items():
        if isinstance(value, bytes):
            kind = kinds[value[:4]]
            value = f"data:{kind};base64," + base64.b64encode(value).decode()
        body[name] = value
    return body


def check_one_image(side: int):
    def check(data: dict, request: dict) -> None:
        (image,) = data["images"]
        assert decode_image(image["url"]).size == (side, side)

    return check


def check_image_to_video(data: dict, request: dict) -> None:
    (frames,) = data["frames"]
    assert len(frames) > 1
    assert {decode_image(frame["url"]).size for frame in frames} == {(64, 64)}


def check_image_to_text(data: dict, request: dict) -> None:
    assert isinstance(data["text"], str) and data["text"]


def check_segment_anything_2(data: dict, request: dict) -> None:
    masks = json.loads(data["masks"])
    scores = json.loads(data["scores"])
    assert len(masks) == len(scores) >= 1
    assert {(len(mask), len(mask[0])) for mask in masks} == {(16, 16)}  # the image's size


def check_audio_to_text(data: dict, request: dict) -> None:
    assert isinstance(data["text"], str)
    assert all(len(chunk["timestamp"]) == 2 for chunk in data["chunks"])


THROUGH_THE_PROXY = {
    "text-to-image": (VALID["text-to-image"], check_text_to_image),
    "text-to-speech": (VALID["text-to-speech"], check_text_to_speech),
    "image-to-image": (as_json_body(VALID["image-to-image"]), check_one_image(64)),
    "upscale": (as_json_body(VALID["upscale"]), check_one_image(64)),
    "image-to-video": (as_json_body(VALID["image-to-video"]), check_image_to_video),
    "image-to-text": (as_json_body(VALID["image-to-text"]), check_image_to_text),
    "segment-anything-2": (as_json_body(VALID["segment-anything-2"]), check_segment_anything_2),
    "audio-to-text": (as_json_body(VALID["audio-to-text"]), check_audio_to_text),
}


@contextmanager
def registered_runner(make_settings, pipeline: str, **overrides) -> Iterator[tuple]:
    """A runner of ``pipeline`` on its tiny model, registered with a stand-in; yields the
    stand-in and the single-shot URL discovery gives for it."""
    orch = orchestrator()
    settings = live_settings(
        make_settings, orch.url, pipeline=pipeline, model_id=TINY[pipeline], **overrides
    )
    with orch, runner_over_tcp(settings):
        orch.wait_for(lambda: len(orch.discovery()) == 1, timeout=120, what="a ready runner")
        (entry,) = orch.discovery()
        assert entry["app"] == f"{pipeline}/{TINY[pipeline]}"
        yield orch, entry["url"]


@pytest.mark.parametrize("pipeline", list(THROUGH_THE_PROXY))
def test_call_runner_through_the_proxy(make_settings, pipeline):
    request, check = THROUGH_THE_PROXY[pipeline]
    route = f"/{pipeline}"
    with registered_runner(make_settings, pipeline) as (orch, app_url):
        result = asyncio.run(lg.call_runner(app_url + route, payload=request, timeout=120))
        check(result.data, request)
        assert result.content_type == "application/json"
        (sent,) = orch.proxied
        (runner,) = orch.runners.values()
        assert sent["url"] == runner.request["runner_url"] + route
        # The single-shot session ends with the call (the stand-in releases it once the
        # answer is sent, which may be just after the client has it).
        orch.wait_for(lambda: orch.sessions_in_use() == 0, timeout=10, what="the session's end")


def test_the_proxy_answers_503_past_capacity(make_settings):
    """ReserveSession refuses a session past the registered capacity (CAPACITY)."""
    with registered_runner(make_settings, "text-to-image", capacity=1) as (orch, app_url):

        async def two_calls() -> tuple:
            first = asyncio.create_task(
                lg.call_runner(app_url + "/text-to-image", payload=LONG, timeout=300)
            )
            while orch.sessions_in_use() == 0:
                assert not first.done(), first
                await asyncio.sleep(0.01)
            with pytest.raises(LivepeerHTTPError) as refused:
                await lg.call_runner(app_url + "/text-to-image", payload=VALID["text-to-image"])
            return await first, refused.value

        first, refused = asyncio.run(asyncio.wait_for(two_calls(), 300))
        assert (refused.status_code, refused.body) == (503, "no capacity available for runner\n")
        check_text_to_image(first.data, LONG)
        (runner_id,) = orch.runners
        assert ("full", runner_id) in orch.events
