"""The runner's one safety checker, shared by the diffusion pipelines: it flags NSFW images
(the answer's ``nsfw``) and leaves them as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.image_shapes import center_square
from runner.hub import ModelNotFound, fetch_missing, transformers_files
from runner.settings import Settings

if TYPE_CHECKING:
    import torch
    from PIL import Image


class SafetyChecker:
    """Flags NSFW images with the safety-checker model in ``MODEL_DIR``; images stay as they are."""

    def __init__(self, settings: Settings, device: str, dtype: torch.dtype) -> None:
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        model_id = settings.safety_checker_id
        try:
            path = fetch_missing(settings, model_id, "safety checker", transformers_files)
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

        # CLIP keeps the central square; cropped first, a thin image is not grown to 224
        # pixels wide along its whole length.
        squares = [center_square(image) for image in images]
        pixels = self.processor(squares, return_tensors="pt").pixel_values
        with torch.inference_mode():
            _, flags = self.model(
                images=[np.asarray(image) for image in images],
                clip_input=pixels.to(self.device, self.dtype),
            )
        return [bool(flag) for flag in flags]
