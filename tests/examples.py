"""A tiny model and a small valid request for every pipeline, shared by the tests that
reach every route (fuzzing, the group installs, the worker emulation)."""

from __future__ import annotations

import io

import numpy as np
from helpers import encode_audio, tone
from PIL import Image

from tiny_models import (
    TINY_BLIP,
    TINY_MMS_TTS,
    TINY_SAM2,
    TINY_SD,
    TINY_SVD,
    TINY_UPSCALER,
    TINY_WHISPER,
)

TINY = {
    "text-to-image": TINY_SD,
    "image-to-image": TINY_SD,
    "image-to-video": TINY_SVD,
    "upscale": TINY_UPSCALER,
    "image-to-text": TINY_BLIP,
    "audio-to-text": TINY_WHISPER,
    "segment-anything-2": TINY_SAM2,
    "text-to-speech": TINY_MMS_TTS,
}


def image(size: tuple[int, int] = (32, 32), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt)
    return buffer.getvalue()


def wav(rate: int = 16_000, seconds: float = 0.5) -> bytes:
    return encode_audio(tone(seconds, rate), rate, "wav", "pcm_s16le")


# A valid request per pipeline: positive cases replace a few of its fields with generated
# values, so most of them reach the model with one odd value rather than failing the first
# check. Values are as sent: JSON for the JSON routes, form fields and files for multipart.
VALID = {
    "text-to-image": {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1},
    "image-to-image": {"prompt": "a cat", "image": image((64, 64)), "num_inference_steps": 2},
    "image-to-video": {
        "image": image((64, 64)),
        "width": 64,
        "height": 64,
        "num_inference_steps": 1,
    },
    "upscale": {"prompt": "a cat", "image": image((16, 16)), "num_inference_steps": 1},
    "image-to-text": {"image": image((16, 16))},
    "segment-anything-2": {
        "image": image((16, 16)),
        "point_coords": "[[4, 4]]",
        "point_labels": "[1]",
    },
    "audio-to-text": {"audio": wav()},
    "text-to-speech": {"text": "hello"},
}
