"""SFAST and DEEPCACHE on image-to-video (Stable Video Diffusion's spatio-temporal UNet), on
the tiny SVD: the same rules, warm-up and checks as the image pipelines in
test_acceleration.py.

ai-runner compiles its SVD pipeline with stable-fast and applies DeepCache's
``DeepCacheSDHelper`` to it (runner/src/runner/pipelines/image_to_video.py,
ImageToVideoPipeline.__init__; optim/sfast.py compile_model, optim/deepcache.py
enable_deepcache).
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from conftest import serving, wait_for_status
from helpers import max_pixel_difference, pixels
from PIL import Image

from pipelines.compilers import StableFast
from tiny_models import TINY_SVD

FIELDS = {"width": "96", "height": "64", "num_inference_steps": "2", "seed": "4"}


def png() -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def video(client, **fields) -> list[str]:
    data = {**FIELDS, **fields}
    response = client.post("/image-to-video", files={"image": ("i.png", png())}, data=data)
    assert response.status_code == 200, response.text
    return [frame["url"] for frame in response.json()["frames"][0]]


def svd_settings(make_settings, **overrides):
    values = dict(pipeline="image-to-video", model_id=TINY_SVD, safety_checker=False)
    return make_settings(**(values | overrides))


@pytest.fixture(scope="module")
def plain(make_settings):
    with serving(svd_settings(make_settings)) as client:
        yield client


def test_stable_fast_compiles_svd_while_loading_and_gives_the_plain_frames(
    make_settings, plain, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    settings = svd_settings(
        make_settings,
        sfast=True,
        warmup=True,
        image_size_max=96,
        warmup_sizes="96x64",
        compile_cache_dir=tmp_path,
    )
    with serving(settings, wait=False) as client:
        assert client.get("/health").json()["status"] == "LOADING"
        assert wait_for_status(client, {"IDLE", "ERROR"}) == "IDLE"
        acceleration = client.app.state.runtime.pipeline.acceleration
        assert isinstance(acceleration.compiler, StableFast)
        graphs = acceleration.compiled_graphs()
        assert graphs >= 1  # compiled by the warm-up, before /health said IDLE
        frames = video(client)
        assert acceleration.compiled_graphs() == graphs  # 96x64 was warmed up
        expected = video(plain)
        assert len(frames) == len(expected) > 1
        assert all(max_pixel_difference(a, b) <= 2 for a, b in zip(frames, expected, strict=True))
        text = client.get("/metrics").text
    assert 'runner_acceleration_info{compiler="stable-fast",deepcache="false"} 1.0' in text
    assert "runner_compiled_model_active 1.0" in text and "runner_recompiles_total 0.0" in text
    assert (
        "SFAST: compiling with stable-fast (UNetSpatioTemporalConditionModel denoiser"
        in caplog.text
    )
    line = next(r.message for r in caplog.records if r.message.startswith("warm-up took"))
    assert "96x96" in line and "96x64" in line


def deep_runs(client, **fields) -> tuple[list[bytes], int]:
    """The frames of one video, and how many times the UNet's deepest resnet ran for it."""
    resnet = client.app.state.runtime.pipeline.pipe.unet.mid_block.resnets[0]
    calls = []
    handle = resnet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        frames = video(client, **fields)
    finally:
        handle.remove()
    return [pixels(url) for url in frames], len(calls)


def test_deepcache_on_svd_runs_the_deep_blocks_every_third_step_and_is_reset_per_request(
    make_settings, plain, caplog
):
    caplog.set_level(logging.INFO)
    plain_frames, unet_runs = deep_runs(plain, num_inference_steps="12")
    assert unet_runs == 12  # Euler: one UNet run a step (guidance batched into it)
    with serving(svd_settings(make_settings, deepcache=True)) as client:
        assert client.app.state.runtime.pipeline.acceleration.deepcache is not None
        frames, runs = deep_runs(client, num_inference_steps="12")
        assert runs == 4  # in full at steps 0, 3, 6 and 9
        assert frames != plain_frames
        assert deep_runs(client, num_inference_steps="12")[0] == frames
        few_frames, few_runs = deep_runs(client, num_inference_steps="2")
        assert few_runs == 2  # below DEEPCACHE_MIN_STEPS: in full
        assert few_frames == deep_runs(plain, num_inference_steps="2")[0]
        deep_runs(client, num_inference_steps="15")
        assert deep_runs(client, num_inference_steps="12")[0] == frames
        text = client.get("/metrics").text
    assert 'runner_acceleration_info{compiler="none",deepcache="true"} 1.0' in text
    assert "DEEPCACHE: on for requests of 10 denoising steps or more" in caplog.text
    assert "DEEPCACHE off for this request: 2 denoising steps" in caplog.text


def test_torch_compile_of_svds_unet_gives_the_plain_frames(make_settings, plain, tmp_path):
    import torch

    from pipelines.compilers import TorchCompile

    settings = svd_settings(
        make_settings,
        sfast=True,
        compiler="torch",
        torch_compile_backend="eager",  # the compiler's path, without minutes of codegen
        warmup=True,
        image_size_max=96,  # the warm-up's size: 96x96
        compile_cache_dir=tmp_path,
    )
    try:
        with serving(settings) as client:
            acceleration = client.app.state.runtime.pipeline.acceleration
            assert isinstance(acceleration.compiler, TorchCompile)
            graphs = acceleration.compiled_graphs()
            assert graphs >= 1
            frames = video(client, height="96")
            assert acceleration.compiled_graphs() == graphs
            expected = video(plain, height="96")
            pairs = zip(frames, expected, strict=True)
            assert all(max_pixel_difference(a, b) <= 2 for a, b in pairs)
            assert "runner_compiled_model_active 1.0" in client.get("/metrics").text
    finally:
        torch._dynamo.reset()
