"""Uploaded media: declared on a pipeline's request model, decoded here, once.

A pipeline marks its file fields with ``Upload``; the HTTP layer (``runner.routes``,
``runner.json_bodies``) reads each file or base64 string within its size limit and hands the
bytes to ``decode_data``, which decodes them off the event loop into the value the request
model holds (a PIL image for ``"image"``, a ``DecodedAudio`` for ``"audio"``). Decoding
holds the request's place (a decode whose client left keeps it until its thread ends) and
stops at its next checkpoint once the request is cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from runner.cancellation import CancelScope, reset_scope, use_scope
from runner.errors import PayloadTooLarge, UnsupportedMedia
from runner.media.audio import decode_audio
from runner.media.images import decode_image
from runner.settings import Settings

if TYPE_CHECKING:
    from runner.admission import Admission


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


def check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"{name} is too large: the limit is {limit} bytes.")


async def decode_data(
    settings: Settings,
    admission: Admission,
    cancel: CancelScope | None,
    name: str,
    upload: Upload,
    data: bytes,
) -> Any:
    """A file's bytes, checked against its size limit, decoded on one of ``admission``'s
    threads beside the inference slots, with ``cancel`` current there."""
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
