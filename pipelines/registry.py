"""Every fact about the pipelines this runner serves, in one place.

A pipeline's entry names its class, the network's default model, the images that serve it
and the tag go-livepeer pulls, whether SFAST/DEEPCACHE and the safety checker apply, what
its models are, and its tiny test model. docker-bake.hcl's and scripts/download_models.sh's
tables are generated from this module (``ai-runner generate``); the runtime, check-config
and the tests read it. It imports nothing heavy: classes are imported only for the pipeline
being loaded, so ``torch``/``diffusers`` stay out of processes that do not need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from runner.settings import SAFETY_CHECKER_ID, SDXL_BASE_ID

if TYPE_CHECKING:
    from pipelines.base import Pipeline


# go-livepeer's AI worker pulls ``livepeer/ai-runner:latest`` for every batch pipeline except
# those it names in ai/worker/docker.go ``pipelineToImage``, which get ``:<pipeline>``.
LATEST = "latest"


@dataclass(frozen=True)
class Image:
    """A container image: the pyproject extra it installs, built by the bake target (and
    ``PIPELINE_GROUP``) of the same name."""

    note: str  # why it exists, for docker-bake.hcl
    latest: bool = False  # tagged :latest and :<version>, what go-livepeer pulls by default
    pipeline_tags: bool = True  # tagged :<pipeline> and :<pipeline>-<version>
    families: tuple[str, ...] = ()  # also tagged :<pipeline>-<family> and ...-<family>-<version>


IMAGES: dict[str, Image] = {
    "diffusion": Image(
        "The diffusion pipelines and image-to-text: go-livepeer pulls :latest for them "
        "(ai/worker/docker.go defaultBaseImage).",
        latest=True,
    ),
    "vision": Image("go-livepeer pulls :segment-anything-2 (ai/worker/docker.go pipelineToImage)."),
    "audio": Image("go-livepeer pulls :audio-to-text (ai/worker/docker.go pipelineToImage)."),
    "speech": Image(
        "Bark and MMS-TTS, tagged by the model families they serve.",
        pipeline_tags=False,
        families=("bark", "mms"),
    ),
    "parler": Image(
        "Parler-TTS: parler-tts pins its own transformers, so it has an image of its own. It "
        "carries go-livepeer's :text-to-speech tag, as ai-runner's text-to-speech image "
        "served Parler-TTS.",
        families=("parler",),
    ),
}


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class"
    default_model: str  # the network's default model for this pipeline
    group: str  # the pyproject extra (and image, in IMAGES) that serves it
    tiny_model: str  # the tiny random-weight model (tiny_models/) tests and demos load
    image_tag: str = LATEST  # the tag go-livepeer's AI worker pulls for this pipeline
    other_images: tuple[str, ...] = ()  # further images that serve other model families
    diffusers: bool = False  # its models are diffusers repositories (component folders)
    accelerated: bool = False  # SFAST and DEEPCACHE apply; elsewhere they are ignored
    safety_checked: bool = False  # its answers carry the safety checker's nsfw flags

    @property
    def images(self) -> tuple[str, ...]:
        return tuple(sorted((self.group, *self.other_images)))


def _diffusion(target: str, default_model: str, tiny_model: str) -> Entry:
    """A diffusers pipeline in the :latest image, with SFAST/DEEPCACHE and the safety checker."""
    return Entry(
        target,
        default_model,
        "diffusion",
        tiny_model,
        diffusers=True,
        accelerated=True,
        safety_checked=True,
    )


REGISTRY: dict[str, Entry] = {
    "text-to-image": _diffusion(
        "pipelines.text_to_image:TextToImage",
        "SG161222/RealVisXL_V4.0_Lightning",
        "tiny-random/stable-diffusion-v1-5",
    ),
    "image-to-image": _diffusion(
        "pipelines.image_to_image:ImageToImage",
        "ByteDance/SDXL-Lightning",
        "tiny-random/stable-diffusion-v1-5",
    ),
    "image-to-video": _diffusion(
        "pipelines.image_to_video:ImageToVideo",
        "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
        "tiny-random/stable-video-diffusion-img2vid-xt",
    ),
    "upscale": _diffusion(
        "pipelines.upscale:Upscale",
        "stabilityai/stable-diffusion-x4-upscaler",
        "tiny-random/stable-diffusion-x4-upscaler",
    ),
    "image-to-text": Entry(
        "pipelines.image_to_text:ImageToText",
        "Salesforce/blip-image-captioning-large",
        "diffusion",
        "tiny-random/blip-image-captioning",
    ),
    "audio-to-text": Entry(
        "pipelines.audio_to_text:AudioToText",
        "openai/whisper-large-v3",
        "audio",
        "tiny-random/whisper-large-v3",
        "audio-to-text",
    ),
    "segment-anything-2": Entry(
        "pipelines.segment_anything_2:SegmentAnything2",
        "facebook/sam2-hiera-large",
        "vision",
        "tiny-random/sam2-hiera",
        "segment-anything-2",
    ),
    "text-to-speech": Entry(
        "pipelines.text_to_speech:TextToSpeech",
        "suno/bark",
        "speech",
        "tiny-random/mms-tts-eng",
        "text-to-speech",
        other_images=("parler",),
    ),
}

ACCELERATED_PIPELINES = frozenset(name for name, e in REGISTRY.items() if e.accelerated)
SAFETY_CHECKED_PIPELINES = frozenset(name for name, e in REGISTRY.items() if e.safety_checked)
DIFFUSERS_PIPELINES = frozenset(name for name, e in REGISTRY.items() if e.diffusers)

# Pipelines of the network that this runner does not serve (an aiModels.json may list them
# with an external runner's url).
OTHER_NETWORK_PIPELINES = ("llm", "live-video-to-video")

# The models some pipelines need besides the one asked for: the safety checker (for the
# safety-checked pipelines) and the SDXL base that ByteDance/SDXL-Lightning UNets load into.
# They are settings an operator may change (SAFETY_CHECKER_ID, SDXL_BASE_ID), so their
# defaults are written in runner/settings.py, a leaf, and read here.
SAFETY_CHECKER = SAFETY_CHECKER_ID
SDXL_BASE = SDXL_BASE_ID

# Diffusers repositories that publish fp16 weights: only those are fetched.
FP16_MODELS = (
    "SG161222/RealVisXL_V4.0_Lightning",
    SDXL_BASE,
    "stabilityai/sdxl-turbo",
    "stabilityai/sd-turbo",
    "stabilityai/stable-diffusion-x4-upscaler",
    "stabilityai/stable-video-diffusion-img2vid-xt",
    "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "runwayml/stable-diffusion-v1-5",
)
# Other diffusers repositories (their root folder may hold large single-file checkpoints that
# the runner never reads: only the component folders are fetched).
DIFFUSERS_MODELS = (
    "stabilityai/stable-diffusion-3-medium-diffusers",
    "black-forest-labs/FLUX.1-schnell",
    "black-forest-labs/FLUX.1-dev",
    "timbrooks/instruct-pix2pix",
)
# Repositories whose licence must be accepted before a token may fetch them.
GATED_MODELS = (
    "stabilityai/stable-diffusion-3-medium-diffusers",
    "black-forest-labs/FLUX.1-dev",
    "stabilityai/stable-video-diffusion-img2vid-xt",
    "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
)


def network_pipelines() -> list[str]:
    """Every pipeline name the network knows, served here or not."""
    return sorted({*REGISTRY, *OTHER_NETWORK_PIPELINES})


def served_by(image: str) -> list[str]:
    """The pipelines ``image`` serves, in registry order."""
    return [name for name, entry in REGISTRY.items() if image in entry.images]


def pipeline_tag(image: str, pipeline: str) -> str:
    """The tag (without version) by which ``image`` serves ``pipeline``: :<pipeline>, or
    :<pipeline>-<family> for an image tagged by model family only."""
    if IMAGES[image].pipeline_tags:
        return pipeline
    return f"{pipeline}-{IMAGES[image].families[0]}"


def pipeline_class(name: str) -> type[Pipeline]:
    module_name, class_name = REGISTRY[name].target.split(":")
    return getattr(import_module(module_name), class_name)
