"""Tiny LoRA adapters for the tiny diffusion models, saved as real LoRA repos are: one
``pytorch_lora_weights.safetensors`` in the diffusers (peft) format."""

from __future__ import annotations

from pathlib import Path

from tiny_models.diffusion import sd15_unet, sdxl_unet, seeded

# The attention projections, as most published SD/SDXL LoRAs target.
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def build_lora(folder: Path, seed: int, family: str) -> None:
    """A rank-4 LoRA on the attention of ``family``'s tiny UNet ("sd15" or "sdxl").

    Both LoRA matrices are random (peft starts B at zero), so the adapter changes images.
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    seeded(seed)
    unet, pipeline = {
        "sd15": (sd15_unet, StableDiffusionPipeline),
        "sdxl": (sdxl_unet, StableDiffusionXLPipeline),
    }[family]
    model = unet()
    model.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=TARGETS)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
    pipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
