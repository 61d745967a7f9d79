"""Encoding generated media for the wire.

The worker decodes and re-encodes what it stores, so PNGs are written with a low zlib level:
most of the reference runner's overhead was spent compressing images nobody keeps.
"""

from __future__ import annotations

import base64
import io

from PIL import Image

PNG_COMPRESS_LEVEL = 1


def png_bytes(image: Image.Image, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def data_url(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def png_data_url(image: Image.Image) -> str:
    return data_url(png_bytes(image), "image/png")
