"""/version, /hardware/*, /metrics and the media encoder."""

from __future__ import annotations

from runner import __version__, hardware

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}


def test_version_and_hardware_answer_with_the_contract_fields(sd_client):
    assert sd_client.get("/version").json() == {
        "pipeline": "text-to-image",
        "model_id": "tiny-random/stable-diffusion-v1-5",
        "version": __version__,
    }
    # What NVML reports here: nothing on a machine without a GPU, each GPU's facts on one.
    gpus = {str(index): info.model_dump() for index, info in hardware.gpu_info().items()}
    info = sd_client.get("/hardware/info").json()
    assert info == {
        "pipeline": "text-to-image",
        "model_id": "tiny-random/stable-diffusion-v1-5",
        "gpu_info": gpus,
    } or (gpus and set(info["gpu_info"]) == set(gpus))  # memory_free moves on a GPU
    stats = sd_client.get("/hardware/stats").json()
    assert set(stats["gpu_stats"]) == set(gpus) and stats["pipeline"] == "text-to-image"


def test_metrics_count_requests_and_time_them(sd_client):
    assert sd_client.post("/text-to-image", json=SMALL).status_code == 200
    assert sd_client.post("/text-to-image", json={**SMALL, "width": 7}).status_code == 400
    text = sd_client.get("/metrics").text
    assert 'runner_requests_total{route="/text-to-image",status="200"}' in text
    assert 'runner_requests_total{route="/text-to-image",status="400"}' in text
    assert 'runner_inference_duration_seconds_count{route="/text-to-image"}' in text
    assert 'runner_request_duration_seconds_count{route="/text-to-image"}' in text
    assert 'runner_queue_wait_seconds_count{route="/text-to-image"}' in text
    assert 'runner_health{runner_health="IDLE"} 1.0' in text
    assert "runner_queue_depth 0.0" in text and "runner_in_flight 0.0" in text
    assert "runner_model_load_seconds" in text


def test_every_answer_carries_a_request_id(sd_client):
    response = sd_client.post("/text-to-image", json=SMALL, headers={"X-Request-ID": "job-42"})
    assert response.headers["x-request-id"] == "job-42"
    assert len(sd_client.get("/health").headers["x-request-id"]) == 16
