"""Faults on every pipeline: the real torch exception types raised from inside the loaded
tiny model (a forward hook on its main module), and what the runner answers after them."""

from __future__ import annotations

import io

import pytest
import torch
from conftest import serving
from examples import TINY
from helpers import encode_audio, tone
from PIL import Image


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


DIFFUSION = {"prompt": "a cat", "num_inference_steps": "2", "seed": "1"}
WAV = encode_audio(tone(1.0), 16_000, "wav", "pcm_s16le")

# pipeline -> (request, the module that runs inside the model); its tiny model is TINY's
CASES = {
    "text-to-image": (
        {"json": {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2}},
        lambda p: p.pipe.unet,
    ),
    "image-to-image": (
        {"data": DIFFUSION, "files": {"image": ("i.png", png())}},
        lambda p: p.pipe.unet,
    ),
    "image-to-video": (
        {
            "data": {"width": "64", "height": "64", "num_inference_steps": "2"},
            "files": {"image": ("i.png", png())},
        },
        lambda p: p.pipe.unet,
    ),
    "upscale": (
        {"data": DIFFUSION, "files": {"image": ("i.png", png())}},
        lambda p: p.pipe.unet,
    ),
    "image-to-text": (
        {"files": {"image": ("i.png", png())}},
        lambda p: p.model.vision_model,  # generate() calls its parts, not the model's forward
    ),
    "segment-anything-2": (
        {
            "data": {"point_coords": "[[32, 24]]", "point_labels": "[1]"},
            "files": {"image": ("i.png", png())},
        },
        lambda p: p.model,
    ),
    "audio-to-text": (
        {"files": {"audio": ("a.wav", WAV)}},
        lambda p: p.asr.model,
    ),
    "text-to-speech": ({"json": {"text": "hello"}}, lambda p: p.speech.model),
}


OOM_IN_A_ROW = 5


def raising(exception: BaseException, times: int = 1):
    left = {"n": times}

    def hook(module, args):
        if left["n"] > 0:
            left["n"] -= 1
            raise exception

    return hook


@pytest.mark.parametrize("pipeline", sorted(CASES))
def test_out_of_memory_is_500_and_never_takes_the_runner_offline(make_settings, pipeline):
    """Out of memory is the request's size, not a broken device: however many in a row,
    /health stays IDLE and the next request is served (ai-runner never reports ERROR for it)."""
    request, module_of = CASES[pipeline]
    with serving(make_settings(pipeline=pipeline, model_id=TINY[pipeline])) as client:
        module = module_of(client.app.state.runtime.pipeline)
        oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        handle = module.register_forward_pre_hook(raising(oom, times=OOM_IN_A_ROW))
        try:
            for _ in range(OOM_IN_A_ROW):
                failed = client.post(f"/{pipeline}", **request)
                assert failed.status_code == 500
                assert failed.json() == {"detail": {"msg": "GPU out of memory."}}
                assert client.get("/health").json() == {"status": "IDLE"}
            served = client.post(f"/{pipeline}", **request)
            assert served.status_code == 200, served.text
        finally:
            handle.remove()


@pytest.mark.parametrize("pipeline", ["audio-to-text", "segment-anything-2", "text-to-image"])
def test_an_unrecoverable_device_error_is_500_and_health_error(make_settings, pipeline):
    request, module_of = CASES[pipeline]
    with serving(make_settings(pipeline=pipeline, model_id=TINY[pipeline])) as client:
        module = module_of(client.app.state.runtime.pipeline)
        error = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
        handle = module.register_forward_pre_hook(raising(error))
        try:
            response = client.post(f"/{pipeline}", **request)
        finally:
            handle.remove()
        assert response.status_code == 500
        assert "unrecoverable device error" in response.json()["detail"]["msg"]
        assert client.get("/health").json() == {"status": "ERROR"}
