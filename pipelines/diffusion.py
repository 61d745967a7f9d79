"""What every diffusers-based pipeline shares: loading, seeds, split prompts, the safety
checker, and the image answer."""

from __future__ import annotations

import inspect
import json
import logging
import random
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pipelines.base import ParamsT, Pipeline
from pipelines.diffusion_families import Family, family_of
from runner.device import prepare_model
from runner.errors import InvalidInput
from runner.hub import ModelNotFound, locate_model
from runner.media import png_data_urls
from runner.schemas import ImageResponse, Media
from runner.settings import Settings

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger("pipelines.diffusion")
MAX_PROMPTS = 3


@dataclass
class GeneratedImages:
    images: list[Image.Image]
    seeds: list[int]
    nsfw: list[bool]

    def to_response(self) -> ImageResponse:
        return ImageResponse(
            images=[
                Media(url=url, seed=seed, nsfw=flag)
                for url, seed, flag in zip(
                    png_data_urls(self.images), self.seeds, self.nsfw, strict=True
                )
            ]
        )


def image_seeds(seed: int | None, count: int) -> list[int]:
    """Image i of a request with seed s uses s + i; no seed picks one at random."""
    base = random.randrange(2**32) if seed is None else seed
    return [base + i for i in range(count)]


def generators(device: str, seeds: list[int]) -> list[torch.Generator]:
    import torch

    return [torch.Generator(device=device).manual_seed(s % 2**64) for s in seeds]


def prompt_slots(pipe: Any) -> int:
    """How many prompts the pipeline takes: 1, or 2-3 with several text encoders."""
    accepted = inspect.signature(pipe.__call__).parameters
    return 1 + sum(f"prompt_{i}" in accepted for i in range(2, MAX_PROMPTS + 1))


def split_prompt(field: str, text: str, slots: int) -> dict[str, str]:
    """``"a|b"`` -> ``{field: "a", field_2: "b"}`` for a pipeline with several text encoders.

    A pipeline with one text encoder takes the text as it is, ``|`` included.
    """
    if slots == 1:
        return {field: text}
    parts = [part.strip() for part in text.split("|")]
    if len(parts) > slots:
        raise InvalidInput(
            f"{field} has {len(parts)} '|'-separated prompts but this model takes at most {slots}."
        )
    return {field if i == 0 else f"{field}_{i + 1}": part for i, part in enumerate(parts)}


class DiffusionPipeline(Pipeline[ParamsT, GeneratedImages]):
    """A diffusers pipeline from ``MODEL_DIR``, plus the runner's shared safety checker."""

    pipe: Any = None
    safety_checker: SafetyChecker | None = None
    family: Family | None = None

    @abstractmethod
    def diffusers_class(self, model_index: dict) -> Any:
        """The diffusers class (or auto pipeline) that loads the model ``model_index`` says."""

    def load(self) -> None:
        settings = self.settings
        files = prepare_model(settings, fp16_without_variant=False)
        self.device, self.placement = files.device, files.placement
        index_file = files.path / "model_index.json"
        if not index_file.exists():
            raise ModelNotFound(
                f"{self.model_id} in {files.path} is not a diffusers pipeline (no model_index.json)"
            )
        model_index = json.loads(index_file.read_text())
        extra: dict[str, Any] = {}
        if "safety_checker" in model_index:
            # The runner checks images with its own, shared safety checker.
            extra.update(safety_checker=None, requires_safety_checker=False)
        log.info("loading %s from %s as %s", files.repo, files.path, self.placement.describe())
        pipe = self.diffusers_class(model_index).from_pretrained(
            files.repo,
            torch_dtype=self.placement.dtype,
            variant=self.placement.variant,
            **files.source,
            **extra,
        )
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.family = family_of(self.model_id)
        if self.family:
            log.info(
                "%s is a %s model: %d steps and guidance %g unless a request sets them",
                self.model_id,
                self.family.name,
                self.family.steps,
                self.family.guidance_scale,
            )
        if settings.safety_checker:
            self.safety_checker = SafetyChecker(settings, self.device, self.placement.dtype)

    def describe(self) -> str:
        return (
            f"{self.model_id} ({type(self.pipe).__name__}, {self.placement.describe()}, "
            f"safety checker {'on' if self.safety_checker else 'off'})"
        )

    def steps_and_guidance(self, params: BaseModel) -> tuple[int, float]:
        """The request's values, or the model family's where it left the contract default."""
        steps, guidance = params.num_inference_steps, params.guidance_scale
        if self.family is not None:
            defaults = type(params).model_fields
            if steps == defaults["num_inference_steps"].default:
                steps = self.family.steps
            if guidance == defaults["guidance_scale"].default:
                guidance = self.family.guidance_scale
        return steps, guidance

    def nsfw_flags(self, images: list[Image.Image], requested: bool) -> list[bool]:
        """Each image's flag from the safety checker; all false when not asked or turned off."""
        if requested and self.safety_checker is not None:
            return self.safety_checker(images)
        return [False] * len(images)

    def encode(self, output: GeneratedImages) -> ImageResponse:
        return output.to_response()


class SafetyChecker:
    """Flags NSFW images with the safety-checker model in ``MODEL_DIR``; images stay as they are."""

    def __init__(self, settings: Settings, device: str, dtype: torch.dtype) -> None:
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        model_id = settings.safety_checker_id
        try:
            path = locate_model(settings.model_dir, model_id)
        except ModelNotFound as exc:
            raise ModelNotFound(
                f"safety checker: {exc.message}; or set SAFETY_CHECKER=false to run without it"
            ) from None
        self.device, self.dtype = device, dtype
        self.model = StableDiffusionSafetyChecker.from_pretrained(
            model_id, cache_dir=settings.model_dir, local_files_only=True, dtype=dtype
        ).to(device)
        if (path / "preprocessor_config.json").exists():
            self.processor = CLIPImageProcessor.from_pretrained(
                model_id, cache_dir=settings.model_dir, local_files_only=True
            )
        else:  # CLIP's own preprocessing, which the checker was trained with
            self.processor = CLIPImageProcessor()

    def __call__(self, images: list[Image.Image]) -> list[bool]:
        import numpy as np
        import torch

        pixels = self.processor(images, return_tensors="pt").pixel_values
        with torch.inference_mode():
            _, flags = self.model(
                images=[np.asarray(image) for image in images],
                clip_input=pixels.to(self.device, self.dtype),
            )
        return [bool(flag) for flag in flags]
