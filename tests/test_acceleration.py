"""SFAST and DEEPCACHE on the tiny models: compiled output equals plain output, warm-up
happens while LOADING, DeepCache state lives one request, and the skip and failure rules."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import serving, wait_for_status
from helpers import max_pixel_difference, pixels
from PIL import Image

from pipelines.compilers import (
    StableFast,
    TorchCompile,
    choose_compiler,
    use_compile_cache,
)
from tiny_models import (
    TINY_BLIP,
    TINY_FLUX_SCHNELL,
    TINY_SD3,
    TINY_SD_LORA,
    TINY_SDXL_TURBO,
    TINY_UPSCALER,
)

REQUEST = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 1}


def generate(client, **fields) -> dict:
    response = client.post("/text-to-image", json={**REQUEST, **fields})
    assert response.status_code == 200, response.text
    return response.json()["images"][0]


def metrics(client) -> str:
    return client.get("/metrics").text


def pipeline_of(client):
    return client.app.state.runtime.pipeline


@pytest.fixture(scope="module")
def plain(make_settings):
    with serving(make_settings()) as client:
        yield client


def test_stable_fast_compiles_while_loading_and_gives_the_plain_images(
    make_settings, plain, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    settings = make_settings(
        sfast=True,
        deepcache=True,
        warmup=True,
        image_size_max=64,
        compile_cache_dir=tmp_path,
        safety_checker=False,
    )
    with serving(settings, wait=False) as client:
        assert client.get("/health").json()["status"] == "LOADING"
        assert wait_for_status(client, {"IDLE", "ERROR"}) == "IDLE"
        acceleration = pipeline_of(client).acceleration
        assert isinstance(acceleration.compiler, StableFast)
        graphs = acceleration.compiled_graphs()
        assert graphs >= 1  # compiled by the warm-up, before /health said IDLE
        compiled = generate(client)
        assert acceleration.compiled_graphs() == graphs  # the first request compiles nothing
        assert max_pixel_difference(compiled["url"], generate(plain)["url"]) <= 2
        text = metrics(client)
    assert 'runner_acceleration_info{compiler="stable-fast",deepcache="false"} 1.0' in text
    assert "runner_compile_failed 0.0" in text and "runner_recompiles_total 0.0" in text
    assert "runner_warmup_seconds" in text and "runner_compiled_model_active 1.0" in text
    assert "SFAST and DEEPCACHE cannot be combined" in caplog.text
    assert "SFAST: compiling with stable-fast (UNet2DConditionModel denoiser" in caplog.text
    assert "warm-up took" in caplog.text and "64x64" in caplog.text


def test_a_compile_failure_serves_uncompiled(make_settings, plain, tmp_path, caplog, monkeypatch):
    import sfast.jit.trace_helper

    caplog.set_level(logging.INFO)

    def cannot_trace(*args, **kwargs):
        raise RuntimeError("this model cannot be traced")

    monkeypatch.setattr(sfast.jit.trace_helper, "trace_with_kwargs", cannot_trace)
    settings = make_settings(
        sfast=True, warmup=True, image_size_max=64, compile_cache_dir=tmp_path, safety_checker=False
    )
    with serving(settings) as client:
        assert client.get("/health").json()["status"] == "IDLE"
        pipe = pipeline_of(client).pipe
        assert "forward" not in vars(pipe.unet) and "_call_impl" not in vars(pipe.vae.decoder)
        image = generate(client)
        assert pixels(image["url"]) == pixels(generate(plain)["url"])
        text = metrics(client)
    assert "runner_compile_failed 1.0" in text and "runner_compiled_model_active 0.0" in text
    assert 'runner_acceleration_info{compiler="none",deepcache="false"} 1.0' in text
    assert (
        "error: SFAST: stable-fast failed (RuntimeError: this model cannot be traced); "
        "serving uncompiled" in caplog.text
    )
    assert "safety checker off, uncompiled: SFAST failed)" in caplog.text


def test_torch_compile_is_the_fallback_and_counts_recompiles(
    make_settings, plain, tmp_path, caplog, monkeypatch
):
    import torch

    caplog.set_level(logging.INFO)
    monkeypatch.setitem(sys.modules, "sfast.compilers.diffusion_pipeline_compiler", None)
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(name, "unset")
    settings = make_settings(
        sfast=True,
        warmup=True,
        image_size_max=128,
        warmup_sizes="128x128",
        torch_compile_backend="eager",  # the compiler's path, without minutes of codegen
        compile_cache_dir=tmp_path,
        safety_checker=False,
    )
    try:
        with serving(settings) as client:
            acceleration = pipeline_of(client).acceleration
            assert isinstance(acceleration.compiler, TorchCompile)
            assert acceleration.compiled_graphs() == 1  # 128x128, the default and the setting
            assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
            image = generate(client)  # 64x64: not warmed up
            assert acceleration.compiled_graphs() > 1
            assert max_pixel_difference(image["url"], generate(plain)["url"]) <= 2
            text = metrics(client)
    finally:
        torch._dynamo.reset()
    assert "SFAST: compiling with torch.compile (stable-fast cannot be imported" in caplog.text
    assert "compiled for 64x64, a shape the warm-up did not cover" in caplog.text
    assert 'runner_acceleration_info{compiler="torch.compile",deepcache="false"} 1.0' in text
    assert "runner_recompiles_total 1.0" in text


def test_stable_fast_does_not_handle_transformer_denoisers():
    from diffusers import SD3Transformer2DModel

    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
    )
    pipe = SimpleNamespace(transformer=transformer)

    def settings(compiler: str):
        return SimpleNamespace(compiler=compiler, torch_compile_backend="inductor")

    compiler, why = choose_compiler(settings("auto"), pipe, "cpu")
    assert isinstance(compiler, TorchCompile)
    assert why == "stable-fast compiles UNet pipelines and this denoiser is a SD3Transformer2DModel"
    compiler, why = choose_compiler(settings("stable-fast"), pipe, "cpu")
    assert compiler is None and why.startswith("COMPILER=stable-fast but stable-fast compiles")


def test_deepcache_skips_transformer_denoisers(make_settings, caplog):
    caplog.set_level(logging.INFO)
    with serving(make_settings(model_id=TINY_FLUX_SCHNELL, deepcache=True)) as client:
        acceleration = pipeline_of(client).acceleration
        assert acceleration.deepcache is None and not acceleration.report.deepcache
        assert client.post("/text-to-image", json=REQUEST).status_code == 200
    assert (
        "DEEPCACHE skipped: DeepCache works on UNet denoisers and FluxPipeline's is a "
        "FluxTransformer2DModel"
    ) in caplog.text


def test_sd3_compiles_its_transformer_with_torch_compile(make_settings, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    settings = make_settings(
        model_id=TINY_SD3,
        sfast=True,
        warmup=True,
        torch_compile_backend="eager",
        image_size_max=64,
        compile_cache_dir=tmp_path,
    )
    with serving(settings) as client:
        acceleration = pipeline_of(client).acceleration
        assert isinstance(acceleration.compiler, TorchCompile)
        assert acceleration.compiled_graphs() >= 1
        assert client.post("/text-to-image", json=REQUEST).status_code == 200
    assert "SFAST: compiling with torch.compile (stable-fast compiles UNet pipelines" in caplog.text


def test_loras_are_refused_on_a_model_compiled_with_stable_fast(make_settings, tmp_path):
    settings = make_settings(sfast=True, compile_cache_dir=tmp_path, safety_checker=False)
    with serving(settings) as client:
        response = client.post(
            "/text-to-image", json=REQUEST | {"loras": json.dumps({TINY_SD_LORA: 1})}
        )
        assert response.status_code == 400
        assert response.json() == {
            "detail": {
                "msg": "loras: LoRA adapters cannot be applied to a model compiled with "
                "stable-fast (SFAST=true, COMPILER=stable-fast); the runner's operator can set "
                "COMPILER=torch."
            }
        }
        assert client.post("/text-to-image", json=REQUEST | {"loras": "{}"}).status_code == 200


def test_the_compile_cache_goes_where_the_setting_says(tmp_path, monkeypatch, caplog):
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(name, "before")
    use_compile_cache(tmp_path / "cache")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")
    (tmp_path / "blocked").write_text("a file, not a folder")
    use_compile_cache(tmp_path / "blocked")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "triton")
    assert "cannot be used" in caplog.text and "not kept across restarts" in caplog.text


def mid_block_runs(client, path: str, **request) -> tuple[bytes, int]:
    """The image of one request, and how many times the UNet's deepest resnet ran for it."""
    resnet = pipeline_of(client).pipe.unet.mid_block.resnets[0]
    calls = []
    handle = resnet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        response = client.post(path, **request)
        assert response.status_code == 200, response.text
    finally:
        handle.remove()
    return pixels(response.json()["images"][0]["url"]), len(calls)


@pytest.fixture(scope="module")
def deepcache_t2i(make_settings):
    with serving(make_settings(deepcache=True, safety_checker=False)) as client:
        yield client


def test_deepcache_runs_the_deep_blocks_every_third_step_and_is_reset_per_request(
    deepcache_t2i, plain
):
    def run(steps: int) -> tuple[bytes, int]:
        request = {"json": {**REQUEST, "num_inference_steps": steps}}
        return mid_block_runs(deepcache_t2i, "/text-to-image", **request)

    request = {"json": {**REQUEST, "num_inference_steps": 12}}
    plain_image, unet_runs = mid_block_runs(plain, "/text-to-image", **request)
    assert unet_runs == 13  # PNDM runs the UNet 13 times for 12 steps
    image, deep_runs = run(12)
    assert deep_runs == 5  # in full every third run: 0, 3, 6, 9 and 12
    assert image != plain_image
    assert run(12)[0] == image
    assert run(2)[1] == 3  # below DEEPCACHE_MIN_STEPS: all 3 runs (PNDM) in full
    assert run(12)[0] == image
    run(50)
    assert run(12)[0] == image


def test_deepcache_state_does_not_leak_between_image_to_image_requests(make_settings):
    """Requests that start at different steps: with DeepCache's helper kept enabled across
    requests, a request would start on the features cached by the one before it."""
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "PNG")

    def edit(client, strength: str) -> bytes:
        data = {"prompt": "autumn", "num_inference_steps": "30", "seed": "2", "strength": strength}
        request = {"files": {"image": ("i.png", buffer.getvalue())}, "data": data}
        image, _ = mid_block_runs(client, "/image-to-image", **request)
        return image

    settings = make_settings(pipeline="image-to-image", deepcache=True, safety_checker=False)
    with serving(settings) as client:
        edit(client, "0.5")  # denoises the last 15 of 30 steps
        after_another = edit(client, "0.65")  # the last 20
        assert edit(client, "0.65") == after_another


def test_deepcache_is_skipped_for_few_step_models(make_settings, caplog):
    settings = make_settings(model_id=TINY_SDXL_TURBO, deepcache=True, safety_checker=False)
    with serving(settings) as client:
        assert pipeline_of(client).acceleration.deepcache is None
        text = metrics(client)
    assert 'deepcache="false"' in text
    assert (
        f"DEEPCACHE skipped: {TINY_SDXL_TURBO} is a Turbo model (2 steps by default, below "
        "DEEPCACHE_MIN_STEPS=10); DeepCache only degrades few-step models" in caplog.text
    )


def test_flags_on_other_pipelines_are_ignored_with_a_warning(make_settings, caplog):
    settings = make_settings(pipeline="image-to-text", model_id=TINY_BLIP, sfast=True)
    with serving(settings) as client:
        assert client.get("/health").json()["status"] == "IDLE"
        assert 'runner_acceleration_info{compiler="none",deepcache="false"} 1.0' in metrics(client)
    assert (
        "SFAST=true: it applies to image-to-image, image-to-video, text-to-image, upscale only; "
        "ignored for image-to-text" in caplog.text
    )


def test_the_warm_up_runs_each_size_and_skips_those_the_pipeline_refuses(make_settings, caplog):
    caplog.set_level(logging.INFO)
    settings = make_settings(
        pipeline="upscale",
        model_id=TINY_UPSCALER,
        warmup=True,
        warmup_sizes="64x64,1024x1024",
        safety_checker=False,
    )
    with serving(settings) as client:
        assert client.get("/health").json()["status"] == "IDLE"
    assert "WARMUP_SIZES: 1024x1024 skipped: image is 1024x1024; upscale takes at most" in (
        caplog.text
    )
    line = next(r.message for r in caplog.records if r.message.startswith("warm-up took"))
    assert "128x128" in line and "64x64" in line and "1024x1024" not in line


def test_deepcache_that_cannot_be_imported_is_logged_and_the_model_served(
    make_settings, caplog, monkeypatch
):
    monkeypatch.setitem(sys.modules, "DeepCache", None)  # an import of it fails
    with serving(make_settings(deepcache=True)) as client:
        assert pipeline_of(client).acceleration.deepcache is None
        assert client.post("/text-to-image", json=REQUEST).status_code == 200
    assert "error: DEEPCACHE: DeepCache cannot be imported" in caplog.text
