"""text-to-image: any diffusers text-to-image pipeline that the auto pipeline resolves."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from pipelines import checks
from pipelines import diffusion_fields as fields
from pipelines.base import Route
from pipelines.diffusion import PromptedDiffusion
from pipelines.generated_images import GeneratedImages, generators, image_seeds
from runner.schemas import ImageResponse

log = logging.getLogger("pipelines.text_to_image")


class TextToImageParams(BaseModel):
    model_id: str = Field("", description="Hugging Face model ID used for image generation.")
    loras: str = fields.loras()
    prompt: str = Field(
        description=(
            "Text prompt(s) to guide image generation. Separate multiple prompts with '|' "
            "if supported by the model."
        )
    )
    height: int = Field(576, description="The height in pixels of the generated image.")
    width: int = Field(1024, description="The width in pixels of the generated image.")
    guidance_scale: float = fields.guidance_scale()
    negative_prompt: str = fields.negative_prompt()
    safety_check: bool = fields.safety_check()
    seed: int | None = fields.seed()
    num_inference_steps: int = fields.num_inference_steps(50)
    num_images_per_prompt: int = fields.num_images_per_prompt()


class TextToImage(PromptedDiffusion[TextToImageParams]):
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

    architectures = (
        "StableDiffusionPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusion3Pipeline",
        "FluxPipeline",
    )

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import AutoPipelineForText2Image

        return AutoPipelineForText2Image

    def warmup_size(self) -> tuple[int, int]:
        s = self.settings
        defaults = TextToImageParams.model_fields
        width, height = (
            min(max(defaults[side].default, s.image_size_min), s.image_size_max)
            for side in ("width", "height")
        )
        return width, height

    def warmup_params(self, width: int, height: int) -> TextToImageParams:
        return TextToImageParams(
            prompt="warm-up", width=width, height=height, num_inference_steps=1, seed=0
        )

    def check(self, params: TextToImageParams) -> TextToImageParams:
        s = self.settings
        fields.check_shared(s, params)
        checks.image_side("width", params.width, s.image_size_min, s.image_size_max)
        checks.image_side("height", params.height, s.image_size_min, s.image_size_max)
        self.check_for_model(params)
        return params

    def predict(self, params: TextToImageParams) -> GeneratedImages:
        count = params.num_images_per_prompt
        seeds = image_seeds(params.seed, count)
        steps, guidance = self.steps_and_guidance(params)
        kwargs = self.prompts(params)
        with self.loras.applied(params.loras):
            images = self.generate(
                **kwargs,
                width=params.width,
                height=params.height,
                guidance_scale=guidance,
                num_inference_steps=steps,
                num_images_per_prompt=count,
                generator=generators(self.device, seeds),
            ).images
        nsfw = self.nsfw_flags(images, params.safety_check)
        return GeneratedImages(images=images, seeds=seeds, nsfw=nsfw)
