"""The shared image and audio decoders, on the cases that do not need a model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import encode_audio, tone
from PIL import Image

from runner.errors import PayloadTooLarge, UnsupportedMedia
from runner.media.audio import decode_audio
from runner.media.images import decode_image

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


def noise(fmt: str, **options) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels), fmt, **options)


WEBP, BMP, PNG = noise("WEBP", lossless=True), noise("BMP"), noise("PNG")


# Found by mutating valid files: Pillow raised these from Image.open, past the decoder's
# handling, and the request got a 500.
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            PNG[:8] + (7).to_bytes(4, "big") + PNG[12:],
            "image could not be decoded: Truncated IHDR chunk.",
        ),
        (
            BMP[:14] + (54).to_bytes(4, "little") + BMP[18:],
            "image could not be decoded: Unsupported BMP header type (54).",
        ),
        (
            WEBP[:20] + b"\x00" + WEBP[21:],
            "image could not be decoded: could not create decoder object.",
        ),
    ],
    ids=["short-ihdr", "bmp-header-size", "webp-signature"],
)
def test_malformed_headers_are_undecodable_not_a_crash(data, message):
    with pytest.raises(UnsupportedMedia) as refused:
        decode_image(data, LIMIT)
    assert refused.value.message == message


def test_pixel_limit_is_checked_on_the_header_with_the_real_size():
    """Pillow's own bomb check used to answer these with "not a PNG, JPEG, ...": the limit is
    the runner's, and the message gives the size."""
    huge = encoded(Image.new("1", (10_000, 10_000)), "PNG")
    with pytest.raises(PayloadTooLarge) as refused:
        decode_image(huge, LIMIT)
    assert refused.value.message == (
        "image is 10000x10000 pixels; the limit is 40000000 pixels in all."
    )
    assert decode_image(huge, 10**8).size == (10_000, 10_000)


def without_id3(mp3: bytes) -> bytes:
    size = (mp3[6] << 21) | (mp3[7] << 14) | (mp3[8] << 7) | mp3[9]
    return mp3[10 + size :]


def test_audio_that_changes_sample_rate_midway_decodes():
    """Concatenated MP3s at two rates: PyAV's resampler refused the second part's frames
    (a ValueError, and a 500)."""
    first = encode_audio(tone(1.0, 16_000), 16_000, "mp3", "libmp3lame")
    second = encode_audio(tone(1.0, 24_000), 24_000, "mp3", "libmp3lame")
    audio = decode_audio(first + without_id3(second), 30)
    assert audio.duration == pytest.approx(2.0, abs=0.15)
