"""Out of GPU memory, on the tiny models loaded through the real path: real
``torch.OutOfMemoryError``s raised from inside the model (forward pre-hooks) when a call is
larger than one image or one decoded frame.

ai-runner (runner/src/runner/routes/text_to_image.py, text_to_image) generates the images of
a request one at a time with seeds seed + i and never turns /health to ERROR for memory;
this runner batches them and falls back to that after running out of memory.
"""

from __future__ import annotations

import io
import logging
import weakref

import pytest
import torch
from conftest import serving, wait_for_status
from helpers import decode_image, pixels
from PIL import Image

import tiny_models as tiny
from runner.device import guarded, is_out_of_memory, is_unrecoverable
from runner.errors import OutOfMemory

SEED = 7
COUNT = 3
OOM_BODY = {"detail": {"msg": "GPU out of memory."}}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def text_to_image(client, **fields):
    body = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2}
    return client.post("/text-to-image", json=body | fields)


def image_to_image(client, **fields):
    data = {"prompt": "a cat", "num_inference_steps": "2"} | {k: str(v) for k, v in fields.items()}
    return client.post("/image-to-image", data=data, files={"image": ("i.png", png())})


REQUESTS = {"text-to-image": text_to_image, "image-to-image": image_to_image}


class OutOfMemoryAbove:
    """A forward pre-hook: a fresh OutOfMemoryError (as torch raises them) whenever the
    module's input batch is larger than ``limit``. Keeps a weak reference to the last input
    it refused, to tell whether the failed try's tensors were released."""

    def __init__(self, limit: int, error: type[Exception] = torch.OutOfMemoryError) -> None:
        self.limit = limit
        self.error = error
        self.batches: list[int] = []
        self.refused: weakref.ref | None = None
        self.refused_alive_at_next_call: list[bool] = []

    def __call__(self, module, args) -> None:
        batch = args[0].shape[0]
        self.batches.append(batch)
        if self.refused is not None:
            self.refused_alive_at_next_call.append(self.refused() is not None)
            self.refused = None
        if batch > self.limit:
            self.refused = weakref.ref(args[0])
            if self.error is torch.OutOfMemoryError:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch} GiB")
            raise self.error("CUDA error: out of memory")


@pytest.fixture(scope="module", params=sorted(REQUESTS))
def sd(request, make_settings):
    settings = make_settings(pipeline=request.param, model_id=tiny.TINY_SD)
    with serving(settings) as client:
        yield request.param, client


def test_images_that_do_not_fit_together_are_made_one_at_a_time(sd, caplog):
    pipeline, client = sd
    post = REQUESTS[pipeline]
    unet = client.app.state.runtime.pipeline.pipe.unet
    alone = []
    for i in range(COUNT):
        answer = post(client, seed=SEED + i)
        assert answer.status_code == 200, answer.text
        alone.append(answer.json()["images"][0])

    # Classifier-free guidance: one image is a UNet batch of 2.
    hook = OutOfMemoryAbove(limit=2)
    handle = unet.register_forward_pre_hook(hook)
    try:
        with caplog.at_level(logging.WARNING):
            answer = post(client, seed=SEED, num_images_per_prompt=COUNT)
    finally:
        handle.remove()
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert hook.batches[0] == 2 * COUNT  # the batched try ran, and ran out of memory
    assert set(hook.batches[1:]) == {2}
    assert [image["seed"] for image in images] == [SEED + i for i in range(COUNT)]
    assert [pixels(image["url"]) for image in images] == [pixels(image["url"]) for image in alone]
    assert all(decode_image(image["url"]).size == (64, 64) for image in images)
    assert hook.refused_alive_at_next_call == [False]  # freed before the retry
    assert f"out of memory generating {COUNT} images at once; retrying them one at a time" in (
        caplog.text
    )
    assert client.get("/health").json() == {"status": "IDLE"}


def test_out_of_memory_on_the_retry_is_500_and_the_next_request_succeeds(sd):
    pipeline, client = sd
    post = REQUESTS[pipeline]
    unet = client.app.state.runtime.pipeline.pipe.unet
    hook = OutOfMemoryAbove(limit=0)
    handle = unet.register_forward_pre_hook(hook)
    try:
        answer = post(client, seed=SEED, num_images_per_prompt=2)
    finally:
        handle.remove()
    assert answer.status_code == 500
    assert answer.json() == OOM_BODY
    assert hook.batches == [4, 2]  # the batch, then the first image alone; no more
    assert client.get("/health").json() == {"status": "IDLE"}
    served = post(client, seed=SEED, num_images_per_prompt=2)
    assert served.status_code == 200, served.text
    assert len(served.json()["images"]) == 2


def test_out_of_memory_reported_as_a_cuda_error_is_retried_and_never_error(sd):
    """cudaErrorMemoryAllocation outside torch's allocator (cuBLAS, cuDNN workspaces) comes
    as torch.AcceleratorError "CUDA error: out of memory": out of memory all the same."""
    pipeline, client = sd
    post = REQUESTS[pipeline]
    unet = client.app.state.runtime.pipeline.pipe.unet
    for limit, status in ((2, 200), (0, 500)):
        hook = OutOfMemoryAbove(limit, error=torch.AcceleratorError)
        handle = unet.register_forward_pre_hook(hook)
        try:
            answer = post(client, seed=SEED, num_images_per_prompt=2)
        finally:
            handle.remove()
        assert answer.status_code == status, answer.text
        assert hook.batches[:2] == [4, 2]
        if status == 500:
            assert answer.json() == OOM_BODY
        assert client.get("/health").json() == {"status": "IDLE"}


@pytest.mark.parametrize(
    ("error", "out_of_memory", "unrecoverable"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, False),
        (torch.AcceleratorError("CUDA error: out of memory"), True, False),
        (
            RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"),
            True,
            False,
        ),
        (
            torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
            False,
            True,
        ),
        (torch.AcceleratorError("CUDA error: device-side assert triggered"), False, True),
        (
            RuntimeError("The size of tensor a (4) must match the size of tensor b (2)"),
            False,
            False,
        ),
    ],
)
def test_out_of_memory_is_never_a_device_the_next_request_cannot_use(
    error, out_of_memory, unrecoverable
):
    assert is_out_of_memory(error) is out_of_memory
    assert is_unrecoverable(error) is unrecoverable


@pytest.fixture(scope="module")
def svd(make_settings):
    with serving(make_settings(pipeline="image-to-video", model_id=tiny.TINY_SVD)) as client:
        yield client


def animate(client):
    data = {"width": "64", "height": "64", "num_inference_steps": "2", "seed": str(SEED)}
    return client.post("/image-to-video", data=data, files={"image": ("i.png", png())})


def test_video_frames_that_do_not_decode_together_are_decoded_in_smaller_chunks(svd, caplog):
    pipe = svd.app.state.runtime.pipeline.pipe
    frames = pipe.unet.config.num_frames
    unet_calls = []
    counting = pipe.unet.register_forward_pre_hook(lambda module, args: unet_calls.append(1))
    try:
        assert animate(svd).status_code == 200
        steps_unhindered, unet_calls[:] = len(unet_calls), []
        hook = OutOfMemoryAbove(limit=1)
        handle = pipe.vae.decoder.register_forward_pre_hook(hook)
        try:
            with caplog.at_level(logging.WARNING):
                answer = animate(svd)
        finally:
            handle.remove()
    finally:
        counting.remove()
    assert answer.status_code == 200, answer.text
    [video] = answer.json()["frames"]
    assert len(video) == frames
    assert all(decode_image(frame["url"]).size == (64, 64) for frame in video)
    assert {frame["seed"] for frame in video} == {SEED}
    # The CPU decodes 4 frames at a time: 4 and 2 run out of memory, then one by one.
    assert hook.batches == [4, 2] + [1] * frames
    assert hook.refused_alive_at_next_call == [False, False]
    assert len(unet_calls) == steps_unhindered  # the denoising was not done again
    assert f"out of memory decoding {frames} frames 4 at a time; retrying 2 at a time" in (
        caplog.text
    )
    assert svd.get("/health").json() == {"status": "IDLE"}


def test_video_that_does_not_decode_frame_by_frame_is_500_and_the_next_succeeds(svd):
    decoder = svd.app.state.runtime.pipeline.pipe.vae.decoder
    hook = OutOfMemoryAbove(limit=0)
    handle = decoder.register_forward_pre_hook(hook)
    try:
        answer = animate(svd)
    finally:
        handle.remove()
    assert answer.status_code == 500
    assert answer.json() == OOM_BODY
    assert hook.batches == [4, 2, 1]
    assert svd.get("/health").json() == {"status": "IDLE"}
    assert animate(svd).status_code == 200


def test_max_consecutive_oom_is_accepted_ignored_and_logged(make_settings, caplog):
    with caplog.at_level(logging.WARNING), serving(make_settings(max_consecutive_oom=1)) as client:
        unet = client.app.state.runtime.pipeline.pipe.unet
        handle = unet.register_forward_pre_hook(OutOfMemoryAbove(limit=0))
        try:
            for _ in range(3):
                assert text_to_image(client).json() == OOM_BODY
        finally:
            handle.remove()
        assert wait_for_status(client, {"IDLE", "ERROR"}) == "IDLE"
        assert text_to_image(client).status_code == 200
    assert "MAX_CONSECUTIVE_OOM=1 is deprecated and ignored" in caplog.text


def test_the_failed_call_is_released_before_the_error_is_answered():
    kept = {}

    class Activations:
        pass

    def runs_out_of_memory() -> None:
        activations = Activations()
        kept["ref"] = weakref.ref(activations)
        raise torch.OutOfMemoryError("CUDA out of memory.")

    with pytest.raises(OutOfMemory) as raised:
        guarded(runs_out_of_memory)()
    assert kept["ref"]() is None
    assert raised.value.__context__ is None
