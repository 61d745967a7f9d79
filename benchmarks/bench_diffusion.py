"""The diffusion family's per-request overhead, measured side by side in one run.

For each pipeline (and each text-to-image family), the same request three ways: the bare
diffusers pipeline call in this process, the runner end to end over HTTP, and the model
time the runner reports in ``Server-Timing``. The overhead is end to end minus model time:
upload decoding, queueing, PNG encoding and the HTTP exchange. The model time includes the
runner's safety check, which the bare call does not run.

Runs on the tiny models (built into a temporary folder unless ``--model-dir`` has them), on
the CPU or a GPU, whichever torch finds. Prints a Markdown table for the README.

    python benchmarks/bench_diffusion.py --runs 5
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Runner,
    arguments,
    measure_over_http,
    median_ms,
    timed,
    tiny_models,
)

from runner.settings import Settings
from tiny_models import (
    TINY_FLUX_SCHNELL,
    TINY_SAFETY_CHECKER,
    TINY_SD,
    TINY_SD3,
    TINY_SDXL,
    TINY_SDXL_LIGHTNING,
    TINY_SVD,
    TINY_UPSCALER,
)


@dataclass
class Case:
    label: str
    pipeline: str
    model_id: str
    fields: dict  # the request's form or JSON fields
    image: tuple[int, int] | None = None  # an uploaded image of this size
    bare: dict = field(default_factory=dict)  # the bare call's arguments besides the fields


def cases(steps: int) -> list[Case]:
    size = {"width": 1024, "height": 576}
    prompt = {"prompt": "a lighthouse at dusk", "seed": 1}
    return [
        Case("text-to-image, SD 1.5", "text-to-image", TINY_SD, prompt | size | {
            "num_inference_steps": steps}),
        Case("text-to-image, SDXL-Lightning 2-step", "text-to-image", TINY_SDXL_LIGHTNING,
             prompt | size, bare={"num_inference_steps": 2, "guidance_scale": 0.0}),
        Case("text-to-image, SD3", "text-to-image", TINY_SD3, prompt | size | {
            "num_inference_steps": steps}),
        Case("text-to-image, FLUX.1 schnell", "text-to-image", TINY_FLUX_SCHNELL, prompt | size,
             bare={"num_inference_steps": 4, "guidance_scale": 0.0}),
        Case("image-to-image, SD 1.5", "image-to-image", TINY_SD, prompt | {
            "num_inference_steps": steps, "strength": 0.5}, image=(1024, 576)),
        Case("upscale, x4 upscaler", "upscale", TINY_UPSCALER, prompt | {
            "num_inference_steps": steps}, image=(128, 72)),
        Case("image-to-video, SVD (4 frames of 256x256)", "image-to-video", TINY_SVD, {
            "width": 256, "height": 256, "num_inference_steps": 2, "seed": 1},
             image=(512, 288), bare={"decode_chunk_size": 4}),
    ]  # fmt: skip


def png(size: tuple[int, int]) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 12, (size[1], size[0], 3)).astype(np.float32)
    pixels = np.clip(gradient + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bare_call(case: Case, settings: Settings, upload: bytes | None):
    """The loaded diffusers pipeline called directly with the request's arguments."""
    from PIL import Image

    from pipelines.registry import pipeline_class

    runner_pipeline = pipeline_class(case.pipeline)(settings)
    runner_pipeline.load()
    pipe, device = runner_pipeline.pipe, runner_pipeline.device
    import torch

    kwargs = {k: v for k, v in case.fields.items() if k != "seed"} | case.bare
    if upload is not None:
        kwargs["image"] = Image.open(io.BytesIO(upload)).convert("RGB")

    def call():
        generator = torch.Generator(device=device).manual_seed(1)
        return pipe(**kwargs, generator=generator)

    return call


def main() -> None:
    parser = arguments(__doc__, runs=5, port=8931)
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per request")
    parser.add_argument("--only", nargs="+", metavar="LABEL_START", help="only these cases")
    args = parser.parse_args()

    from runner.logs import configure_logging, quiet_progress_bars

    configure_logging(verbose=False)
    quiet_progress_bars()
    import torch

    model_dir = tiny_models(
        args.model_dir,
        [TINY_SD, TINY_SDXL, TINY_SDXL_LIGHTNING, TINY_SD3, TINY_FLUX_SCHNELL, TINY_UPSCALER]
        + [TINY_SVD, TINY_SAFETY_CHECKER],
    )
    common_env = {
        "MODEL_DIR": str(model_dir),
        "SAFETY_CHECKER_ID": TINY_SAFETY_CHECKER,
        "SDXL_BASE_ID": TINY_SDXL,
    }

    rows = []
    chosen = [
        case
        for case in cases(args.steps)
        if not args.only or any(case.label.startswith(start) for start in args.only)
    ]
    for port, case in enumerate(chosen, start=args.port):
        upload = png(case.image) if case.image else None
        request = (
            {"json": case.fields}
            if upload is None
            else {"data": {k: str(v) for k, v in case.fields.items()}, "files": {"image": upload}}
        )
        env = common_env | {"PIPELINE": case.pipeline, "MODEL_ID": case.model_id}
        runner = Runner(port, **env)
        try:
            e2e, model = measure_over_http(runner.url, f"/{case.pipeline}", request, args.runs)
        finally:
            runner.stop()
        settings = Settings(
            pipeline=case.pipeline,
            model_id=case.model_id,
            model_dir=model_dir,
            sdxl_base_id=TINY_SDXL,
            safety_checker=False,
        )
        torch.set_num_threads(settings.torch_threads)
        call = bare_call(case, settings, upload)
        call()
        rows.append((case.label, median_ms(timed(call, args.runs)), e2e, model))

    device = "GPU" if torch.cuda.is_available() else "CPU"
    print(f"### diffusion overhead per pipeline ({device}, median of {args.runs}, ms)\n")
    print(
        "| pipeline, model | bare call | runner end to end | model time in runner | **overhead** |"
    )
    print("|---|---:|---:|---:|---:|")
    for label, bare_ms, e2e_ms, model_ms in rows:
        print(
            f"| {label} | {bare_ms:.1f} | {e2e_ms:.1f} | {model_ms:.1f} | "
            f"**{e2e_ms - model_ms:.1f}** |"
        )


if __name__ == "__main__":
    main()
