"""text-to-image: any diffusers text-to-image pipeline that the auto pipeline resolves."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from pipelines import checks
from pipelines.base import Route
from pipelines.diffusion import (
    DiffusionPipeline,
    GeneratedImages,
    generators,
    image_seeds,
    prompt_slots,
    split_prompt,
)
from runner.errors import InvalidInput
from runner.schemas import ImageResponse, optional_int

log = logging.getLogger("pipelines.text_to_image")


class TextToImageParams(BaseModel):
    model_id: str = Field("", description="Hugging Face model ID used for image generation.")
    loras: str = Field(
        "",
        description=(
            "A LoRA (Low-Rank Adaptation) model and its corresponding weight for image "
            'generation. Example: { "latent-consistency/lcm-lora-sdxl": 1.0, '
            '"nerijs/pixel-art-xl": 1.2}.'
        ),
    )
    prompt: str = Field(
        description=(
            "Text prompt(s) to guide image generation. Separate multiple prompts with '|' "
            "if supported by the model."
        )
    )
    height: int = Field(576, description="The height in pixels of the generated image.")
    width: int = Field(1024, description="The width in pixels of the generated image.")
    guidance_scale: float = Field(
        7.5,
        description=(
            "Encourages model to generate images closely linked to the text prompt (higher "
            "values may reduce image quality)."
        ),
    )
    negative_prompt: str = Field(
        "",
        description=(
            "Text prompt(s) to guide what to exclude from image generation. Ignored if "
            "guidance_scale < 1."
        ),
    )
    safety_check: bool = Field(
        True,
        description=(
            "Perform a safety check to estimate if generated images could be offensive or harmful."
        ),
    )
    seed: int | None = optional_int("Seed for random number generation.")
    num_inference_steps: int = Field(
        50,
        description=(
            "Number of denoising steps. More steps usually lead to higher quality images but "
            "slower inference. Modulated by strength."
        ),
    )
    num_images_per_prompt: int = Field(1, description="Number of images to generate per prompt.")


class TextToImage(DiffusionPipeline[TextToImageParams]):
    route = Route(
        path="/text-to-image",
        operation_id="genTextToImage",
        summary="Text To Image",
        description="Generate images from text prompts.",
        params=TextToImageParams,
        response=ImageResponse,
        sdk_name="textToImage",
        example={"prompt": "a lighthouse at dusk", "width": 512, "height": 512, "seed": 1},
    )

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image

    def load(self) -> None:
        super().load()
        self.prompt_slots = prompt_slots(self.pipe)

    def warmup(self) -> None:
        s = self.settings
        self.predict(
            TextToImageParams(
                prompt="warm-up",
                width=min(max(1024, s.image_size_min), s.image_size_max),
                height=min(max(576, s.image_size_min), s.image_size_max),
                num_inference_steps=1,
                seed=0,
            )
        )

    def check(self, params: TextToImageParams) -> None:
        s = self.settings
        checks.non_empty("prompt", params.prompt)
        checks.image_side("width", params.width, s.image_size_min, s.image_size_max)
        checks.image_side("height", params.height, s.image_size_min, s.image_size_max)
        checks.in_range("num_inference_steps", params.num_inference_steps, 1, s.max_inference_steps)
        checks.in_range(
            "num_images_per_prompt", params.num_images_per_prompt, 1, s.max_images_per_request
        )
        checks.in_range("guidance_scale", params.guidance_scale, 0, s.max_guidance_scale)
        checks.seed(params.seed)
        if params.loras.strip() not in ("", "{}"):
            raise InvalidInput("loras: LoRA adapters are not supported by this runner yet.")

    def predict(self, params: TextToImageParams) -> GeneratedImages:
        count = params.num_images_per_prompt
        seeds = image_seeds(params.seed, count)
        kwargs = split_prompt("prompt", params.prompt, self.prompt_slots)
        if params.negative_prompt:
            kwargs |= split_prompt("negative_prompt", params.negative_prompt, self.prompt_slots)
        images = self.pipe(
            **kwargs,
            width=params.width,
            height=params.height,
            guidance_scale=params.guidance_scale,
            num_inference_steps=params.num_inference_steps,
            num_images_per_prompt=count,
            generator=generators(self.device, seeds),
        ).images
        nsfw = self.nsfw_flags(images, params.safety_check)
        return GeneratedImages(images=images, seeds=seeds, nsfw=nsfw)
