"""The diffusion pipelines' images and their seeds, and the image answer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.media.encoding import png_data_urls
from runner.schemas import ImageResponse, Media

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class GeneratedImages:
    images: list[Image.Image]
    seeds: list[int]
    nsfw: list[bool]

    def to_response(self) -> ImageResponse:
        return ImageResponse(
            images=[
                Media(url=url, seed=seed, nsfw=flag)
                for url, seed, flag in zip(
                    png_data_urls(self.images), self.seeds, self.nsfw, strict=True
                )
            ]
        )


def image_seeds(seed: int | None, count: int) -> list[int]:
    """Image i of a request with seed s uses s + i; no seed picks one at random.

    The sum wraps within int64 as the caller's Go ints do: go-livepeer decodes each answer's
    seed into an int, and one past int64 would make it drop the whole answer. The wrapped
    seed names the same generator state (seeds are taken modulo 2**64)."""
    base = random.randrange(2**32) if seed is None else seed
    return [(base + i + 2**63) % 2**64 - 2**63 for i in range(count)]


def generators(device: str, seeds: list[int]) -> list[torch.Generator]:
    import torch

    return [torch.Generator(device=device).manual_seed(s % 2**64) for s in seeds]
