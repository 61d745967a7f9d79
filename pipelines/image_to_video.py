"""image-to-video: Stable Video Diffusion (img2vid, img2vid-xt, xt-1-1) from one image.

The model's own frame count (``num_frames`` in its UNet config: 25 for the xt models) makes
one video. The frames are decoded by the temporal VAE in chunks as large as the free GPU
memory allows: larger chunks are more consistent in time, too large runs out of memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pipelines import checks
from pipelines import diffusion_fields as fields
from pipelines.base import Route
from pipelines.diffusion import DiffusionPipeline
from pipelines.generated_images import generators, image_seeds
from pipelines.image_shapes import resize
from runner.media.encoding import png_data_urls
from runner.media.uploads import Upload
from runner.schemas import Media, VideoResponse

log = logging.getLogger("pipelines.image_to_video")
GiB = 1024**3

# Bounds of the micro-conditioning values, as wide as the common SVD front ends allow.
MAX_FPS = 1024
MAX_MOTION_BUCKET = 1023

# Peak activations of SVD's temporal VAE decoder per output pixel of one frame, in values of
# the model's dtype: its last blocks run 256- and 128-channel spatio-temporal resnets at full
# resolution and hold a block's input and two intermediates at once, which with the
# allocator's slack comes to about 1,400 values (1.5 GiB for a 1024x576 frame in fp16).
DECODE_VALUES_PER_PIXEL = 1400
MEMORY_HEADROOM = 0.8  # share of the free memory the decoder may plan on; the rest is slack
CPU_DECODE_CHUNK = 4  # on the CPU, memory is not measured: the reference runner's fixed value


class ImageToVideoParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Annotated[Image.Image, Upload("image", "Uploaded image to generate a video from.")]
    model_id: str = Field("", description="Hugging Face model ID used for video generation.")
    height: int = Field(576, description="The height in pixels of the generated video.")
    width: int = Field(1024, description="The width in pixels of the generated video.")
    fps: int = Field(6, description="The frames per second of the generated video.")
    motion_bucket_id: int = Field(
        127,
        description=(
            "Used for conditioning the amount of motion for the generation. The higher the "
            "number the more motion will be in the video."
        ),
    )
    noise_aug_strength: float = Field(
        0.02,
        description=(
            "Amount of noise added to the conditioning image. Higher values reduce resemblance "
            "to the conditioning image and increase motion."
        ),
    )
    safety_check: bool = fields.safety_check()
    seed: int | None = fields.seed()
    num_inference_steps: int = fields.num_inference_steps(25)


@dataclass
class GeneratedVideo:
    frames: list[Image.Image]
    seed: int
    nsfw: list[bool]  # one flag per frame

    def to_response(self) -> VideoResponse:
        urls = png_data_urls(self.frames)
        video = [
            Media(url=url, seed=self.seed, nsfw=flag)
            for url, flag in zip(urls, self.nsfw, strict=True)
        ]
        return VideoResponse(frames=[video])


def frame_bytes(width: int, height: int, dtype_bytes: int) -> int:
    """The decoder's estimated peak memory for one frame of ``width`` x ``height``."""
    return width * height * DECODE_VALUES_PER_PIXEL * dtype_bytes


def decode_chunk_size(num_frames: int, per_frame: int, available: int | None) -> int:
    """Frames decoded at once: as many as fit in ``available`` bytes (with headroom), at
    least one; a fixed number when memory is not measured (the CPU)."""
    if available is None:
        return min(CPU_DECODE_CHUNK, num_frames)
    return max(1, min(num_frames, int(available * MEMORY_HEADROOM) // per_frame))


def available_cuda_memory(device: str) -> int:
    """Free device memory plus what torch's allocator holds unused, in bytes."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


class ImageToVideo(DiffusionPipeline[ImageToVideoParams]):
    route = Route(
        path="/image-to-video",
        operation_id="genImageToVideo",
        summary="Image To Video",
        description="Generate a video from a provided image.",
        params=ImageToVideoParams,
        response=VideoResponse,
        sdk_name="imageToVideo",
        example={"width": 1024, "height": 576, "seed": 1},
    )

    architectures = ("StableVideoDiffusionPipeline",)

    def diffusers_class(self, model_index: dict) -> Any:
        from diffusers import StableVideoDiffusionPipeline

        return StableVideoDiffusionPipeline

    @property
    def num_frames(self) -> int:
        return self.pipe.unet.config.num_frames

    def describe(self) -> str:
        return f"{super().describe()}, {self.num_frames} frames a video"

    def warmup_size(self) -> tuple[int, int]:
        s = self.settings
        return (
            min(max(1024, s.image_size_min), s.image_size_max),
            min(max(576, s.image_size_min), s.image_size_max),
        )

    def warmup_params(self, width: int, height: int) -> ImageToVideoParams:
        image = Image.new("RGB", (width, height))
        return ImageToVideoParams(
            image=image, width=width, height=height, num_inference_steps=1, seed=0
        )

    def check(self, params: ImageToVideoParams) -> ImageToVideoParams:
        s = self.settings
        fields.check_shared(s, params)
        checks.image_side("width", params.width, s.image_size_min, s.image_size_max)
        checks.image_side("height", params.height, s.image_size_min, s.image_size_max)
        checks.in_range("fps", params.fps, 1, MAX_FPS)
        checks.in_range("motion_bucket_id", params.motion_bucket_id, 0, MAX_MOTION_BUCKET)
        checks.in_range("noise_aug_strength", params.noise_aug_strength, 0, 1)
        return params

    def decode_chunk(self, width: int, height: int) -> int:
        per_frame = frame_bytes(width, height, self.placement.dtype.itemsize)
        available = None
        if self.device == "cuda":  # inferences running at once share what is free
            available = available_cuda_memory(self.device) // self.settings.capacity
        chunk = decode_chunk_size(self.num_frames, per_frame, available)
        memory = (
            f"{available / GiB:.1f} GiB free for it, about {per_frame / GiB:.2f} GiB a frame"
            if available is not None
            else self.device
        )
        log.info(
            "decoding %d frames of %dx%d, %d at a time (%s)",
            self.num_frames,
            width,
            height,
            chunk,
            memory,
        )
        return chunk

    def predict(self, params: ImageToVideoParams) -> GeneratedVideo:
        [seed] = image_seeds(params.seed, 1)
        size = (params.width, params.height)
        # The pipeline resizes the image to the video's size (Lanczos) for the VAE anyway;
        # doing it first also bounds the cost of its CLIP preprocessing for large uploads.
        image = resize(params.image, size)  # bounded work for a thin upload too
        frames = self.generate(
            image=image,
            width=params.width,
            height=params.height,
            num_inference_steps=params.num_inference_steps,
            fps=params.fps,
            motion_bucket_id=params.motion_bucket_id,
            noise_aug_strength=params.noise_aug_strength,
            decode_chunk_size=self.decode_chunk(*size),
            generator=generators(self.device, [seed])[0],
        ).frames[0]
        return GeneratedVideo(frames, seed, self.nsfw_flags(frames, params.safety_check))

    def encode(self, output: GeneratedVideo) -> VideoResponse:
        return output.to_response()
