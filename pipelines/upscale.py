"""upscale: Stable Diffusion's x4 upscaler; the answer is 4x the input in each side."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines import checks
from pipelines.base import Route
from pipelines.diffusion import DiffusionPipeline, GeneratedImages, generators, image_seeds
from runner.errors import InvalidInput
from runner.schemas import ImageResponse, optional_int
from runner.uploads import Upload

log = logging.getLogger("pipelines.upscale")
SCALE = 4


class UpscaleParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    prompt: str = Field(description="Text prompt(s) to guide upscaled image generation.")
    image: Annotated[Image.Image, Upload("image", "Uploaded image to modify with the pipeline.")]
    model_id: str = Field(
        "", description="Hugging Face model ID used for upscaled image generation."
    )
    safety_check: bool = Field(
        True,
        description=(
            "Perform a safety check to estimate if generated images could be offensive or harmful."
        ),
    )
    seed: int | None = optional_int("Seed for random number generation.")
    num_inference_steps: int = Field(
        75,
        description=(
            "Number of denoising steps. More steps usually lead to higher quality images but "
            "slower inference. Modulated by strength."
        ),
    )


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

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import StableDiffusionUpscalePipeline

        return StableDiffusionUpscalePipeline

    def warmup(self) -> None:
        self.predict(
            UpscaleParams(
                prompt="warm-up", image=Image.new("RGB", (128, 128)), seed=0, num_inference_steps=1
            )
        )

    def check(self, params: UpscaleParams) -> None:
        s = self.settings
        checks.non_empty("prompt", params.prompt)
        checks.in_range("num_inference_steps", params.num_inference_steps, 1, s.max_inference_steps)
        checks.seed(params.seed)
        width, height = params.image.size
        if width * height > s.upscale_max_input_pixels:
            side = int(s.upscale_max_input_pixels**0.5)
            raise InvalidInput(
                f"image is {width}x{height}; upscale takes at most {s.upscale_max_input_pixels} "
                f"pixels (such as {side}x{side}), so that the {SCALE}x result fits in GPU memory."
            )

    def predict(self, params: UpscaleParams) -> GeneratedImages:
        seeds = image_seeds(params.seed, 1)
        images = self.pipe(
            prompt=params.prompt,
            image=params.image,
            num_inference_steps=params.num_inference_steps,
            generator=generators(self.device, seeds),
        ).images
        return GeneratedImages(images, seeds, self.nsfw_flags(images, params.safety_check))
