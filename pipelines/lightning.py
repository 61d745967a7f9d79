"""SDXL-Lightning: its repository holds UNet weights only, so the SDXL base provides the rest
of the pipeline, and the scheduler steps on trailing timesteps as the model was distilled."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from pipelines.diffusion_families import LightningUNet
from runner.device import ModelFiles, prepare_model
from runner.hub import ModelNotFound, diffusers_files, fetch_missing, locate_model
from runner.settings import Settings

log = logging.getLogger("pipelines.diffusion")


def lightning_base(settings: Settings) -> ModelFiles:
    """The SDXL base, without its UNet, fetched where ``MODEL_DIR`` lacks it."""
    base = fetch_missing(
        settings,
        settings.sdxl_base_id,
        "the SDXL base of SDXL-Lightning, without its UNet",
        partial(diffusers_files, skip_weights=("unet",)),
    )
    return prepare_model(
        settings, repo=settings.sdxl_base_id, path=base, fp16_without_variant=False
    )


def load_lightning_unet(settings: Settings, base: ModelFiles, swap: LightningUNet) -> Any:
    """The SDXL base's UNet architecture with an SDXL-Lightning UNet's weights."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    weights = locate_model(settings.model_dir, swap.repo) / swap.filename
    if not weights.exists():
        raise ModelNotFound(
            f"{swap.filename} is not in {swap.repo} in MODEL_DIR={settings.model_dir}; "
            f"download it with `scripts/download_models.sh {settings.model_id}`"
        )
    config = UNet2DConditionModel.load_config(base.repo, subfolder="unet", **base.source)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    unet.load_state_dict(load_file(weights), assign=True)
    return unet.to(base.placement.dtype)


def use_trailing_scheduler(pipe: Any, swap: LightningUNet, base_repo: str, model_id: str) -> None:
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing"
    )
    log.info(
        "%s: UNet %s from %s in the %s base; scheduler %s on trailing timesteps",
        model_id,
        swap.filename,
        swap.repo,
        base_repo,
        type(pipe.scheduler).__name__,
    )
