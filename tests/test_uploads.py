"""The shared image decoder, on the cases that do not need a model."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from runner.errors import PayloadTooLarge, UnsupportedMedia
from runner.uploads import decode_image

LIMIT = 40_000_000


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encoded(image, "JPEG", exif=exif.tobytes()), LIMIT)
    assert decoded.size == (20, 60)


def test_gif_gives_its_first_frame_in_rgb():
    frames = [Image.new("P", (10, 10), i) for i in (1, 2)]
    frames[0].putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(data, LIMIT)
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (255, 0, 0)


def test_alpha_is_dropped():
    decoded = decode_image(encoded(Image.new("RGBA", (4, 4), (1, 2, 3, 0)), "PNG"), LIMIT)
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (1, 2, 3)


def test_unsupported_formats_and_bombs_are_refused():
    with pytest.raises(UnsupportedMedia, match="image format TIFF is not supported"):
        decode_image(encoded(Image.new("RGB", (4, 4)), "TIFF"), LIMIT)
    with pytest.raises(PayloadTooLarge, match="image is 300x300 pixels"):
        decode_image(encoded(Image.new("RGB", (300, 300)), "PNG"), 300 * 299)
