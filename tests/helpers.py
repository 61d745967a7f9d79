"""Decoding the runner's answers in tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

PREFIX = "data:image/png;base64,"


def decode_image(url: str) -> Image.Image:
    assert url.startswith(PREFIX), url[:40]
    image = Image.open(io.BytesIO(base64.b64decode(url[len(PREFIX) :])))
    assert image.format == "PNG"
    image.load()
    return image


def pixels(url: str) -> bytes:
    return decode_image(url).tobytes()


def max_pixel_difference(url_a: str, url_b: str) -> int:
    a = np.asarray(decode_image(url_a), dtype=np.int16)
    b = np.asarray(decode_image(url_b), dtype=np.int16)
    assert a.shape == b.shape
    return int(np.abs(a - b).max())
