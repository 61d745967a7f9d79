"""SFAST and DEEPCACHE measured: denoising steps per second plain, compiled (stable-fast and
torch.compile) and with DeepCache; warm-up time cold and from the compile cache; and the
PSNR of each mode's image against the plain one (same seed, same latents).

Every mode runs in a fresh child process through the runner's own ``pipelines.acceleration``
(the code that serves requests), on the pipeline's UNet and scheduler with classifier-free
guidance. The warm-up is the compile setup plus a first one-step run; a compiled mode runs
twice, first with an empty compile cache (cold), then on the cache the first run filled.

    python benchmarks/bench_acceleration.py                 # tiny SD and SDXL, this machine
    python benchmarks/bench_acceleration.py --full-size     # on a GPU

``--full-size`` swaps in SD 1.5 and SDXL UNets built from their real configs (random
weights, fp16 on CUDA), so speed is measured at the real size without downloading anything;
the rest of the pipeline (text encoders, VAE) stays tiny and is not timed. Images are the
final latents decoded by the pipeline's VAE; with random weights, PSNR says how far a mode
moves the result, not how good it looks.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The real UNet configs (unet/config.json of runwayml/stable-diffusion-v1-5 and
# stabilityai/stable-diffusion-xl-base-1.0), so --full-size needs no hub access.
SD15_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}
SDXL_UNET = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}
MODELS = {  # name: (tiny pipeline id, full-size UNet config, image side)
    "sd15": ("tiny-random/stable-diffusion-v1-5", SD15_UNET, 512),
    "sdxl": ("tiny-random/stable-diffusion-xl", SDXL_UNET, 1024),
}
MODES = {  # name: (SFAST, DEEPCACHE, COMPILER)
    "plain": (False, False, "auto"),
    "stable-fast": (True, False, "stable-fast"),
    "torch.compile": (True, False, "torch"),
    "DeepCache": (False, True, "auto"),
}
GUIDANCE = 7.5


def build(model: str, full_size: bool, model_dir: Path, device: str) -> tuple[Any, dict]:
    """The pipeline (its UNet full-size when asked) and the UNet's conditioning inputs."""
    import torch
    from diffusers import AutoPipelineForText2Image, UNet2DConditionModel

    tiny_id, config, _ = MODELS[model]
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = AutoPipelineForText2Image.from_pretrained(
        tiny_id, cache_dir=model_dir, local_files_only=True, safety_checker=None
    )
    if full_size:
        torch.manual_seed(0)
        with torch.device(device):
            pipe.unet = UNet2DConditionModel.from_config(config)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    unet = pipe.unet.config
    generator = torch.Generator().manual_seed(1)
    conditioning: dict[str, Any] = {
        "encoder_hidden_states": torch.randn(2, 77, unet.cross_attention_dim, generator=generator)
    }
    if unet.addition_embed_type == "text_time":
        pooled = unet.projection_class_embeddings_input_dim - 6 * unet.addition_time_embed_dim
        conditioning["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, pooled, generator=generator),
            "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]] * 2),
        }
    return pipe, _to(conditioning, device, dtype)


def _to(value: Any, device: str, dtype: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to(item, device, dtype) for key, item in value.items()}
    return value.to(device, dtype)


def denoise(pipe: Any, conditioning: dict, side: int, steps: int) -> Any:
    """The denoising loop of a text-to-image pipeline: classifier-free guidance, the
    pipeline's scheduler, its UNet called as diffusers calls it."""
    import torch

    unet, scheduler = pipe.unet, pipe.scheduler
    device, dtype = unet.device, unet.dtype
    scheduler.set_timesteps(steps, device=device)
    shape = (1, unet.config.in_channels, side // 8, side // 8)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        both = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        noise = unet(both, t, **conditioning, return_dict=False)[0]
        unconditional, text = noise.chunk(2)
        noise = unconditional + GUIDANCE * (text - unconditional)
        latents = scheduler.step(noise, t, latents, return_dict=False)[0]
    return latents


def child(args: argparse.Namespace) -> None:
    """One mode in this process: warm up, time ``--runs`` runs, save the image."""
    import numpy as np
    import torch

    from pipelines.acceleration import Acceleration
    from runner.settings import Settings

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(Settings(pipeline="text-to-image").torch_threads)
    sfast, deepcache, compiler = MODES[args.child]
    pipe, conditioning = build(args.model, args.full_size, args.model_dir, device)
    side = MODELS[args.model][2]
    settings = Settings(
        pipeline="text-to-image",
        model_id=MODELS[args.model][0],
        model_dir=args.model_dir,
        sfast=sfast,
        deepcache=deepcache,
        compiler=compiler,
        compile_cache_dir=args.cache,
    )

    def run(steps: int) -> Any:
        result = acceleration.run(
            lambda: denoise(pipe, conditioning, side, steps), steps, f"{side}x{side}"
        )
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    started = time.perf_counter()
    acceleration = Acceleration.setup(settings, pipe, None, device)
    with acceleration.warming_up():
        run(1)
    warmup = time.perf_counter() - started
    seconds = []
    for _ in range(args.runs):
        started = time.perf_counter()
        latents = run(args.steps)
        seconds.append(time.perf_counter() - started)
    with torch.inference_mode():
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    image = pipe.image_processor.postprocess(decoded.float(), output_type="np")[0]
    np.save(args.out, (image * 255).round().astype(np.uint8))
    failed = acceleration.report.compile_failed
    print(
        json.dumps(
            {
                "warmup": warmup,
                "steps_per_s": args.steps / statistics.median(seconds),
                "compiled_as_asked": not failed,
            }
        )
    )


def run_child(args: argparse.Namespace, mode: str, model: str, cache: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--model", model]
    command += ["--model-dir", str(args.model_dir), "--cache", str(cache), "--out", str(out)]
    command += ["--steps", str(args.steps), "--runs", str(args.runs)]
    command += ["--full-size"] if args.full_size else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{mode} on {model} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def psnr(image: Any, reference: Any) -> float:
    import numpy as np

    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def machine() -> str:
    import os

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--full-size", action="store_true", help="real-size SD 1.5/SDXL UNets")
    parser.add_argument("--models", default="sd15,sdxl")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.child:
        child(args)
        return

    import numpy as np

    from runner.logs import quiet_progress_bars
    from tiny_models import build as build_tiny

    quiet_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="bench-acceleration-"))
    if args.model_dir is None:
        args.model_dir = work / "models"
        build_tiny(args.model_dir, only=[MODELS[name][0] for name in MODELS])
    size = "full-size, random weights" if args.full_size else "tiny"
    print(f"#### SFAST and DEEPCACHE, {size}, {args.steps} steps, on {machine()}\n")
    print("| model | mode | steps/s | vs plain | warm-up cold s | warm-up cached s | PSNR dB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        side = MODELS[model][2]
        plain_rate, plain_image = None, None
        for mode in args.modes.split(","):
            cache, out = work / f"cache-{model}-{mode}", work / f"{model}-{mode}.npy"
            cold = run_child(args, mode, model, cache, out)
            compiled = MODES[mode][0]
            cached = run_child(args, mode, model, cache, out) if compiled else cold
            image = np.load(out)
            rate = cached["steps_per_s"]
            if mode == "plain":
                plain_rate, plain_image = rate, image
            speedup = f"{rate / plain_rate:.2f}x" if plain_rate else ""
            quality = f"{psnr(image, plain_image):.1f}" if mode != "plain" else ""
            warm = (f"{cold['warmup']:.1f}", f"{cached['warmup']:.1f}" if compiled else "")
            note = "" if cached["compiled_as_asked"] else " (fell back: see the log)"
            print(
                f"| {model} {side}x{side} | {mode}{note} | {rate:.2f} | {speedup} | {warm[0]} "
                f"| {warm[1]} | {quality} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
