"""The worker's health watch (ai/worker/container.go runnerWaitUntilReady, ai/worker/docker.go
watchContainer) run against the runner in accelerated time: a container that loads, is busy,
or fails its load. The first tests show that the emulation destroys what go-livepeer would
destroy, so the runner's tests below can fail."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import uvicorn
from conftest import free_port
from go_worker import ContainerWatch, GoWorker, RunnerStartFailed, multipart_request, succeeded
from PIL import Image

from runner.app import create_app
from tiny_models import TINY_BLIP, TINY_SD

CLOCK = 0.1  # 5 s polls -> 0.5 s, the 3-minute LOADING limit -> 18 s
STAND_IN_CLOCK = 0.005  # the stand-ins answer at once: 25 ms polls, a 0.9 s LOADING limit


@contextmanager
def runner_on_a_socket(settings) -> Iterator[str]:
    """The app under uvicorn on a thread, from its first second: what the worker's docker
    client has just started (the watch waits for it to listen, as runnerWaitUntilReady does)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def stand_in(behaviour: dict) -> Iterator[str]:
    """A container that answers /health as ``behaviour`` says: a status, an HTTP code, or
    silence longer than the worker waits."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if behaviour.get("hang"):
                time.sleep(behaviour["hang"])
            code = behaviour.get("code", 200)
            body = f'{{"status": "{behaviour.get("status", "IDLE")}"}}'.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def watching(url: str, clock: float) -> Iterator[ContainerWatch]:
    watch = ContainerWatch(url, clock=clock)
    try:
        yield watch
    finally:
        watch.stop()


# -- the emulation destroys what go-livepeer destroys -------------------------------------------


def test_a_container_loading_past_three_minutes_is_destroyed_two_polls_later():
    """docker.go watchContainer: LOADING longer than containerTimeout counts a failure at every
    poll; maxHealthCheckFailures (2) destroy it, and a warm one is started again."""
    with stand_in({"status": "LOADING"}) as url, watching(url, STAND_IN_CLOCK) as watch:
        assert watch.start() is True and not watch.in_pool
        began = time.monotonic()
        watch.watch()
        watch.wait_for(lambda: watch.destroyed, 200)
        assert watch.destroyed == "health check failed 2 times"
        assert watch.events.count("loading for too long") == 2
        assert time.monotonic() - began >= watch.seconds(180)


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [({"hang": 0.2}, "error: ReadTimeout"), ({"code": 503}, "http 503")],
)
def test_two_failed_polls_destroy_a_container(behaviour, outcome):
    """docker.go: no answer within healthcheckTimeout, or a non-200, is a failure."""
    answers = {"status": "IDLE"}
    with stand_in(answers) as url, watching(url, STAND_IN_CLOCK) as watch:
        assert watch.start() is False and watch.in_pool
        answers.update(behaviour)
        watch.watch()
        watch.wait_for(lambda: watch.destroyed, 60)
        assert watch.destroyed == "health check failed 2 times"
        assert [poll.outcome for poll in watch.polls[-2:]] == [outcome, outcome]


def test_error_destroys_a_container_at_once_and_fails_its_start():
    """docker.go: ERROR sets failures to the maximum; container.go runnerWaitUntilReady
    fails the start of a container that says ERROR."""
    answers = {"status": "IDLE"}
    with stand_in(answers) as url, watching(url, STAND_IN_CLOCK) as watch:
        assert watch.start() is False
        answers["status"] = "ERROR"
        watch.watch()
        watch.wait_for(lambda: watch.destroyed, 60)
        assert watch.destroyed == "returned ERROR"
        assert [poll.outcome for poll in watch.polls].count("ERROR") == 1
    with (
        stand_in(answers) as url,
        watching(url, STAND_IN_CLOCK) as again,
        pytest.raises(RunnerStartFailed, match="runner is in error state"),
    ):
        again.start()


# -- the runner under the watch ---------------------------------------------------------------


def test_a_warm_runner_loads_joins_the_pool_on_idle_and_stays_while_busy(make_settings):
    """createContainer (keepWarm): a container that first says LOADING is borrowed until the
    watch sees IDLE. Then a request borrows it: /health must answer OK within the timeout
    every poll while it runs, and the container goes back when the request ends."""
    settings = make_settings(model_id=TINY_SD, warmup=True)
    with runner_on_a_socket(settings) as url, watching(url, CLOCK) as watch:
        assert watch.start() is True, watch.report()
        assert not watch.in_pool
        # container.go NewRunnerContainer, still LOADING: /hardware/info within 5 s, /version.
        worker = GoWorker(watch.http)
        info = succeeded(worker.get("/hardware/info", timeout=watch.seconds(5)))
        assert info["pipeline"] == "text-to-image" and info["model_id"] == TINY_SD
        assert succeeded(worker.get("/version"))["model_id"] == TINY_SD
        watch.watch()
        watch.wait_for(lambda: watch.in_pool, 180)
        assert watch.events[-1] == "returned to the pool: IDLE"
        seen = [poll.outcome for poll in watch.polls]
        assert set(seen) == {"LOADING", "IDLE"} and seen[-1] == "IDLE", watch.report()
        assert seen.index("IDLE") == len(seen) - seen[::-1].index("LOADING")  # no going back

        done = watch.borrow()
        with httpx.Client(base_url=url, timeout=120) as http:
            worker = GoWorker(http)
            deadline = time.monotonic() + 60
            while sum(poll.outcome == "OK" for poll in watch.polls) < 2:
                assert time.monotonic() < deadline, watch.report()
                body = dict(prompt="a cat", width=64, height=64, num_images_per_prompt=2)
                succeeded(worker.json("/text-to-image", num_inference_steps=150, **body))
        done.set()
        watch.wait_for(lambda: watch.in_pool, 10)
        # The request's end returns it; so does a poll that sees IDLE while it is still
        # borrowed (ai/worker/docker.go watchContainer), which can land in the moment
        # between one answer and the next request or done.set(). Either is the container
        # going back once idle.
        assert watch.events[-1] in {
            "returned to the pool: the request ended",
            "returned to the pool: IDLE",
        }
        assert watch.destroyed is None, watch.report()
        assert all(not poll.outcome.startswith(("error", "http")) for poll in watch.polls)
        assert max(poll.took for poll in watch.polls) < watch.seconds(5), watch.report()


def test_a_cold_container_gets_its_job_while_it_still_loads(make_settings):
    """docker.go Borrow -> createContainer(keepWarm=false): runnerWaitUntilReady returns at
    the first 200, LOADING included, and the job is sent at once: it waits for the load and
    is served."""
    settings = make_settings(pipeline="image-to-text", model_id=TINY_BLIP, warmup=True)
    with runner_on_a_socket(settings) as url, watching(url, CLOCK) as watch:
        watch.keep_warm = False
        assert watch.start() is True, watch.report()
        done = watch.borrow()
        watch.watch()
        with httpx.Client(base_url=url, timeout=120) as http:
            image = io.BytesIO()
            Image.new("RGB", (48, 40), (200, 30, 30)).save(image, "PNG")
            body = multipart_request("/image-to-text", ("a.png", image.getvalue()), model_id="")
            assert isinstance(succeeded(GoWorker(http).send("/image-to-text", *body))["text"], str)
        done.set()
        watch.wait_for(lambda: watch.in_pool, 10)
        assert watch.destroyed is None, watch.report()


def test_a_runner_whose_load_fails_is_destroyed_at_its_first_error(make_settings):
    """A load failure is ERROR: runnerWaitUntilReady fails the start, or, once started
    (LOADING), watchContainer destroys it at the first poll that sees ERROR."""
    settings = make_settings(model_id="tiny-random/absent-model", warmup=True)
    with runner_on_a_socket(settings) as url, watching(url, CLOCK) as watch:
        try:
            loading = watch.start()
        except RunnerStartFailed as exc:
            assert str(exc) == "runner is in error state"
            return
        assert loading is True
        watch.watch()
        watch.wait_for(lambda: watch.destroyed, 180)
        assert watch.destroyed == "returned ERROR" and not watch.in_pool
        assert [poll.outcome for poll in watch.polls].count("ERROR") == 1
