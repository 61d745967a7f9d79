"""upscale: Stable Diffusion's x4 upscaler; the answer is 4x the input in each side."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines import checks
from pipelines import diffusion_fields as fields
from pipelines.base import Route
from pipelines.diffusion import DiffusionPipeline
from pipelines.generated_images import GeneratedImages, generators, image_seeds
from runner.cancellation import legacy_step_callback
from runner.errors import InvalidInput
from runner.media.uploads import Upload
from runner.schemas import ImageResponse

log = logging.getLogger("pipelines.upscale")
SCALE = 4


class UpscaleParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    prompt: str = Field(description="Text prompt(s) to guide upscaled image generation.")
    image: Annotated[Image.Image, Upload("image", "Uploaded image to modify with the pipeline.")]
    model_id: str = Field(
        "", description="Hugging Face model ID used for upscaled image generation."
    )
    safety_check: bool = fields.safety_check()
    seed: int | None = fields.seed()
    num_inference_steps: int = fields.num_inference_steps(75)


class Upscale(DiffusionPipeline[UpscaleParams]):
    route = Route(
        path="/upscale",
        operation_id="genUpscale",
        summary="Upscale",
        description="Upscale an image by increasing its resolution.",
        params=UpscaleParams,
        response=ImageResponse,
        sdk_name="upscale",
        example={"prompt": "a sharp photograph", "seed": 1},
    )

    architectures = ("StableDiffusionUpscalePipeline",)

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import StableDiffusionUpscalePipeline

        return StableDiffusionUpscalePipeline

    def step_hooks(self) -> dict[str, Any]:
        return {"callback": legacy_step_callback, "callback_steps": 1}

    def warmup_size(self) -> tuple[int, int]:
        return (128, 128)

    def warmup_params(self, width: int, height: int) -> UpscaleParams:
        image = Image.new("RGB", (width, height))
        return UpscaleParams(prompt="warm-up", image=image, seed=0, num_inference_steps=1)

    def check(self, params: UpscaleParams) -> UpscaleParams:
        s = self.settings
        fields.check_shared(s, params)
        width, height = params.image.size
        if width * height > s.upscale_max_input_pixels:
            side = int(s.upscale_max_input_pixels**0.5)
            raise InvalidInput(
                f"image is {width}x{height}; upscale takes at most {s.upscale_max_input_pixels} "
                f"pixels (such as {side}x{side}), so that the {SCALE}x result fits in GPU memory."
            )
        self.check_for_model(params)
        # upscale cannot resize its input (the answer is the input's size times 4), so a
        # thin image is bounded by its shape instead.
        ratio = s.upscale_max_aspect_ratio
        if max(width, height) > ratio * min(width, height):
            raise InvalidInput(
                f"image is {width}x{height}; upscale takes images at most {ratio:g} times as "
                "long as they are wide (UPSCALE_MAX_ASPECT_RATIO)."
            )
        return params

    def check_for_model(self, params: BaseModel) -> None:
        """The model rounds the input's sides down to multiples of its VAE's scale factor,
        so a smaller side would leave nothing to upscale."""
        super().check_for_model(params)
        if self.pipe is not None:
            checks.min_image_side("image", params.image.size, self.pipe.vae_scale_factor)

    def prepare(self, params: UpscaleParams) -> None:
        self.check_for_model(params)  # for a request that arrived while the model loaded

    def predict(self, params: UpscaleParams) -> GeneratedImages:
        seeds = image_seeds(params.seed, 1)
        images = self.generate(
            prompt=params.prompt,
            image=params.image,
            num_inference_steps=params.num_inference_steps,
            generator=generators(self.device, seeds),
        ).images
        return GeneratedImages(images, seeds, self.nsfw_flags(images, params.safety_check))
