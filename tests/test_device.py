"""Device and precision choice (a pure decision: it needs no GPU to test)."""

from __future__ import annotations

import pytest
import torch

from runner.device import (
    ModelFiles,
    Placement,
    choose_device,
    choose_placement,
    has_fp16_variant,
)


@pytest.fixture
def snapshot(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return tmp_path


def test_cpu_is_always_fp32(make_settings, snapshot):
    (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    placement = choose_placement(make_settings(bfloat16=True), "cpu", snapshot)
    assert (placement.dtype, placement.variant) == (torch.float32, None)


def test_cuda_uses_fp16_weights_when_the_model_ships_them(make_settings, snapshot):
    assert choose_placement(make_settings(), "cuda", snapshot).dtype == torch.float32
    (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    assert has_fp16_variant(snapshot)
    placement = choose_placement(make_settings(), "cuda", snapshot)
    assert (placement.dtype, placement.variant) == (torch.float16, "fp16")
    assert placement.describe() == "cuda/float16 (fp16 weights)"


def test_bfloat16_setting_wins_on_cuda(make_settings, snapshot):
    placement = choose_placement(make_settings(bfloat16=True), "cuda", snapshot)
    assert (placement.dtype, placement.variant) == (torch.bfloat16, None)


def test_device_follows_the_setting_and_what_is_there(make_settings):
    assert choose_device(make_settings(device="cpu")) == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device(make_settings()) == expected


def test_asking_for_cuda_fails_the_load_only_without_one(make_settings):
    from conftest import serving

    with serving(make_settings(device="cuda")) as client:
        if torch.cuda.is_available():
            assert client.get("/health").json() == {"status": "IDLE"}
            assert client.post("/text-to-image", json={"prompt": "a cat"}).status_code == 200
            return
        assert client.get("/health").json() == {"status": "ERROR"}
        response = client.post("/text-to-image", json={"prompt": "a cat"})
        assert "DEVICE=cuda but no CUDA device" in response.json()["detail"]["msg"]


def test_a_family_published_in_one_precision_gets_it_without_a_variant(make_settings, snapshot):
    (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    placement = choose_placement(make_settings(), "cuda", snapshot)
    files = ModelFiles("org/model", snapshot, "cuda", placement, snapshot)
    bf16 = files.with_dtype("bfloat16")
    assert bf16.placement == Placement("cuda", torch.bfloat16, None)
    assert (bf16.repo, bf16.path) == (files.repo, files.path)
