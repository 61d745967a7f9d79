"""A diffusion call that ran out of GPU memory, done again in smaller pieces.

Out of memory is the request's size against what the GPU has free at that moment, not a
broken device: the request is retried one image at a time (image i with its own seed,
s + i, so the answer has the same seeds and count as the batched one would), and a video's
frames are decoded in smaller chunks, before the caller gets a 500. The failed try's
tensors are released before the next try starts: the retry runs outside the ``except``
block, so no traceback keeps the failed call's frames alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.device import free_memory, is_out_of_memory

if TYPE_CHECKING:
    import torch

log = logging.getLogger("pipelines.memory_retry")


def fresh_generator(generator: torch.Generator) -> torch.Generator:
    """A generator in the state ``generator`` had before it was drawn from."""
    import torch

    return torch.Generator(device=generator.device).manual_seed(generator.initial_seed())


def one_image_at_a_time(kwargs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The call ``kwargs`` as one call per image, each with its image's generator; None
    when it makes a single image, or its images do not each have a generator of their own."""
    count = kwargs.get("num_images_per_prompt", 1)
    generators = kwargs.get("generator")
    if count <= 1 or not isinstance(generators, list) or len(generators) != count:
        return None
    return [
        kwargs | {"num_images_per_prompt": 1, "generator": [fresh_generator(g)]} for g in generators
    ]


def generate_retrying(call: Callable[[dict[str, Any]], Any], kwargs: dict[str, Any]) -> Any:
    """``call(kwargs)``; out of memory for several images: again, one image at a time.

    The outputs of the single-image calls are joined into the first one's output object."""
    try:
        return call(kwargs)
    except Exception as exc:
        runs = one_image_at_a_time(kwargs) if is_out_of_memory(exc) else None
        if runs is None:
            raise
    free_memory()
    log.warning(
        "out of memory generating %d images at once; retrying them one at a time", len(runs)
    )
    outputs = [call(run) for run in runs]
    joined = outputs[0]
    joined.images = [image for output in outputs for image in output.images]
    return joined


def smaller_decode_chunks(decode: Callable[..., Any]) -> Callable[..., Any]:
    """``decode(latents, num_frames, decode_chunk_size)`` (a video pipeline's
    ``decode_latents``) that, out of memory, decodes again with half the chunk size, down to
    one frame at a time. The denoised latents are kept: only the decoding is done again."""

    def decode_latents(latents: Any, num_frames: int, decode_chunk_size: int) -> Any:
        chunk = decode_chunk_size
        while True:
            try:
                return decode(latents, num_frames, chunk)
            except Exception as exc:
                if chunk <= 1 or not is_out_of_memory(exc):
                    raise
            free_memory()
            log.warning(
                "out of memory decoding %d frames %d at a time; retrying %d at a time",
                num_frames,
                chunk,
                chunk // 2,
            )
            chunk //= 2

    return decode_latents
