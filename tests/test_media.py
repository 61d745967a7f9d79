"""The PNG encoder: what it writes decodes back to exactly the pixels it was given."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from helpers import decode_image, pixels
from PIL import Image

from runner.media.encoding import png_bytes, png_data_url, png_data_urls


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", [(1, 1), (3, 7), (1024, 576)])
def test_png_round_trips_exactly(mode, size):
    rng = np.random.default_rng(0)
    channels = len(mode)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    decoded = Image.open(io.BytesIO(png_bytes(image)))
    assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == size
    assert decoded.tobytes() == image.tobytes()


def test_other_modes_are_written_as_rgb():
    image = Image.new("P", (8, 8))
    image.putpalette([255, 0, 0] * 256)
    decoded = Image.open(io.BytesIO(png_bytes(image)))
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (255, 0, 0)


def test_smooth_images_compress():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    image = Image.fromarray(np.stack([ramp] * 3, axis=-1))
    assert len(png_bytes(image)) < image.width * image.height * 3 / 20


def test_png_data_url_round_trips():
    image = Image.new("RGB", (40, 24), (10, 200, 30))
    url = png_data_url(image)
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.getpixel((5, 5)) == (10, 200, 30)


def test_several_images_are_encoded_in_order():
    """Compared by their pixels: ISA-L's deflate may write the same rows as different (equally
    valid) streams from one call to the next, so the bytes of two encodings can differ."""
    images = [Image.new("RGB", (16 + i, 8), (i * 20, 0, 0)) for i in range(12)]
    urls = png_data_urls(images)
    assert [pixels(url) for url in urls] == [image.tobytes() for image in images]
    assert [decode_image(url).size for url in urls] == [image.size for image in images]
    assert [pixels(url) for url in png_data_urls(images[:1])] == [pixels(urls[0])]
    assert png_data_urls([]) == []


def test_answers_are_written_as_pydantic_would_write_them():
    import json

    from runner.runtime import answer_json
    from runner.schemas import ImageResponse, Media

    answer = ImageResponse(
        images=[Media(url="data:image/png;base64,iVBORw0KGgo=", seed=2**63 + 5, nsfw=True)]
    )
    assert json.loads(answer_json(answer)) == json.loads(answer.model_dump_json())
    # A seed past 64 bits is more than orjson writes: pydantic's writer takes over.
    huge = ImageResponse(images=[Media(url="data:,", seed=2**70, nsfw=False)])
    assert json.loads(answer_json(huge))["images"][0]["seed"] == 2**70
