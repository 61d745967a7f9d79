"""image-to-image: SD 1.x/SDXL checkpoints through diffusers' image-to-image auto pipeline,
and InstructPix2Pix (which also weighs the input image: ``image_guidance_scale``)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines import checks
from pipelines import diffusion_fields as fields
from pipelines.base import Route
from pipelines.diffusion import PromptedDiffusion
from pipelines.generated_images import GeneratedImages, generators, image_seeds
from pipelines.image_shapes import fit_to_budget
from runner.errors import InvalidInput
from runner.media.uploads import Upload
from runner.schemas import ImageResponse

log = logging.getLogger("pipelines.image_to_image")
PIX2PIX = "StableDiffusionInstructPix2PixPipeline"


class ImageToImageParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    prompt: str = Field(description="Text prompt(s) to guide image generation.")
    image: Annotated[Image.Image, Upload("image", "Uploaded image to modify with the pipeline.")]
    model_id: str = Field("", description="Hugging Face model ID used for image generation.")
    loras: str = fields.loras()
    strength: float = Field(
        0.8, description="Degree of transformation applied to the reference image (0 to 1)."
    )
    guidance_scale: float = fields.guidance_scale()
    image_guidance_scale: float = Field(
        1.5,
        description="Degree to which the generated image is pushed towards the initial image.",
    )
    negative_prompt: str = fields.negative_prompt()
    safety_check: bool = fields.safety_check()
    seed: int | None = fields.seed()
    num_inference_steps: int = fields.num_inference_steps(100)
    num_images_per_prompt: int = fields.num_images_per_prompt()


class ImageToImage(PromptedDiffusion[ImageToImageParams]):
    route = Route(
        path="/image-to-image",
        operation_id="genImageToImage",
        summary="Image To Image",
        description="Apply image transformations to a provided image.",
        params=ImageToImageParams,
        response=ImageResponse,
        sdk_name="imageToImage",
        example={"prompt": "make it autumn", "seed": 1},
    )

    architectures = (
        "StableDiffusionPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionInstructPix2PixPipeline",
    )

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import AutoPipelineForImage2Image, StableDiffusionInstructPix2PixPipeline

        self.instruct = model_index.get("_class_name") == PIX2PIX
        return (
            StableDiffusionInstructPix2PixPipeline if self.instruct else AutoPipelineForImage2Image
        )

    def warmup_size(self) -> tuple[int, int]:
        return (512, 512)

    def warmup_params(self, width: int, height: int) -> ImageToImageParams:
        image = Image.new("RGB", (width, height))
        return ImageToImageParams(prompt="warm-up", image=image, num_inference_steps=2, seed=0)

    def check(self, params: ImageToImageParams) -> ImageToImageParams:
        fields.check_shared(self.settings, params)
        checks.in_range("strength", params.strength, 0, 1)
        self.check_for_model(params)
        return params

    def check_for_model(self, params: BaseModel) -> None:
        """A side under two latent pixels fails inside the UNet (its group norm), so such an
        image is refused up front, as upscale refuses one it cannot upscale."""
        super().check_for_model(params)
        if self.pipe is not None:
            minimum = self.min_side()
            checks.min_image_side("image", params.image.size, minimum)

    def min_side(self) -> int:
        return 2 * self.pipe.vae_scale_factor

    def predict(self, params: ImageToImageParams) -> GeneratedImages:
        count = params.num_images_per_prompt
        seeds = image_seeds(params.seed, count)
        steps, guidance = self.steps_and_guidance(params)
        kwargs = self.prompts(params)
        if self.instruct:
            kwargs["image_guidance_scale"] = params.image_guidance_scale
        else:
            if int(steps * params.strength) < 1:
                raise InvalidInput(
                    "num_inference_steps x strength must be at least 1, got "
                    f"{steps} x {params.strength:g}."
                )
            kwargs["strength"] = params.strength
        with self.loras.applied(params.loras):
            images = self.generate(
                **kwargs,
                image=fit_to_budget(
                    params.image, self.settings.image_pixel_budget, self.min_side()
                ),
                guidance_scale=guidance,
                num_inference_steps=steps,
                num_images_per_prompt=count,
                generator=generators(self.device, seeds),
            ).images
        return GeneratedImages(images, seeds, self.nsfw_flags(images, params.safety_check))
