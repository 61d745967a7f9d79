"""The pipelines this runner serves: name -> implementing class and network default model.

Adding a pipeline is one module and one line here. Classes are imported only for the
pipeline being loaded, so ``torch``/``diffusers`` stay out of processes that do not need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.base import Pipeline


# go-livepeer's AI worker pulls ``livepeer/ai-runner:latest`` for every batch pipeline except
# those it names in ai/worker/docker.go ``pipelineToImage``, which get ``:<pipeline>``.
LATEST = "latest"


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class"
    default_model: str  # the network's default model for this pipeline
    group: str  # the pyproject extra (and container image) that serves it
    image_tag: str = LATEST  # the tag go-livepeer's AI worker pulls for this pipeline


REGISTRY: dict[str, Entry] = {
    "text-to-image": Entry(
        "pipelines.text_to_image:TextToImage", "SG161222/RealVisXL_V4.0_Lightning", "diffusion"
    ),
    "audio-to-text": Entry(
        "pipelines.audio_to_text:AudioToText",
        "openai/whisper-large-v3",
        "audio",
        "audio-to-text",
    ),
    "segment-anything-2": Entry(
        "pipelines.segment_anything_2:SegmentAnything2",
        "facebook/sam2-hiera-large",
        "vision",
        "segment-anything-2",
    ),
    "text-to-speech": Entry(
        "pipelines.text_to_speech:TextToSpeech", "suno/bark", "speech", "text-to-speech"
    ),
    "image-to-image": Entry(
        "pipelines.image_to_image:ImageToImage", "ByteDance/SDXL-Lightning", "diffusion"
    ),
    "upscale": Entry(
        "pipelines.upscale:Upscale", "stabilityai/stable-diffusion-x4-upscaler", "diffusion"
    ),
    "image-to-text": Entry(
        "pipelines.image_to_text:ImageToText",
        "Salesforce/blip-image-captioning-large",
        "diffusion",
    ),
    "image-to-video": Entry(
        "pipelines.image_to_video:ImageToVideo",
        "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
        "diffusion",
    ),
}


def pipeline_names() -> list[str]:
    return sorted(REGISTRY)


def default_model_id(name: str) -> str:
    return REGISTRY[name].default_model


def pipeline_class(name: str) -> type[Pipeline]:
    module_name, class_name = REGISTRY[name].target.split(":")
    return getattr(import_module(module_name), class_name)
