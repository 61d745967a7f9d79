"""Bringing an uploaded image to the size a model takes, with work bounded by the image's
shape as well as its pixel count.

A thin image (8x5,000,000 is within the upload's pixel limit) is costly to resize in one
step: the filter's weights grow with the reduction (1.3 GB of them to bring 1x40,000,000 to
384 rows), and a processor that resizes on tensors (torchvision) tried 61 GB. ``resize``
shrinks first, by an integer box reduction and then the filter over at most a few source
pixels per output pixel, and grows last, so that no step is larger than its input or output.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from PIL import Image

log = logging.getLogger("pipelines.image_shapes")
# Shrinking by more than this is done by box reduction first (Pillow's ``reducing_gap``):
# the filter then works on at most this many source pixels per output pixel.
REDUCING_GAP = 3.0


def resize(
    image: Image.Image,
    size: tuple[int, int],
    resample: Image.Resampling = Image.Resampling.LANCZOS,
) -> Image.Image:
    """``image`` at ``size`` (aspect not kept), in memory and time bounded by the larger of
    the two sizes, whatever their shapes."""
    width, height = image.size
    shrunk = (min(width, size[0]), min(height, size[1]))
    if shrunk != image.size:
        image = image.resize(shrunk, resample, reducing_gap=REDUCING_GAP)
    if shrunk != size:
        image = image.resize(size, resample)
    return image


def processor_input(image: Image.Image, processor: Any) -> Image.Image:
    """``image`` at the fixed size a transformers image ``processor`` resizes to (its
    ``size``: height and width, aspect not kept), with its filter and bounded work, so that
    the processor's own resize (unbounded for thin images) has nothing left to do."""
    size = (processor.size["width"], processor.size["height"])
    return resize(image, size, Image.Resampling(processor.resample))


def budget_size(size: tuple[int, int], budget: int, minimum: int = 16) -> tuple[int, int]:
    """``size`` scaled down (aspect kept) to at most ``budget`` pixels, sides multiples of 8
    and at least ``minimum``. A side held at the minimum (a thin image) shortens the other, so
    the result never exceeds the budget."""
    width, height = size
    scale = min(1.0, math.sqrt(budget / (width * height)))
    new_width = max(minimum, int(width * scale) // 8 * 8)
    new_height = max(minimum, int(height * scale) // 8 * 8)
    if new_width * new_height > budget:
        if new_width <= new_height:
            new_height = max(minimum, budget // new_width // 8 * 8)
        else:
            new_width = max(minimum, budget // new_height // 8 * 8)
    return new_width, new_height


def fit_to_budget(image: Image.Image, budget: int, minimum: int = 16) -> Image.Image:
    """The image at ``budget_size`` (logged when resized)."""
    size = budget_size(image.size, budget, minimum)
    if size == image.size:
        return image
    log.info("input image %dx%d resized to %dx%d (budget %d pixels)", *image.size, *size, budget)
    return resize(image, size)


def center_square(image: Image.Image) -> Image.Image:
    """The image's central square: what a shortest-side resize and a center crop (CLIP's
    preprocessing) keep, without first growing a thin image's long side with its short."""
    width, height = image.size
    side = min(width, height)
    if width == height:
        return image
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))
