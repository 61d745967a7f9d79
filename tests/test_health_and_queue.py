"""Health derived from live state, waiting for the load, bounded admission, fault recovery."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import serving, wait_for_status
from helpers import long_text_to_image

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
# Several seconds on a CPU core with the tiny model.
LONG = long_text_to_image(40)


def test_health_says_loading_then_idle(make_settings):
    with serving(make_settings(), wait=False) as client:
        assert client.get("/health").json() == {"status": "LOADING"}
        assert client.get("/version").status_code == 200
        assert client.get("/hardware/info").status_code == 200
        assert wait_for_status(client, {"IDLE", "ERROR"}) == "IDLE"


def test_a_request_sent_while_loading_waits_and_runs(make_settings):
    with serving(make_settings(), wait=False) as client:
        assert client.get("/health").json()["status"] == "LOADING"
        response = client.post("/text-to-image", json={**SMALL, "seed": 4})
        assert response.status_code == 200
        assert response.json()["images"][0]["seed"] == 4


def test_failed_load_is_error_and_requests_get_a_clear_error(make_settings, model_dir):
    with serving(make_settings(model_id="org/not-downloaded"), wait=False) as client:
        response = client.post("/text-to-image", json=SMALL)
        assert response.status_code == 500
        message = response.json()["detail"]["msg"]
        assert message.startswith("Model org/not-downloaded failed to load: ")
        assert str(model_dir) in message and "hf download org/not-downloaded" in message
        assert client.get("/health").json() == {"status": "ERROR"}


def busy(client) -> tuple[threading.Thread, dict]:
    """Start a long inference from a thread and wait until /health says OK."""
    results: dict = {}
    thread = threading.Thread(
        target=lambda: results.update(long=client.post("/text-to-image", json=LONG))
    )
    thread.start()
    wait_for_status(client, {"OK"})
    return thread, results


def test_busy_is_ok_then_idle_and_overload_is_refused_at_once(make_settings):
    with serving(make_settings(capacity=1, max_queue=0, retry_after=7)) as client:
        thread, results = busy(client)
        refused = client.post("/text-to-image", json=SMALL)
        assert refused.status_code == 500
        assert refused.headers["retry-after"] == "7"
        assert refused.json() == {
            "detail": {"msg": "The runner is at capacity (1 running, 0 queued); retry later."}
        }
        thread.join()
        assert results["long"].status_code == 200
        assert client.get("/health").json() == {"status": "IDLE"}
        metrics = client.get("/metrics").text
        assert "runner_overloaded_requests_total 1.0" in metrics


def test_overload_can_answer_503(make_settings):
    with serving(make_settings(capacity=1, max_queue=0, overload_status=503)) as client:
        thread, _ = busy(client)
        refused = client.post("/text-to-image", json=SMALL)
        assert refused.status_code == 503 and "retry-after" in refused.headers
        thread.join()


def test_queued_requests_all_get_answers(make_settings):
    medium = {**SMALL, "width": 512, "height": 512, "num_inference_steps": 8}
    with serving(make_settings(capacity=1, max_queue=2)) as client:
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda i: client.post("/text-to-image", json={**medium, "seed": i}), range(6)
                )
            )
        codes = [answer.status_code for answer in answers]
        assert len(answers) == 6 and set(codes) <= {200, 500}
        assert codes.count(200) >= 3
        for answer in answers:
            if answer.status_code == 500:
                assert "at capacity" in answer.json()["detail"]["msg"]
                assert "retry-after" in answer.headers
        assert wait_for_status(client, {"IDLE"}) == "IDLE"


def _raise_once(exception: BaseException):
    state = {"raised": False}

    def hook(module, args):
        if not state["raised"]:
            state["raised"] = True
            raise exception

    return hook


@pytest.fixture
def fault_client(make_settings):
    with serving(make_settings()) as client:
        yield client


def test_out_of_memory_answers_500_and_the_next_request_succeeds(fault_client):
    unet = fault_client.app.state.runtime.pipeline.pipe.unet
    handle = unet.register_forward_pre_hook(
        _raise_once(torch.OutOfMemoryError("CUDA out of memory"))
    )
    try:
        response = fault_client.post("/text-to-image", json=SMALL)
        assert response.status_code == 500
        assert response.json() == {"detail": {"msg": "GPU out of memory."}}
        assert fault_client.get("/health").json() == {"status": "IDLE"}
        assert fault_client.post("/text-to-image", json=SMALL).status_code == 200
    finally:
        handle.remove()


def test_a_pipeline_crash_is_500_without_a_traceback_and_serving_goes_on(fault_client):
    unet = fault_client.app.state.runtime.pipeline.pipe.unet
    handle = unet.register_forward_pre_hook(_raise_once(RuntimeError("boom at /secret/path")))
    try:
        response = fault_client.post("/text-to-image", json=SMALL)
        assert response.status_code == 500
        assert response.json() == {"detail": {"msg": "Inference failed: RuntimeError."}}
        assert fault_client.post("/text-to-image", json=SMALL).status_code == 200
    finally:
        handle.remove()


def test_an_unrecoverable_device_error_turns_health_to_error(fault_client):
    unet = fault_client.app.state.runtime.pipeline.pipe.unet
    error = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
    handle = unet.register_forward_pre_hook(_raise_once(error))
    try:
        response = fault_client.post("/text-to-image", json=SMALL)
        assert response.status_code == 500
        assert "unrecoverable device error" in response.json()["detail"]["msg"]
        assert fault_client.get("/health").json() == {"status": "ERROR"}
    finally:
        handle.remove()
