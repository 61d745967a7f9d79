"""Which kind of diffusion model was loaded, and how the runner runs it: one table.

A model's family comes from its own files (``_class_name`` in ``model_index.json``), refined
by the few model-id conventions the network relies on. Few-step distilled models (Turbo,
Lightning, FLUX.1 schnell) make noise at the contract's 50 steps and 7.5 guidance, so their
own values apply where a request leaves the contract defaults; an SDXL-Lightning UNet is
distilled for exactly its step count, so its values apply whatever the request says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from runner.errors import RunnerError


class UnsupportedModel(RunnerError):
    """The model is not an architecture this pipeline serves."""


@dataclass(frozen=True)
class Family:
    name: str
    steps: int | None = None  # the family's step count, where a request leaves the default
    guidance_scale: float | None = None  # likewise for guidance
    fixed: bool = False  # steps and guidance apply whatever the request says
    negative_prompt: bool = True  # whether the model takes a negative prompt
    size_multiple: int = 8  # output sides must be multiples of this
    cuda_dtype: str | None = None  # the precision it was published for, where that is fixed


# model_index.json's _class_name -> family
ARCHITECTURES: dict[str, Family] = {
    "StableDiffusionPipeline": Family("Stable Diffusion 1.x/2.x"),
    "StableDiffusionXLPipeline": Family("Stable Diffusion XL"),
    "StableDiffusion3Pipeline": Family("Stable Diffusion 3", cuda_dtype="float16"),
    "FluxPipeline": Family(
        "FLUX.1", negative_prompt=False, size_multiple=16, cuda_dtype="bfloat16"
    ),
    "StableDiffusionInstructPix2PixPipeline": Family("InstructPix2Pix"),
    "StableDiffusionUpscalePipeline": Family("Stable Diffusion x4 upscaler"),
    "StableVideoDiffusionPipeline": Family("Stable Video Diffusion"),
}


@dataclass(frozen=True)
class Convention:
    """A model-id convention that refines an architecture's family."""

    pattern: str  # searched in the model id, ignoring case
    architecture: str | None  # the class name it applies to; None: any
    name: str
    steps: int
    guidance_scale: float


# The first match wins.
CONVENTIONS: tuple[Convention, ...] = (
    Convention(r"FLUX\.1-schnell", "FluxPipeline", "FLUX.1 schnell", steps=4, guidance_scale=0),
    Convention(r"turbo", None, "Turbo", steps=2, guidance_scale=0),
    Convention(r"lightning", None, "Lightning", steps=6, guidance_scale=1.5),
)

# ByteDance/SDXL-Lightning[-Nstep]: a UNet file swapped into the SDXL base (8 steps unless
# the id says otherwise, as ai-runner's pipelines/text_to_image.py "Default to 8step"), Euler on
# trailing timesteps, no guidance.
LIGHTNING_UNET = re.compile(r"^(?P<repo>[^/]+/SDXL-Lightning)(?:-(?P<steps>[248])step)?$")


@dataclass(frozen=True)
class LightningUNet:
    repo: str  # the repository that holds the UNet files
    steps: int

    @property
    def filename(self) -> str:
        return f"sdxl_lightning_{self.steps}step_unet.safetensors"

    @property
    def family(self) -> Family:
        name = f"SDXL-Lightning {self.steps}-step UNet"
        return Family(name, steps=self.steps, guidance_scale=0.0, fixed=True)


def lightning_unet(model_id: str) -> LightningUNet | None:
    match = LIGHTNING_UNET.match(model_id)
    if match is None:
        return None
    return LightningUNet(match["repo"], int(match["steps"] or 8))


def family_of(model_id: str, class_name: str | None, served: tuple[str, ...]) -> Family:
    """The family of ``model_id`` whose ``model_index.json`` names ``class_name``.

    ``served`` lists the architectures the loading pipeline serves; anything else fails the
    load with a message naming what was found.
    """
    if class_name not in served:
        known = ", ".join(f"{ARCHITECTURES[name].name} ({name})" for name in served)
        raise UnsupportedModel(
            f"{model_id} is a {class_name or 'model without a _class_name'} "
            f"(model_index.json); this pipeline serves {known}"
        )
    family = ARCHITECTURES[class_name]
    for rule in CONVENTIONS:
        if re.search(rule.pattern, model_id, re.IGNORECASE) and rule.architecture in (
            None,
            class_name,
        ):
            return replace(
                family, name=rule.name, steps=rule.steps, guidance_scale=rule.guidance_scale
            )
    return family
