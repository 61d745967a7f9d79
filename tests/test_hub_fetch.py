"""Fetching from the hub what MODEL_DIR lacks, as ai-runner does, against a stand-in hub.

ai-runner runs online with HUGGINGFACE_HUB_CACHE=/models (runner/docker/Dockerfile) and
fetches at load what its download script (runner/dl_checkpoints.sh) leaves out: the safety
checker (runner/src/runner/pipelines/utils/utils.py, ``SafetyChecker.__init__``), the SDXL
base of ByteDance/SDXL-Lightning (pipelines/text_to_image.py, ``TextToImagePipeline.__init__``),
and on request every LoRA a request names (utils.py, ``LoraLoader.load_loras``). The runner
does the same, bounded, unless HF_HUB_OFFLINE=1. The runners here are ``ai-runner serve``
processes with HF_ENDPOINT pointed at ``StandInHub``, so huggingface_hub runs as in production.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import RunnerProcess, serving
from helpers import decode_image, pixels
from stand_in_hub import StandInHub

from runner.app import registered_pipelines
from runner.hub import Downloads, FetchFailed, Hub, cache_folder, locate_model
from runner.settings import Settings, SettingsError, load_settings
from tiny_models import (
    TINY_SAFETY_CHECKER,
    TINY_SD,
    TINY_SD_LORA,
    TINY_SDXL,
    TINY_SDXL_LIGHTNING,
)

LORA = "hub-loras/sd15-style"
HELD_LORA = "hub-loras/held"
HELD_LORA_2 = "hub-loras/held-too"
OTHER_LORA = "hub-loras/sd15-style-2"
STALLED_LORA = "hub-loras/stalled"
LARGE_LORA = "hub-loras/too-large"
PICKLED_LORA = "hub-loras/pickled"
FAILING_LORA = "hub-loras/failing"
MAX_BYTES = 200_000  # the tiny LoRA is about 27 kB
TIMEOUT = 6
SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}


def copy_models(source: Path, target: Path, *model_ids: str) -> Path:
    for model_id in model_ids:
        shutil.copytree(cache_folder(source, model_id), cache_folder(target, model_id))
    return target


def online_env(hub: StandInHub, folder: Path, **env: str) -> dict[str, str]:
    return {
        "PIPELINE": "text-to-image",
        "MODEL_ID": TINY_SD,
        "MODEL_DIR": str(folder),
        "SAFETY_CHECKER_ID": TINY_SAFETY_CHECKER,
        "WARMUP": "false",
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": hub.url,
        "HUB_MIN_FREE_BYTES": "0",
        "OMP_NUM_THREADS": "1",
        "TORCH_THREADS": "1",
        **env,
    }


def post(url: str, loras: dict | None = None, **fields: object) -> httpx.Response:
    body = {**SMALL, "loras": json.dumps(loras) if loras else "", **fields}
    return httpx.post(url + "/text-to-image", json=body, timeout=120)


def refused(url: str, loras: dict) -> str:
    response = post(url, loras)
    assert response.status_code == 400, response.text
    return response.json()["detail"]["msg"]


@pytest.fixture(scope="module")
def model_dir(tiny) -> Path:
    return tiny.need(TINY_SD, TINY_SAFETY_CHECKER, TINY_SDXL_LIGHTNING)


@pytest.fixture(scope="module")
def hub(model_dir: Path) -> Iterator[StandInHub]:
    lora = locate_model(model_dir, TINY_SD_LORA)
    with StandInHub() as hub:
        hub.add_folder(TINY_SAFETY_CHECKER, locate_model(model_dir, TINY_SAFETY_CHECKER))
        hub.add_folder(LORA, lora)
        hub.add_folder(OTHER_LORA, lora)
        hub.add_folder(HELD_LORA, lora).held = threading.Event()
        hub.add_folder(HELD_LORA_2, lora).held = threading.Event()
        hub.add_folder(STALLED_LORA, lora).held = threading.Event()
        weights = b"\0" * (MAX_BYTES + 100_000)
        hub.add_files(LARGE_LORA, {"pytorch_lora_weights.safetensors": weights})
        hub.add_folder(FAILING_LORA, lora).failing = True
        hub.add_files(PICKLED_LORA, {"pytorch_lora_weights.bin": b"\0" * 1000})
        yield hub


@pytest.fixture(scope="module")
def online(hub: StandInHub, model_dir: Path, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A runner whose MODEL_DIR holds only the model: no safety checker, no LoRAs."""
    folder = copy_models(model_dir, tmp_path_factory.mktemp("online-models"), TINY_SD)
    env = online_env(
        hub,
        folder,
        CAPACITY="1",
        HUB_MAX_DOWNLOADS="1",
        LORA_MAX_BYTES=str(MAX_BYTES),
        LORA_DOWNLOAD_TIMEOUT=str(TIMEOUT),
    )
    runner = RunnerProcess(env, tmp_path_factory.mktemp("logs") / "online.log")
    try:
        runner.wait_listening()
        assert runner.wait_status({"IDLE", "ERROR"}) == "IDLE", runner.log()
        yield runner.url, folder, runner
    finally:
        runner.stop()


def test_a_missing_safety_checker_is_fetched_at_load(online, hub):
    url, folder, runner = online
    assert locate_model(folder, TINY_SAFETY_CHECKER).joinpath("model.safetensors").is_file()
    assert ("HEAD", f"/{TINY_SAFETY_CHECKER}/resolve/main/config.json") in hub.requests
    assert f"fetched {TINY_SAFETY_CHECKER} (safety checker)" in runner.log()
    response = post(url, safety_check=True)
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["nsfw"] is False


def test_a_lora_is_fetched_when_first_asked_for_and_changes_the_image(online, hub):
    url, folder, runner = online
    plain = post(url)
    assert plain.status_code == 200, plain.text
    assert cache_folder(folder, LORA).exists() is False
    styled = post(url, {LORA: 1.0})
    assert styled.status_code == 200, styled.text
    assert pixels(styled.json()["images"][0]["url"]) != pixels(plain.json()["images"][0]["url"])
    assert locate_model(folder, LORA).joinpath("pytorch_lora_weights.safetensors").is_file()
    asked = len(hub.calls_for(LORA))
    again = post(url, {LORA: 1.0})
    assert again.status_code == 200
    assert pixels(again.json()["images"][0]["url"]) == pixels(styled.json()["images"][0]["url"])
    assert len(hub.calls_for(LORA)) == asked  # in MODEL_DIR now: the hub is not asked again


def test_a_lora_that_does_not_exist_is_400_naming_it(online):
    assert refused(online[0], {"hub-loras/absent": 1.0}) == (
        "loras: adapter hub-loras/absent could not be fetched: "
        "it does not exist on the hub (or is private)."
    )


def test_a_lora_over_the_size_limit_is_400_and_never_downloaded(online, hub):
    assert refused(online[0], {LARGE_LORA: 1.0}) == (
        f"loras: adapter {LARGE_LORA} could not be fetched: pytorch_lora_weights.safetensors "
        "is 0.30 MB, more than the 0.20 MB the runner fetches (LORA_MAX_BYTES)."
    )
    assert not [call for call in hub.calls_for(LARGE_LORA) if "/resolve/" in call[1]]


def test_a_lora_with_only_pickled_weights_is_400(online, hub):
    assert refused(online[0], {PICKLED_LORA: 1.0}) == (
        f"loras: adapter {PICKLED_LORA} could not be fetched: it has no .safetensors weights "
        "file (pickled weights are not fetched)."
    )
    assert not [call for call in hub.calls_for(PICKLED_LORA) if "/resolve/" in call[1]]


def test_a_failed_download_is_400_and_the_next_request_tries_again(online, hub):
    url = online[0]
    assert refused(url, {FAILING_LORA: 1.0}) == (
        f"loras: adapter {FAILING_LORA} could not be fetched: the hub answered HTTP 500."
    )
    hub.repos[FAILING_LORA].failing = False
    response = post(url, {FAILING_LORA: 1.0})
    assert response.status_code == 200, response.text


def test_requests_are_served_while_a_lora_downloads(online, hub):
    """CAPACITY=1: the download holds no inference slot, and /health keeps answering."""
    url = online[0]
    repo = hub.repos[HELD_LORA]
    hub.downloading.clear()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(post, url, {HELD_LORA: 0.5})
        try:
            assert hub.downloading.wait(60), "the download never started"
            health = httpx.get(url + "/health", timeout=2)
            assert health.json() == {"status": "OK"}  # busy with the downloading request
            other = post(url)
            assert other.status_code == 200, other.text
            assert decode_image(other.json()["images"][0]["url"]).size == (64, 64)
            assert not waiting.done()
        finally:
            repo.held.set()
        response = waiting.result(timeout=120)
    assert response.status_code == 200, response.text


def test_at_most_hub_max_downloads_run_at_once(online, hub):
    """HUB_MAX_DOWNLOADS=1: a second adapter's download waits for the first to end."""
    url, _, runner = online
    first = hub.repos[HELD_LORA_2]
    hub.downloading.clear()
    with ThreadPoolExecutor(2) as pool:
        waiting_first = pool.submit(post, url, {HELD_LORA_2: 1.0})
        try:
            assert hub.downloading.wait(60), "the first download never started"
            waiting_second = pool.submit(post, url, {OTHER_LORA: 1.0})
            deadline = time.monotonic() + 60
            line = f"LoRA adapter {OTHER_LORA} waits for a download turn (HUB_MAX_DOWNLOADS=1)"
            while line not in runner.log():
                assert time.monotonic() < deadline, runner.log()
                time.sleep(0.05)
            assert hub.calls_for(OTHER_LORA) == []
        finally:
            first.held.set()
        assert waiting_first.result(timeout=120).status_code == 200
        assert waiting_second.result(timeout=120).status_code == 200
    assert hub.calls_for(OTHER_LORA)


def test_a_download_that_does_not_finish_in_time_is_400(online, hub):
    assert refused(online[0], {STALLED_LORA: 1.0}) == (
        f"loras: adapter {STALLED_LORA} could not be fetched: the download did not finish "
        f"within {TIMEOUT} s (LORA_DOWNLOAD_TIMEOUT)."
    )
    assert httpx.get(online[0] + "/health", timeout=2).json() == {"status": "IDLE"}


def test_a_fetch_at_load_that_fails_is_an_error_and_the_next_start_completes_it(
    model_dir, tmp_path
):
    folder = copy_models(model_dir, tmp_path / "models", TINY_SD)
    with StandInHub() as hub:
        checker = hub.add_folder(TINY_SAFETY_CHECKER, locate_model(model_dir, TINY_SAFETY_CHECKER))
        checker.failing = True
        first = RunnerProcess(online_env(hub, folder), tmp_path / "first.log")
        try:
            first.wait_listening()
            assert first.wait_status({"IDLE", "ERROR"}) == "ERROR", first.log()
            response = post(first.url)
            assert response.status_code == 500
            assert (
                f"safety checker: model {TINY_SAFETY_CHECKER} is not in MODEL_DIR; fetching it "
                f"from {hub.url} failed: the hub answered HTTP 500; or set SAFETY_CHECKER=false"
            ) in response.json()["detail"]["msg"]
        finally:
            first.stop()
        checker.failing = False  # the hub is back; the container is started again
        second = RunnerProcess(online_env(hub, folder), tmp_path / "second.log")
        try:
            second.wait_listening()
            assert second.wait_status({"IDLE", "ERROR"}) == "IDLE", second.log()
            assert "is partly fetched (a fetch was cut short): fetching it" in second.log()
            response = post(second.url, safety_check=True)
            assert response.status_code == 200, response.text
        finally:
            second.stop()


def test_the_lightning_base_is_fetched_at_load_and_a_hub_down_is_400(model_dir, tmp_path):
    folder = copy_models(model_dir, tmp_path / "models", TINY_SDXL_LIGHTNING)
    with StandInHub() as hub:
        hub.add_folder(TINY_SDXL, locate_model(model_dir, TINY_SDXL))
        env = online_env(
            hub,
            folder,
            MODEL_ID=TINY_SDXL_LIGHTNING,
            SDXL_BASE_ID=TINY_SDXL,
            SAFETY_CHECKER="false",
            LORA_DOWNLOAD_TIMEOUT="30",
        )
        runner = RunnerProcess(env, tmp_path / "lightning.log")
        try:
            runner.wait_listening()
            assert runner.wait_status({"IDLE", "ERROR"}) == "IDLE", runner.log()
            base = locate_model(folder, TINY_SDXL)
            assert (base / "unet" / "config.json").is_file()
            assert not list((base / "unet").glob("*.safetensors"))  # Lightning's UNet is used
            assert (base / "vae" / "diffusion_pytorch_model.safetensors").is_file()
            response = post(runner.url, width=96, height=64)
            assert response.status_code == 200, response.text
            assert decode_image(response.json()["images"][0]["url"]).size == (96, 64)
            hub.stop()
            response = post(runner.url, {"hub-loras/sdxl-style": 1.0})
            assert response.json() == {
                "detail": {
                    "msg": "loras: adapter hub-loras/sdxl-style could not be fetched: "
                    "the hub could not be reached (ConnectError)."
                }
            }, runner.log()
            assert response.status_code == 400
        finally:
            runner.stop()


def test_a_fetch_that_would_leave_too_little_disk_is_refused(make_settings, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    size = free // 10
    with pytest.raises(FetchFailed) as refused_fetch:
        Hub(make_settings(model_dir=tmp_path, hub_min_free_bytes=free)).check_disk(size)
    assert refused_fetch.value.reason.endswith("free; HUB_MIN_FREE_BYTES)")
    assert "would leave less than" in refused_fetch.value.reason
    Hub(make_settings(model_dir=tmp_path, hub_min_free_bytes=0)).check_disk(size)


class AtOnce(Executor):
    """Runs the download in ``submit``: it is over before the requester waits for it."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001 - Executor's signature
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


def test_a_download_over_before_its_requester_waits_does_not_hang_it(make_settings, tmp_path):
    """A hub that refuses connections fails a download in microseconds."""
    with StandInHub() as down:
        down.stop()
    downloads = Downloads(make_settings(model_dir=tmp_path, hf_endpoint=down.url))
    downloads._pool = AtOnce()
    failures: list[str] = []

    def fetch() -> None:
        try:
            downloads.fetch("hub-loras/absent", "LoRA adapter", lambda listing: "")
        except FetchFailed as exc:
            failures.append(exc.reason)

    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the fetch never returned"
    assert len(failures) == 1


# -- HF_HUB_OFFLINE=1: today's errors, and the hub is never asked -----------------------


def test_offline_a_missing_safety_checker_fails_the_load(make_settings, model_dir, tmp_path, hub):
    folder = copy_models(model_dir, tmp_path, TINY_SD)
    before = len(hub.requests)
    settings = make_settings(model_dir=folder, hf_hub_offline=True, hf_endpoint=hub.url)
    with serving(settings) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        response = client.post("/text-to-image", json=SMALL)
    assert response.status_code == 500
    message = response.json()["detail"]["msg"]
    assert f"safety checker: model {TINY_SAFETY_CHECKER} is not in MODEL_DIR=" in message
    assert "SAFETY_CHECKER=false" in message
    assert len(hub.requests) == before


def test_offline_a_missing_lora_is_400_as_before(make_settings, model_dir, tmp_path, hub):
    folder = copy_models(model_dir, tmp_path, TINY_SD)
    before = len(hub.requests)
    settings = make_settings(
        model_dir=folder, hf_hub_offline=True, hf_endpoint=hub.url, safety_checker=False
    )
    with serving(settings) as client:
        response = client.post("/text-to-image", json={**SMALL, "loras": json.dumps({LORA: 1})})
    assert response.status_code == 400
    assert response.json()["detail"]["msg"] == f"loras: adapter {LORA} is not in MODEL_DIR."
    assert len(hub.requests) == before


@pytest.mark.parametrize(
    ("env", "offline"),
    [
        ({"HF_HUB_OFFLINE": "1"}, True),
        ({"HF_HUB_OFFLINE": "ON"}, True),
        ({"HF_HUB_OFFLINE": "yes"}, True),
        ({"HF_HUB_OFFLINE": "True"}, True),
        ({"HF_HUB_OFFLINE": "0"}, False),
        ({"HF_HUB_OFFLINE": "false"}, False),
        ({"HF_HUB_OFFLINE": "anything"}, False),
        ({"TRANSFORMERS_OFFLINE": "1"}, True),
        ({}, False),
    ],
)
def test_hf_hub_offline_is_read_as_huggingface_hub_reads_it(monkeypatch, env, offline):
    """huggingface_hub/constants.py: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) in 1/ON/YES/TRUE."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings(pipeline="text-to-image").hf_hub_offline is offline


def test_hf_endpoint_and_token_are_read_once_in_settings(monkeypatch):
    monkeypatch.setenv("PIPELINE", "text-to-image")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    settings = load_settings(registered_pipelines())
    assert settings.hf_endpoint == "http://127.0.0.1:9"
    assert settings.hub_token == "hf_secret"
    assert "hf_secret" not in repr(settings)
    monkeypatch.setenv("HF_ENDPOINT", "huggingface.co")
    with pytest.raises(SettingsError, match="invalid setting HF_ENDPOINT='huggingface.co'"):
        load_settings(registered_pipelines())
