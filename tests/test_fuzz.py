"""Fuzzing: schemathesis against every pipeline's served OpenAPI document on its tiny model,
and a table of bad files against every route that takes an upload.

Schemathesis generates requests from the document the runner serves (schema-valid ones, and
ones that break it) and checks each answer: no 5xx, a status the route declares, a body that
matches the declared schema, an answer within ``CALL_TIMEOUT`` seconds. Runs are bounded and
derandomized, so CI sees the same requests each time; set ``FUZZ_EXAMPLES_SCALE`` (e.g. 20)
to search longer locally. What it found is kept as plain regression tests beside the code it
fixed (test_uploads.py, test_upscale.py, test_text_to_speech.py).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
import schemathesis
from conftest import serving
from examples import TINY, VALID, image, wav
from fastapi.testclient import TestClient
from helpers import encode_audio, tone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp

from pipelines.registry import REGISTRY
from tiny_models import RECIPES

# Small limits keep every request the checks accept cheap on a CPU.
LIMITS = {
    "image_size_max": 128,
    "max_inference_steps": 2,
    "max_images_per_request": 2,
    "max_new_tokens": 4,
    "max_text_chars": 200,
    "upscale_max_input_pixels": 64 * 64,
    "image_pixel_budget": 64 * 64,
    "max_audio_seconds": 5,
    "max_image_pixels": 1_000_000,
}
SCALE = int(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))
EXAMPLES = {
    "segment-anything-2": 16,
    "audio-to-text": 8,
    "image-to-video": 12,
}  # the slow ones; others DEFAULT
DEFAULT_EXAMPLES = 40
NEGATIVE_EXAMPLES = 25
CALL_TIMEOUT = 60  # seconds; an answer later than this is a hang
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The bearer scheme is published so clients send a token; AUTH_TOKEN is unset here, so
# leaving the header out is not a schema violation the runner could refuse.
CONFIG = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})


# Odd values of each type, likelier to pass the schema and hit a model edge than random ones.
ODD = {
    "image": st.sampled_from(
        [image((1, 1)), image((3, 130)), image((8, 8), "GIF", "P"), image((9, 7), "JPEG", "L")]
    ),
    "audio": st.sampled_from(
        [wav(seconds=0.01), wav(8_000), encode_audio(tone(0.2), 16_000, "flac", "flac")]
    ),
    int: st.sampled_from([0, 1, 2, 3, 4, 63, 64, 128, 2**63, -(2**63) - 1]) | st.integers(-2, 130),
    float: st.sampled_from([0.0, 1.0, 1e-300, 1 - 1e-16, 50.0, 1e308])
    | st.floats(-1, 60, allow_nan=False),
    str: st.sampled_from(
        [
            "",
            " ",
            "|",
            "a|b|c|d",
            "123",
            "\u008a",
            "[]",
            "[[]]",
            "{}",
            "null",
            "[[4, 4]]",
            "[1]",
            "[[0, 0], [16, 16]]",
            "[1, 0]",
            "[0, 0, 8, 8]",
            "[8, 8, 0, 0]",
            "[[1e308, 1]]",
            "[[[0]]]",
            '{"duration": 0.5}',
            '{"duration": "x"}',
            "word",
            "false",
            "sentence",
        ]
    )
    | st.text(max_size=8),
}


@dataclass
class Served:
    client: TestClient  # the app, loaded and idle
    schema: Any  # schemathesis' view of the OpenAPI document it serves


def without_lifespan(app: ASGIApp) -> ASGIApp:
    """``app`` as schemathesis reaches it: its lifespan stays with the TestClient that started
    it, since schemathesis' pytest plugin ends the lifespans it starts after each test."""

    async def hidden(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)

    return hidden


@pytest.fixture(scope="module")
def served(make_settings) -> Iterator[Callable[[str], Served]]:
    """One loaded app per pipeline, started on first use and shared by the tests below."""
    apps: dict[str, Served] = {}
    with ExitStack() as stack:

        def get(pipeline: str) -> Served:
            if pipeline not in apps:
                values = make_settings(pipeline=pipeline, model_id=TINY[pipeline], **LIMITS)
                client = stack.enter_context(serving(values))
                assert client.get("/health").json() == {"status": "IDLE"}
                app = without_lifespan(client.app)
                schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
                apps[pipeline] = Served(client, schema)
            return apps[pipeline]

        yield get


def test_every_registered_pipeline_is_fuzzed():
    assert set(VALID) == set(REGISTRY), "add the new pipeline's VALID request (tests/examples.py)"
    unknown = {pipeline: model for pipeline, model in TINY.items() if model not in RECIPES}
    assert not unknown, f"the registry names tiny models that tiny_models lacks: {unknown}"


def vary(data: st.DataObject, valid: dict, generated: dict) -> dict:
    """``valid`` with one or two fields set to an odd value or to the generated one."""
    body = dict(valid)
    fields = sorted(set(valid) | set(generated))
    for name in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True)):
        value = generated.get(name, valid.get(name))
        odd = ODD.get(name, ODD.get(type(value)))
        if odd is not None and (name not in generated or data.draw(st.integers(0, 3))):
            value = data.draw(odd)
        body[name] = value
    return body


def fuzz(operation: Any, mode: GenerationMode, valid: dict, examples: int) -> None:
    @settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        if mode.is_positive and isinstance(case.body, dict):
            case.body = vary(data, valid, case.body)
        case.call_and_validate(checks=CHECKS, timeout=CALL_TIMEOUT)

    run()


@pytest.mark.parametrize("pipeline", sorted(TINY))
def test_schemathesis_finds_no_failure(served, pipeline):
    target = served(pipeline)
    for result in target.schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "GET":  # no parameters: nothing to negate
            fuzz(operation, GenerationMode.POSITIVE, {}, 1)
            continue
        fuzz(
            operation,
            GenerationMode.POSITIVE,
            VALID[pipeline],
            EXAMPLES.get(pipeline, DEFAULT_EXAMPLES),
        )
        fuzz(operation, GenerationMode.NEGATIVE, {}, NEGATIVE_EXAMPLES)
    assert target.client.get("/health").json() == {"status": "IDLE"}


# -- bad uploads --------------------------------------------------------------------------


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_claiming(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height``, with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def zip_of_html() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html><script>alert(1)</script></html>")
    return buffer.getvalue()


def wav_claiming(rate: int, samples: int = 800) -> bytes:
    """A 16-bit mono WAV whose header says ``rate`` samples per second."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * 2) % 2**32, 2, 16)
    data = b"\x00\x10" * samples
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def video_without_audio() -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        video = output.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            output.mux(video.encode(frame.reformat(format="yuv420p")))
        output.mux(video.encode(None))
    return buffer.getvalue()


def one_bit_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
NOT_AN_IMAGE = "image could not be decoded: not a PNG, JPEG, WebP, GIF or BMP."
NOT_AUDIO = "audio could not be decoded: Invalid data found when processing input."

# (id, file, the status the error carries, exact message); a route that does not declare
# the status answers 400 with the same message.
BAD_IMAGES: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("zero-byte", lambda: b"", 415, "image is empty."),
    (
        "truncated-png",
        lambda: image()[: len(image()) * 6 // 10],
        415,
        "image could not be decoded: image file is truncated.",
    ),
    (
        "truncated-jpeg",
        lambda: image(fmt="JPEG")[:100],
        415,
        "image could not be decoded: Truncated File Read.",
    ),
    (
        "huge-dimensions",
        lambda: png_claiming(100_000, 100_000),
        413,
        "image is 100000x100000 pixels; the limit is 1000000 pixels in all.",
    ),
    ("text-file", lambda: b"hello, this is not a picture\n", 415, NOT_AN_IMAGE),
    ("pdf", lambda: PDF, 415, NOT_AN_IMAGE),
    (
        "tiff",
        lambda: image(fmt="TIFF"),
        415,
        "image format TIFF is not supported: send PNG, JPEG, WebP, GIF or BMP.",
    ),
    ("png-signature-then-zip", lambda: b"\x89PNG\r\n\x1a\n" + zip_of_html(), 415, NOT_AN_IMAGE),
    (
        "png-signature-then-html",
        lambda: b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
        415,
        NOT_AN_IMAGE,
    ),
    (
        "gif-js-polyglot",
        lambda: b"GIF89a/*\n\x00\x80\x00\x00" + b"\x00" * 6 + b"*/=1;alert(1);//",
        415,
        NOT_AN_IMAGE,
    ),
    (
        "decompression-bomb",
        lambda: one_bit_png(10_000, 10_000),
        413,
        "image is 10000x10000 pixels; the limit is 1000000 pixels in all.",
    ),
    (
        "metadata-bomb",
        lambda: png_claiming(
            4, 4, png_chunk(b"zTXt", b"c\x00\x00" + zlib.compress(bytes(8 << 20), 9))
        ),
        415,
        "image could not be decoded: Decompressed data too large for "
        "PngImagePlugin.MAX_TEXT_CHUNK.",
    ),
]
BAD_AUDIO: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("zero-byte", lambda: b"", 415, "audio is empty."),
    ("truncated-mp4", lambda: encode_audio(tone(0.5), 16_000, "mp4", "aac")[:2000], 415, NOT_AUDIO),
    (
        "huge-sample-rate",
        lambda: wav_claiming(2**31 - 1),
        415,
        "audio sample rate 2147483647 Hz is not supported: it must be between 1000 and 768000 Hz.",
    ),
    ("text-file", lambda: b"hello, this is not a recording\n", 415, NOT_AUDIO),
    ("pdf", lambda: PDF, 415, NOT_AUDIO),
    ("an-image", lambda: image(), 415, "audio file has no audio stream."),
    ("a-video-without-audio", video_without_audio, 415, "audio file has no audio stream."),
    (
        "riff-wave-then-html",
        lambda: b"RIFF\x00\x01\x00\x00WAVE<html>alert(1)</html>",
        415,
        NOT_AUDIO,
    ),
    ("id3-then-zip", lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00" + zip_of_html(), 415, NOT_AUDIO),
    (
        "decompression-bomb",  # 60 s of silence in a few kilobytes of FLAC
        lambda: encode_audio(np.zeros(16_000 * 60, np.float32), 16_000, "flac", "flac"),
        400,
        "audio is longer than the limit of 5 seconds.",
    ),
    (
        "one-hertz-bomb",  # 4000 samples at 1 Hz: 8 kB that resample to 18 hours
        lambda: wav_claiming(1, 4000),
        415,
        "audio sample rate 1 Hz is not supported: it must be between 1000 and 768000 Hz.",
    ),
]
# Every route that takes a file, the form fields a valid request adds, and the codes its
# reference entry declares beyond 400.
UPLOAD_ROUTES = {
    "image-to-image": ("image", {"prompt": "a cat"}, set()),
    "image-to-video": ("image", {"width": "64", "height": "64"}, set()),
    "upscale": ("image", {"prompt": "a cat"}, set()),
    "image-to-text": ("image", {}, {413}),
    "segment-anything-2": ("image", {"point_coords": "[[1, 1]]", "point_labels": "[1]"}, set()),
    "audio-to-text": ("audio", {}, {413, 415}),
}


def bad_upload_cases() -> Iterator[Any]:
    files = {"image": BAD_IMAGES, "audio": BAD_AUDIO}
    made = {
        kind: [(name, cache(make), *rest) for name, make, *rest in files[kind]] for kind in files
    }
    for pipeline, (field, _, declared) in UPLOAD_ROUTES.items():
        for name, make, status, message in made[field]:
            expected = status if status in declared | {400} else 400
            yield pytest.param(pipeline, make, expected, message, id=f"{pipeline}-{name}")


@pytest.mark.parametrize(("pipeline", "make", "status", "message"), list(bad_upload_cases()))
def test_bad_uploads_are_refused_with_the_declared_code_saying_why(
    served, pipeline, make, status, message
):
    field, form, _ = UPLOAD_ROUTES[pipeline]
    response = served(pipeline).client.post(
        f"/{pipeline}", files={field: ("upload", make())}, data=form
    )
    assert (response.status_code, response.json()) == (status, {"detail": {"msg": message}})
