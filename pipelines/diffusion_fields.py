"""Request fields the diffusion pipelines share, described as the reference describes them,
and their checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pipelines import checks
from pipelines.lora import check_loras
from runner.schemas import optional_int
from runner.settings import Settings


def loras() -> Any:
    return Field(
        "",
        description=(
            "A LoRA (Low-Rank Adaptation) model and its corresponding weight for image "
            'generation. Example: { "latent-consistency/lcm-lora-sdxl": 1.0, '
            '"nerijs/pixel-art-xl": 1.2}.'
        ),
    )


def guidance_scale() -> Any:
    return Field(
        7.5,
        description=(
            "Encourages model to generate images closely linked to the text prompt (higher "
            "values may reduce image quality)."
        ),
    )


def negative_prompt() -> Any:
    return Field(
        "",
        description=(
            "Text prompt(s) to guide what to exclude from image generation. Ignored if "
            "guidance_scale < 1."
        ),
    )


def safety_check() -> Any:
    return Field(
        True,
        description=(
            "Perform a safety check to estimate if generated images could be offensive or harmful."
        ),
    )


def seed() -> Any:
    return optional_int("Seed for random number generation.")


def num_inference_steps(default: int) -> Any:
    return Field(
        default,
        description=(
            "Number of denoising steps. More steps usually lead to higher quality images but "
            "slower inference. Modulated by strength."
        ),
    )


def num_images_per_prompt() -> Any:
    return Field(1, description="Number of images to generate per prompt.")


def check_shared(settings: Settings, params: BaseModel) -> None:
    """Check the shared fields that ``params`` has, naming each in its message."""
    fields = type(params).model_fields
    if "prompt" in fields:
        checks.non_empty("prompt", params.prompt)
    checks.in_range(
        "num_inference_steps", params.num_inference_steps, 1, settings.max_inference_steps
    )
    if "num_images_per_prompt" in fields:
        checks.in_range(
            "num_images_per_prompt",
            params.num_images_per_prompt,
            1,
            settings.max_images_per_request,
        )
    for name in ("guidance_scale", "image_guidance_scale"):
        if name in fields:
            checks.in_range(name, getattr(params, name), 0, settings.max_guidance_scale)
    checks.seed(params.seed)
    if "loras" in fields:
        check_loras(params.loras, settings)
