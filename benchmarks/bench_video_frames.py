"""Encoding a video's frames for the answer: serially against the runner's parallel encoder.

Prints Markdown tables (paste them into the README):

1. how much of each encoding step releases the GIL: the progress a pure-Python thread makes
   beside the step, against its progress alone (100%: the step never holds the GIL);
2. the time to encode 25 frames of 1024x576 (SVD-xt's video) as PNG data URLs: one after
   the other with the standard library's base64 (the runner before image-to-video), one
   after the other with the runner's encoder, and with the runner's parallel encoder
   (``png_data_urls``); then the whole answer as the runner writes it (JSON included).

The frames are smooth gradients that move from frame to frame, plus noise, so that they
compress as generated video does.

    python benchmarks/bench_video_frames.py --runs 7
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_ms, timed  # noqa: E402

from pipelines.image_to_video import GeneratedVideo  # noqa: E402
from runner.media import encoding  # noqa: E402
from runner.media.encoding import png_bytes, png_data_url, png_data_urls  # noqa: E402
from runner.runtime import answer_json  # noqa: E402

WIDTH, HEIGHT, FRAMES = 1024, 576, 25


def frames(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    made = []
    for i in range(count):
        shift = 6.0 * i
        base = np.stack(
            [
                128 + 100 * np.sin((x + shift) / 90) * np.cos(y / 70),
                (x + y + 2 * shift) / (WIDTH + HEIGHT) * 255,
                128 + 90 * np.cos((x - shift) / 130 + y / 110),
            ],
            axis=-1,
        )
        noisy = base + rng.normal(0, 4, base.shape)
        made.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return made


def stdlib_data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def gil_share(step, seconds: float = 0.5) -> tuple[float, float]:
    """The step's time alone (ms) and how far a Python thread gets beside it (1.0: as far
    as alone, the GIL released throughout)."""

    def spin(stop: threading.Event, count: list[int]) -> None:
        n = 0
        while not stop.is_set():
            n += 1
        count.append(n)

    def spin_for(duration: float, work=None) -> int:
        stop, count = threading.Event(), []
        thread = threading.Thread(target=spin, args=(stop, count))
        thread.start()
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            if work is None:
                time.sleep(0.001)
            else:
                work()
        stop.set()
        thread.join()
        return count[0]

    alone_ms = min(timed(step, 5)) * 1000
    shares = [spin_for(seconds, step) / spin_for(seconds) for _ in range(3)]
    return alone_ms, statistics.median(shares)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    video = frames(FRAMES)
    image = video[0]
    rows = np.asarray(image).reshape(HEIGHT, WIDTH * 3)
    raw = rows.tobytes()
    png = png_bytes(image)

    import pybase64
    from isal import isal_zlib

    print("### which encoding steps release the GIL (one 1024x576 frame)\n")
    print("| step | ms | a Python thread's progress beside it |\n|---|---:|---:|")
    for name, step in (
        ("Sub filter (numpy)", lambda: np.subtract(rows[:, 3:], rows[:, :-3])),
        ("deflate level 1 (ISA-L)", lambda: isal_zlib.compress(raw, 1)),
        ("base64 (standard library)", lambda: base64.b64encode(png)),
        ("base64 (pybase64)", lambda: pybase64.b64encode(png)),
    ):
        ms, share = gil_share(step)
        print(f"| {name} | {ms:.1f} | {share:.0%} |")

    threads = encoding._ENCODER_POOL._max_workers
    flags = [False] * FRAMES
    rows = [
        ("one after the other, standard library base64", lambda: list(map(stdlib_data_url, video))),
        ("one after the other, runner's encoder", lambda: list(map(png_data_url, video))),
        (f"**runner: `png_data_urls`, {threads} threads**", lambda: png_data_urls(video)),
        (
            "whole answer as the runner writes it (frames + JSON)",
            lambda: answer_json(GeneratedVideo(video, 1, flags).to_response()),
        ),
    ]
    png_data_urls(video)  # start the pool's threads
    sizes = sum(len(png_bytes(frame)) for frame in video)
    print(
        f"\n### encoding {FRAMES} frames of {WIDTH}x{HEIGHT} "
        f"({sizes / 1e6:.1f} MB of PNG), median of {args.runs}\n"
    )
    samples: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(args.runs):  # interleaved, so drift hits every row alike
        for name, call in rows:
            samples[name] += timed(call, 1)
    print("| encoder | ms | ms a frame |\n|---|---:|---:|")
    for name, _ in rows:
        ms = median_ms(samples[name])
        print(f"| {name} | {ms:.0f} | {ms / FRAMES:.1f} |")


if __name__ == "__main__":
    main()
