"""Uploaded media: declared on a pipeline's request model, read and decoded here, once.

A multipart pipeline marks its file fields with ``Upload``; the HTTP layer turns them into
``File`` parameters, reads each within its size limit, decodes it off the event loop and
builds the request model with the decoded value (a PIL image for ``"image"``, a
``DecodedAudio`` for ``"audio"``).
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import UploadFile
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from runner.audio import decode_audio
from runner.errors import PayloadTooLarge, UnsupportedMedia
from runner.settings import Settings

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}


@dataclass(frozen=True)
class Upload:
    """Marks a request-model field as an uploaded file of the given kind."""

    kind: Literal["image", "audio"]
    description: str


def upload_fields(model: type[BaseModel]) -> dict[str, Upload]:
    return {
        name: marker
        for name, field in model.model_fields.items()
        for marker in field.metadata
        if isinstance(marker, Upload)
    }


def size_limit(settings: Settings, kind: str) -> int:
    return {"image": settings.max_image_bytes, "audio": settings.max_audio_bytes}[kind]


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """An RGB image, upright per its EXIF orientation; GIFs give their first frame."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            raise UnsupportedMedia(
                "image could not be decoded: not a PNG, JPEG, WebP, GIF or BMP."
            ) from None
    if image.format not in IMAGE_FORMATS:
        raise UnsupportedMedia(
            f"image format {image.format} is not supported: send PNG, JPEG, WebP or GIF."
        )
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} pixels; the limit is {max_pixels} pixels in all."
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMedia(f"image could not be decoded: {exc}.") from None


async def decode_upload(settings: Settings, name: str, upload: Upload, file: UploadFile) -> Any:
    limit = size_limit(settings, upload.kind)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"{name} is too large: the limit is {limit} bytes.")
    if not data:
        raise UnsupportedMedia(f"{name} is empty.")
    if upload.kind == "audio":
        return await asyncio.to_thread(decode_audio, data, settings.max_audio_seconds)
    return await asyncio.to_thread(decode_image, data, settings.max_image_pixels)
