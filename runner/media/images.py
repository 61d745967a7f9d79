"""Decoding uploaded images, bounded by the operator's pixel limit."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

from runner.cancellation import checkpoint
from runner.errors import PayloadTooLarge, RunnerError, UnsupportedMedia

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
# The runner's own pixel limit (MAX_IMAGE_PIXELS, checked on the header before any pixel is
# decoded) replaces Pillow's, which refuses large images with an error that does not say
# their size, and would also refuse images the operator's limit allows.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """An RGB image, upright per its EXIF orientation; GIFs give their first frame.

    Whatever Pillow raises on malformed bytes (its plugins raise many kinds) means the upload
    is not a decodable image: ``UnsupportedMedia``, with Pillow's reason.
    """
    try:
        return _decode_image(data, max_pixels)
    except (RunnerError, MemoryError):
        raise
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            "image could not be decoded: not a PNG, JPEG, WebP, GIF or BMP."
        ) from None
    except Exception as exc:
        reason = str(exc).rstrip(".") or type(exc).__name__
        raise UnsupportedMedia(f"image could not be decoded: {reason}.") from None


def _decode_image(data: bytes, max_pixels: int) -> Image.Image:
    image = Image.open(io.BytesIO(data))  # reads the header only
    if image.format not in IMAGE_FORMATS:
        raise UnsupportedMedia(
            f"image format {image.format} is not supported: send PNG, JPEG, WebP, GIF or BMP."
        )
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} pixels; the limit is {max_pixels} pixels in all."
        )
    checkpoint()
    image.load()
    checkpoint()
    return ImageOps.exif_transpose(image).convert("RGB")
