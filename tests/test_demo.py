"""``ai-runner demo``: the README's quick start builds the tiny model and serves it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from helpers import decode_image

from runner.hub import cached_snapshot
from tiny_models import TINY_SAFETY_CHECKER, TINY_SD


def wait_idle(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"demo exited early:\n{log.read_text()}"
        try:
            if httpx.get(url + "/health", timeout=5.0).json()["status"] == "IDLE":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/health never reached IDLE:\n{log.read_text()}")


@pytest.mark.slow
def test_the_demo_builds_the_tiny_model_and_serves_it(tmp_path):
    models = tmp_path / "tiny-models"
    port = free_port()
    log = tmp_path / "demo.log"
    # The demo's own settings win over any the environment holds for another pipeline.
    env = {**os.environ, "PIPELINE": "audio-to-text", "MODEL_ID": "org/other"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", "demo", "--model-dir", str(models)]
            + ["--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_idle(url, proc, log)
        assert cached_snapshot(models, TINY_SD) and cached_snapshot(models, TINY_SAFETY_CHECKER)
        body = {"prompt": "a cat", "width": 96, "height": 64, "num_inference_steps": 2}
        response = httpx.post(url + "/text-to-image", json=body, timeout=120)
        assert response.status_code == 200, response.text
        [image] = response.json()["images"]
        assert decode_image(image["url"]).size == (96, 64)
        assert image["nsfw"] is False
        assert f"try: curl -s {url}/text-to-image" in log.read_text()
    finally:
        proc.kill()
        proc.wait(10)
