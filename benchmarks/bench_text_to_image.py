"""What the runner adds to a text-to-image request, measured side by side in one run.

Prints Markdown tables (paste them into the README):

1. end-to-end latency of ``POST /text-to-image`` at 1024x576 over HTTP against the bare
   diffusers call with the same arguments, and the runner's overhead split into its parts;
2. the time to encode one 1024x576 image with the runner's PNG encoder and with Pillow;
3. ``/health`` latency, polled every 100 ms while a long inference runs.

Runs on the tiny SD model (built into a temporary folder unless ``--model-dir`` has it), on
the CPU or a GPU, whichever torch finds. Runs are interleaved so drift hits both sides.

    python benchmarks/bench_text_to_image.py --runs 7
"""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Runner,
    arguments,
    median_ms,
    percentile,
    server_timing,
    timed,
    tiny_models,
)

from runner.media.encoding import png_bytes
from runner.settings import Settings
from tiny_models import TINY_SAFETY_CHECKER, TINY_SD

WIDTH, HEIGHT = 1024, 576


def main() -> None:
    parser = arguments(__doc__, runs=7, port=8911)
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per request")
    args = parser.parse_args()

    from runner.logs import configure_logging, quiet_progress_bars

    configure_logging(verbose=False)
    import torch
    from diffusers import AutoPipelineForText2Image

    from pipelines.safety_checker import SafetyChecker
    from pipelines.text_to_image import TextToImage, TextToImageParams

    model_dir = tiny_models(args.model_dir, [TINY_SD, TINY_SAFETY_CHECKER])
    settings = Settings(
        pipeline="text-to-image",
        model_id=TINY_SD,
        model_dir=model_dir,
        safety_checker_id=TINY_SAFETY_CHECKER,
    )
    torch.set_num_threads(settings.torch_threads)
    quiet_progress_bars()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    bare = AutoPipelineForText2Image.from_pretrained(
        TINY_SD,
        cache_dir=model_dir,
        local_files_only=True,
        torch_dtype=dtype,
        safety_checker=None,
        requires_safety_checker=False,
    ).to(device)
    bare.set_progress_bar_config(disable=True)
    request = {"prompt": "a lighthouse at dusk", "seed": 1, "num_inference_steps": args.steps}

    def run_bare():
        generator = torch.Generator(device).manual_seed(1)
        return bare(
            prompt=request["prompt"],
            width=WIDTH,
            height=HEIGHT,
            guidance_scale=7.5,
            num_inference_steps=args.steps,
            num_images_per_prompt=1,
            generator=[generator],
        ).images

    image = run_bare()[0]
    runner = Runner(
        args.port,
        PIPELINE="text-to-image",
        MODEL_ID=TINY_SD,
        MODEL_DIR=str(model_dir),
        SAFETY_CHECKER_ID=TINY_SAFETY_CHECKER,
    )
    client = httpx.Client(base_url=runner.url, timeout=600)
    try:
        bare_samples, e2e, parts = [], [], {"queue": [], "inference": [], "encode": []}
        client.post("/text-to-image", json=request).raise_for_status()
        for _ in range(args.runs):  # interleaved, so drift hits both sides alike
            bare_samples += timed(run_bare, 1)
            started = time.perf_counter()
            response = client.post("/text-to-image", json=request)
            e2e.append(time.perf_counter() - started)
            response.raise_for_status()
            for name, value in server_timing(response.headers["server-timing"]).items():
                parts[name].append(value)

        checker = SafetyChecker(settings, device, dtype)
        safety = timed(lambda: checker([image]), args.runs)
        pipeline = TextToImage(settings)
        params_json = TextToImageParams(**request).model_dump_json()
        validation = timed(
            lambda: pipeline.check(TextToImageParams.model_validate_json(params_json)), 200
        )
        model_ms = median_ms(parts["inference"]) - median_ms(safety)
        transport_ms = median_ms(e2e) - sum(median_ms(parts[p]) for p in parts)
        overhead = median_ms(e2e) - model_ms
        device_name = (
            torch.cuda.get_device_name()
            if device == "cuda"
            else f"CPU, {settings.torch_threads} torch thread(s)"
        )

        print(
            f"### text-to-image {WIDTH}x{HEIGHT}, {args.steps} steps, tiny SD, {device_name}, "
            f"median of {args.runs}\n"
        )
        print("| what | ms |\n|---|---:|")
        print(f"| bare diffusers call | {median_ms(bare_samples):.1f} |")
        print(f"| runner, end to end over HTTP | {median_ms(e2e):.1f} |")
        difference = median_ms(e2e) - median_ms(bare_samples)
        print(f"| (runner minus bare call; noisy, two processes) | {difference:.1f} |")
        print(f"| model time inside the runner | {model_ms:.1f} |")
        print(f"| **runner overhead** (end to end minus model time) | **{overhead:.1f}** |")
        print(f"| - validation (parse + checks) | {median_ms(validation):.2f} |")
        print(f"| - queueing | {median_ms(parts['queue']):.1f} |")
        print(f"| - safety check | {median_ms(safety):.1f} |")
        print(f"| - encoding (PNG + base64 + JSON) | {median_ms(parts['encode']):.1f} |")
        print(f"| - HTTP and the rest | {transport_ms:.1f} |")

        print(f"\n### encoding one {WIDTH}x{HEIGHT} image (median of {args.runs})\n")
        print("| encoder | ms | bytes |\n|---|---:|---:|")
        encoders = {
            "runner (Sub filter, ISA-L deflate level 1)": lambda: png_bytes(image),
            "Pillow PNG, default settings": lambda: _pil(image, None),
            "Pillow PNG, compress_level=1": lambda: _pil(image, 1),
            "Pillow PNG, compress_level=0 (stored)": lambda: _pil(image, 0),
        }
        for name, encode in encoders.items():
            print(f"| {name} | {median_ms(timed(encode, args.runs)):.1f} | {len(encode()):,} |")

        print("\n### /health while a long inference runs (polled every 100 ms)\n")
        long_request = {**request, "num_inference_steps": 60}
        worker = threading.Thread(target=lambda: client.post("/text-to-image", json=long_request))
        worker.start()
        polls = []
        with httpx.Client(base_url=runner.url, timeout=10) as poller:
            while worker.is_alive():
                started = time.perf_counter()
                poller.get("/health")
                polls.append(time.perf_counter() - started)
                time.sleep(0.1)
        worker.join()
        print("| polls | median ms | p99 ms | max ms |\n|---:|---:|---:|---:|")
        print(
            f"| {len(polls)} | {median_ms(polls):.1f} | {percentile(polls, 0.99) * 1000:.1f} | "
            f"{max(polls) * 1000:.1f} |"
        )
    finally:
        client.close()
        runner.stop()


def _pil(image, level: int | None) -> bytes:
    buffer = io.BytesIO()
    options = {} if level is None else {"compress_level": level}
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
