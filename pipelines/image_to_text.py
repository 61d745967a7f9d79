"""image-to-text: BLIP captioning, conditional on ``prompt`` when one is given."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines.base import Pipeline, Route
from pipelines.image_shapes import processor_input
from runner.cancellation import stopping_criteria
from runner.device import prepare_model
from runner.media.uploads import Upload

log = logging.getLogger("pipelines.image_to_text")


class ImageToTextParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Annotated[Image.Image, Upload("image", "Uploaded image to transform with the pipeline.")]
    prompt: str = Field("", description="Text prompt(s) to guide transformation.")
    model_id: str = Field("", description="Hugging Face model ID used for transformation.")


class ImageToTextResponse(BaseModel):
    """Response model for text generation."""

    text: str = Field(description="The generated text.")


class ImageToText(Pipeline[ImageToTextParams, ImageToTextParams, str]):
    route = Route(
        path="/image-to-text",
        operation_id="genImageToText",
        summary="Image To Text",
        description="Transform image files to text.",
        params=ImageToTextParams,
        response=ImageToTextResponse,
        sdk_name="imageToText",
        example={"prompt": "a photograph of"},
        extra_error_codes=(413,),
    )

    model: Any = None
    processor: Any = None

    def load(self) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        files = prepare_model(self.settings)
        self.device, self.placement = files.device, files.placement
        self.processor = BlipProcessor.from_pretrained(files.repo, **files.source)
        self.model = BlipForConditionalGeneration.from_pretrained(
            files.repo, dtype=self.placement.dtype, **files.source
        ).to(self.device)
        self.model.eval()

    def describe(self) -> str:
        return f"{self.model_id} ({type(self.model).__name__}, {self.placement.describe()})"

    def warmup(self) -> None:
        self.predict(ImageToTextParams(image=Image.new("RGB", (384, 384)), prompt="a photo of"))

    def predict(self, params: ImageToTextParams) -> str:
        import torch

        image = processor_input(params.image, self.processor.image_processor)
        inputs = self.processor(images=image, text=params.prompt or None, return_tensors="pt").to(
            self.device
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(self.placement.dtype)
        with torch.inference_mode():
            tokens = self.model.generate(
                **inputs,
                max_new_tokens=self.settings.max_new_tokens,
                stopping_criteria=stopping_criteria(),
            )
        return self.processor.decode(tokens[0], skip_special_tokens=True).strip()

    def encode(self, output: str) -> ImageToTextResponse:
        return ImageToTextResponse(text=output)
