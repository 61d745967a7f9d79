"""``GET /ready``: 200 only when a request would be taken now, for a live-runner
orchestrator's health poll (go-livepeer doc/live-runner.md: only the exact status counts)."""

from __future__ import annotations

import threading

from conftest import serving, wait_for_status

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
LONG = {"prompt": "a cat", "width": 1024, "height": 576, "num_inference_steps": 40, "seed": 1}


def test_ready_follows_the_load_and_needs_no_token(make_settings):
    with serving(make_settings(auth_token="ready-token"), wait=False) as client:
        loading = client.get("/ready")
        assert (loading.status_code, loading.json()) == (503, {"ready": False, "status": "LOADING"})
        wait_for_status(client, {"IDLE", "ERROR"})
        for headers in ({}, {"Authorization": "Bearer ready-token"}):
            ready = client.get("/ready", headers=headers)
            assert (ready.status_code, ready.json()) == (200, {"ready": True, "status": "IDLE"})
        assert "/ready" not in client.get("/openapi.json").json()["paths"]


def test_a_failed_load_is_not_ready(make_settings):
    with serving(make_settings(model_id="org/not-downloaded")) as client:
        answer = client.get("/ready")
        assert (answer.status_code, answer.json()) == (503, {"ready": False, "status": "ERROR"})


def test_a_full_or_draining_runner_is_not_ready(make_settings):
    with serving(make_settings(capacity=1, max_queue=0)) as client:
        runtime = client.app.state.runtime
        done = threading.Event()

        def long_request() -> None:
            client.post("/text-to-image", json=LONG)
            done.set()

        threading.Thread(target=long_request, daemon=True).start()
        wait_for_status(client, {"OK"})
        full = client.get("/ready")
        assert (full.status_code, full.json()) == (503, {"ready": False, "status": "FULL"})
        assert done.wait(120)
        wait_for_status(client, {"IDLE"})
        assert client.get("/ready").status_code == 200
        runtime.drain()  # what SIGTERM does
        draining = client.get("/ready")
        assert draining.status_code == 503 and draining.json()["status"] == "DRAINING"
        assert client.get("/health").json() == {"status": "IDLE"}  # /health is unchanged
