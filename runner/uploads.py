"""Uploaded media: declared on a pipeline's request model, read and decoded here, once.

A multipart pipeline marks its file fields with ``Upload``; the HTTP layer turns them into
``File`` parameters, reads each within its size limit, decodes it off the event loop and
builds the request model with the decoded value (a PIL image for ``"image"``, a
``DecodedAudio`` for ``"audio"``). Decoding holds the request's place (a decode whose client
left keeps it until its thread ends) and stops at its next checkpoint once the request is
cancelled.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fastapi import UploadFile
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel

from runner.audio import decode_audio
from runner.cancellation import CancelScope, checkpoint, reset_scope, use_scope
from runner.errors import PayloadTooLarge, RunnerError, UnsupportedMedia
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.admission import Admission

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
# The runner's own pixel limit (MAX_IMAGE_PIXELS, checked on the header before any pixel is
# decoded) replaces Pillow's, which refuses large images with an error that does not say
# their size, and would also refuse images the operator's limit allows.
Image.MAX_IMAGE_PIXELS = None


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


def check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"{name} is too large: the limit is {limit} bytes.")


async def decode_upload(
    settings: Settings,
    admission: Admission,
    cancel: CancelScope | None,
    name: str,
    upload: Upload,
    file: UploadFile,
) -> Any:
    """The decoded upload, read within its size limit (see ``decode_data``)."""
    data = await file.read(size_limit(settings, upload.kind) + 1)
    return await decode_data(settings, admission, cancel, name, upload, data)


async def decode_data(
    settings: Settings,
    admission: Admission,
    cancel: CancelScope | None,
    name: str,
    upload: Upload,
    data: bytes,
) -> Any:
    """A file's bytes decoded on one of ``admission``'s threads beside the inference slots,
    with ``cancel`` current there."""
    check_size(name, len(data), size_limit(settings, upload.kind))
    if not data:
        raise UnsupportedMedia(f"{name} is empty.")
    if upload.kind == "audio":
        decode, bound = decode_audio, settings.max_audio_seconds
    else:
        decode, bound = decode_image, settings.max_image_pixels
    return await admission.run_beside(_within, cancel or CancelScope(), decode, data, bound)


def _within(cancel: CancelScope, decode: Any, data: bytes, bound: Any) -> Any:
    token = use_scope(cancel)
    try:
        return decode(data, bound)
    finally:
        reset_scope(token)
