"""Encoding generated media for the wire.

The worker decodes what it receives and re-encodes what it stores, so the runner's PNGs
are written for speed: every row gets PNG's "Sub" filter (one vectorised numpy step) and
the rows are deflated at level 1 by ISA-L (``isal``), several times faster than zlib at the
same size. A 1024x576 image takes about a tenth of Pillow's default PNG time; see
``benchmarks/bench_text_to_image.py``.

Several images (a video's frames) are encoded on a small shared thread pool: numpy's steps
and ISA-L's deflate release the GIL, and so does ``pybase64`` (the standard library's
base64 holds it, and is six times slower), so the frames of one answer encode in parallel;
see ``benchmarks/bench_video_frames.py``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pybase64
from isal import isal_zlib
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # mode -> (PNG colour type, bytes)
FILTER_SUB = 1
MAX_ENCODER_THREADS = 8


def _chunk(tag: bytes, data: bytes) -> bytes:
    checksum = isal_zlib.crc32(data, isal_zlib.crc32(tag))
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", checksum)


def png_bytes(image: Image.Image) -> bytes:
    """A valid 8-bit PNG of ``image`` (L, RGB or RGBA; other modes are converted to RGB)."""
    if image.mode not in COLOUR_TYPES:
        image = image.convert("RGB")
    colour_type, channels = COLOUR_TYPES[image.mode]
    width, height = image.size
    pixels = np.asarray(image, dtype=np.uint8).reshape(height, width * channels)
    rows = np.empty((height, width * channels + 1), dtype=np.uint8)
    rows[:, 0] = FILTER_SUB
    rows[:, 1 : 1 + channels] = pixels[:, :channels]
    np.subtract(pixels[:, channels:], pixels[:, :-channels], out=rows[:, 1 + channels :])
    data = isal_zlib.compress(rows.data, 1)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def data_url(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{pybase64.b64encode_as_string(payload)}"


def png_data_url(image: Image.Image) -> str:
    return data_url(png_bytes(image), "image/png")


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use (a container's)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Threads start on first use; concurrent answers share the pool, so it stays bounded.
_ENCODER_POOL = ThreadPoolExecutor(
    min(MAX_ENCODER_THREADS, _usable_cores()), thread_name_prefix="png-encoder"
)


def png_data_urls(images: Sequence[Image.Image]) -> list[str]:
    """Each image as a PNG data URL, in order; several are encoded in parallel."""
    if len(images) < 2:
        return [png_data_url(image) for image in images]
    return list(_ENCODER_POOL.map(png_data_url, images))
