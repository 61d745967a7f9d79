"""Decoding the runner's answers in tests, and waiting for a condition."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image

PREFIX = "data:image/png;base64,"


def decode_image(url: str) -> Image.Image:
    assert url.startswith(PREFIX), url[:40]
    image = Image.open(io.BytesIO(base64.b64decode(url[len(PREFIX) :])))
    assert image.format == "PNG"
    image.load()
    return image


def pixels(url: str) -> bytes:
    return decode_image(url).tobytes()


def max_pixel_difference(url_a: str, url_b: str) -> int:
    a = np.asarray(decode_image(url_a), dtype=np.int16)
    b = np.asarray(decode_image(url_b), dtype=np.int16)
    assert a.shape == b.shape
    return int(np.abs(a - b).max())


def encode_audio(
    samples: np.ndarray, rate: int, container: str, codec: str, with_video: bool = False
) -> bytes:
    """Encode mono float samples with PyAV into ``container`` with ``codec``."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        video = output.add_stream("mpeg4", rate=10) if with_video else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if video is not None:
            for _ in range(10):
                frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
                output.mux(video.encode(frame.reformat(format="yuv420p")))
            output.mux(video.encode(None))
        kind = stream.format.name
        scale = {"s16": 32767, "s16p": 32767, "s32p": 2**31 - 2**16}.get(kind)
        pcm = (
            (samples * scale).astype(np.int32 if kind == "s32p" else np.int16) if scale else samples
        )
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[start : start + 1024].reshape(1, -1)),
                format=kind,
                layout="mono",
            )
            frame.sample_rate = rate
            frame.pts = start
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def tone(seconds: float, rate: int = 16_000, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def denoiser_calls(client, body: dict, path: str = "/text-to-image") -> int:
    """How many times the denoiser (UNet or transformer) ran for one JSON request (with
    classifier-free guidance the conditional and unconditional halves share one call)."""
    pipe = client.app.state.runtime.pipeline.pipe
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    calls = []
    handle = denoiser.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
    finally:
        handle.remove()
    return len(calls)


@contextmanager
def image_sizes_given(owner: Any, method: str) -> Iterator[list[tuple[int, int]]]:
    """The size of the image each call of ``owner.method`` is given (its ``images`` or first
    argument, or that list's first), noted while the calls go through unchanged: what a
    pipeline hands its preprocessing."""
    original = getattr(owner, method)
    sizes: list[tuple[int, int]] = []

    def noting(*args: Any, **kwargs: Any) -> Any:
        images = kwargs["images"] if "images" in kwargs else args[0]
        sizes.append((images[0] if isinstance(images, list) else images).size)
        return original(*args, **kwargs)

    setattr(owner, method, noting)
    try:
        yield sizes
    finally:
        delattr(owner, method)


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened within {timeout} s: {what}"
        time.sleep(0.01)


def cpu_seconds_during(seconds: float) -> float:
    """The CPU time this process spends over the next ``seconds``: a measurement window,
    for asserting that nothing runs on."""
    began = time.process_time()
    time.sleep(seconds)
    return time.process_time() - began


def long_text_to_image(cpu_steps: int) -> dict:
    """A text-to-image request that keeps the tiny SD busy for seconds at 1024x576 on this
    machine: the CPU's ``cpu_steps``, or the scheduler's most (1000) where a GPU runs each in
    milliseconds."""
    import torch

    steps = 1000 if torch.cuda.is_available() else cpu_steps
    return {
        "prompt": "a cat",
        "width": 1024,
        "height": 576,
        "num_inference_steps": steps,
        "seed": 1,
    }
