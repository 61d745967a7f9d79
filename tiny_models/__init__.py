"""Tiny random-weight models of the real architectures, written into a hub cache.

Tests and the README's quick start load these through exactly the path a real model takes
(``from_pretrained`` on the hub cache in ``MODEL_DIR``). Each is built deterministically
from a seed, with real tokenizer files, under an id that says what it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.util import find_spec
from pathlib import Path

from runner.hub import cached_snapshot
from runner.logs import quiet_progress_bars
from tiny_models import diffusion, flow_matching, lora, parler, speech, video, vision
from tiny_models.hub_layout import snapshot_folder

log = logging.getLogger("tiny_models")


@dataclass(frozen=True)
class Recipe:
    build: Callable[[Path, int], None]
    description: str
    version: str = "1"
    needs: str | None = None  # a package only its own environment has (an extra of its own)


TINY_SD = "tiny-random/stable-diffusion-v1-5"
TINY_SDXL = "tiny-random/stable-diffusion-xl"
TINY_SDXL_TURBO = "tiny-random/sdxl-turbo"
TINY_SDXL_LIGHTNING = "tiny-random/SDXL-Lightning"
TINY_SD3 = "tiny-random/stable-diffusion-3-medium-diffusers"
TINY_FLUX_SCHNELL = "tiny-random/FLUX.1-schnell"
TINY_UPSCALER = "tiny-random/stable-diffusion-x4-upscaler"
TINY_PIX2PIX = "tiny-random/instruct-pix2pix"
TINY_SD_LORA = "tiny-random/sd15-lora"
TINY_SDXL_LORA = "tiny-random/sdxl-lora"
TINY_SVD = "tiny-random/stable-video-diffusion-img2vid-xt"
TINY_SAFETY_CHECKER = "tiny-random/safety-checker"
TINY_SAFETY_CHECKER_STRICT = "tiny-random/safety-checker-flags-everything"
TINY_BLIP = "tiny-random/blip-image-captioning"
TINY_WHISPER = "tiny-random/whisper-large-v3"
TINY_SAM2 = "tiny-random/sam2-hiera"
TINY_SAM2_META = "tiny-random/sam2-hiera-large"
TINY_SAM2_META_HF = "tiny-random/sam2-hiera-large-hf"
TINY_MMS_TTS = "tiny-random/mms-tts-eng"
TINY_BARK = "tiny-random/bark"
TINY_PARLER = "tiny-random/parler-tts-large-v1"

RECIPES: dict[str, Recipe] = {
    TINY_SD: Recipe(diffusion.build_sd15, "Stable Diffusion 1.x pipeline (text-to-image)"),
    TINY_SDXL: Recipe(diffusion.build_sdxl, "Stable Diffusion XL pipeline (text-to-image)"),
    TINY_SDXL_TURBO: Recipe(diffusion.build_sdxl, "SDXL under a Turbo id (few-step defaults)"),
    TINY_SDXL_LIGHTNING: Recipe(
        diffusion.build_sdxl_lightning, "SDXL-Lightning 2/4/8-step UNets for the tiny SDXL"
    ),
    TINY_SD3: Recipe(flow_matching.build_sd3, "Stable Diffusion 3 (text-to-image)"),
    TINY_FLUX_SCHNELL: Recipe(flow_matching.build_flux_schnell, "FLUX.1 schnell (text-to-image)"),
    TINY_PIX2PIX: Recipe(diffusion.build_instruct_pix2pix, "InstructPix2Pix (image-to-image)"),
    TINY_SD_LORA: Recipe(partial(lora.build_lora, family="sd15"), "LoRA for the tiny SD 1.x UNet"),
    TINY_SDXL_LORA: Recipe(partial(lora.build_lora, family="sdxl"), "LoRA for the tiny SDXL UNet"),
    TINY_UPSCALER: Recipe(diffusion.build_x4_upscaler, "Stable Diffusion x4 upscaler (upscale)"),
    TINY_SVD: Recipe(video.build_svd, "Stable Video Diffusion img2vid-xt (image-to-video)"),
    TINY_SAFETY_CHECKER: Recipe(diffusion.build_safety_checker, "safety checker"),
    TINY_SAFETY_CHECKER_STRICT: Recipe(
        partial(diffusion.build_safety_checker, flag_everything=True),
        "safety checker that flags every image",
    ),
    TINY_BLIP: Recipe(vision.build_blip, "BLIP captioning model (image-to-text)"),
    TINY_WHISPER: Recipe(speech.build_whisper, "Whisper large-v3 architecture (audio-to-text)"),
    TINY_SAM2: Recipe(vision.build_sam2, "SAM 2 with a Hiera backbone (segment-anything-2)"),
    TINY_SAM2_META: Recipe(
        vision.build_sam2_meta, "SAM 2 as Meta's checkpoint and yaml (segment-anything-2)"
    ),
    TINY_SAM2_META_HF: Recipe(
        vision.build_sam2_meta_hf, "the same SAM 2 in transformers' format (its -hf twin)"
    ),
    TINY_MMS_TTS: Recipe(speech.build_vits, "MMS-TTS, a VITS model (text-to-speech)"),
    TINY_BARK: Recipe(speech.build_bark, "Bark with one voice preset (text-to-speech)"),
    TINY_PARLER: Recipe(
        parler.build_parler,
        "Parler-TTS, T5 and DAC (text-to-speech, parler extra)",
        needs="parler_tts",
    ),
}


def build(model_dir: Path, only: list[str] | None = None, seed: int = 0) -> list[str]:
    """Write the tiny models (all this environment can build, or those in ``only``) into
    ``model_dir``; their ids."""
    names = only or [n for n, r in RECIPES.items() if not r.needs or find_spec(r.needs)]
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise ValueError(f"unknown tiny models {unknown}; known: {', '.join(RECIPES)}")
    quiet_progress_bars()
    for name in names:
        recipe = RECIPES[name]
        folder = snapshot_folder(model_dir, name, recipe.version)
        recipe.build(folder, seed)
        log.info("wrote %s (%s) to %s", name, recipe.description, folder)
    return names


def ensure(model_dir: Path, model_ids: list[str]) -> list[str]:
    """Build those of the tiny models ``model_ids`` that ``model_dir`` lacks; their ids."""
    missing = [i for i in dict.fromkeys(model_ids) if not cached_snapshot(model_dir, i)]
    if missing:
        build(model_dir, only=missing)
    return missing
