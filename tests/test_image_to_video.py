"""image-to-video (Stable Video Diffusion) end to end over multipart HTTP, on the tiny SVD."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from conftest import serving, wait_for_status
from helpers import decode_image, pixels
from PIL import Image

from pipelines.image_to_video import GiB, decode_chunk_size
from runner.hub import locate_model
from tiny_models import TINY_SAFETY_CHECKER_STRICT, TINY_SD, TINY_SVD

SMALL = {"width": "96", "height": "64", "num_inference_steps": "2"}


def png(size=(40, 24)) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def animate(client, image=None, **fields):
    data = {**SMALL, **fields}
    return client.post("/image-to-video", files={"image": ("i.png", image or png())}, data=data)


def video(client, **fields) -> list[dict]:
    response = animate(client, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["frames"] and len(body["frames"]) == 1  # exactly one video
    return body["frames"][0]


@pytest.fixture(scope="module")
def client(make_settings):
    with serving(make_settings(pipeline="image-to-video", model_id=TINY_SVD)) as client:
        yield client


@pytest.fixture(scope="module")
def model_dir(tiny):
    return tiny.need(TINY_SVD)


@pytest.fixture(scope="module")
def num_frames(model_dir) -> int:
    config = locate_model(model_dir, TINY_SVD) / "unet" / "config.json"
    return json.loads(config.read_text())["num_frames"]


def test_the_tiny_model_is_laid_out_as_svd_xt(model_dir):
    snapshot = locate_model(model_dir, TINY_SVD)
    index = json.loads((snapshot / "model_index.json").read_text())
    assert index["_class_name"] == "StableVideoDiffusionPipeline"
    assert {name: spec[1] for name, spec in index.items() if not name.startswith("_")} == {
        "unet": "UNetSpatioTemporalConditionModel",
        "vae": "AutoencoderKLTemporalDecoder",
        "image_encoder": "CLIPVisionModelWithProjection",
        "feature_extractor": "CLIPImageProcessor",
        "scheduler": "EulerDiscreteScheduler",
    }
    scheduler = json.loads((snapshot / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["use_karras_sigmas"] is True
    assert scheduler["prediction_type"] == "v_prediction"
    assert scheduler["timestep_type"] == "continuous"
    assert (scheduler["sigma_min"], scheduler["sigma_max"]) == (0.002, 700.0)


def test_one_video_of_the_models_frame_count_at_the_requested_size(client, num_frames):
    frames = video(client, seed="5")
    assert len(frames) == num_frames > 1
    for frame in frames:
        decoded = decode_image(frame["url"])
        assert decoded.size == (96, 64) and decoded.mode == "RGB"
        assert frame["seed"] == 5 and frame["nsfw"] is False
    assert pixels(frames[0]["url"]) != pixels(frames[-1]["url"])  # frames differ in time


def test_seeds_reproduce_and_differ(client):
    first = [pixels(frame["url"]) for frame in video(client, seed="11")]
    again = [pixels(frame["url"]) for frame in video(client, seed="11")]
    other = [pixels(frame["url"]) for frame in video(client, seed="12")]
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


def test_no_seed_picks_one_that_every_frame_carries(client):
    frames = video(client)
    [seed] = {frame["seed"] for frame in frames}
    replay = video(client, seed=str(seed))
    assert [pixels(f["url"]) for f in replay] == [pixels(f["url"]) for f in frames]


def test_conditioning_values_change_the_video(client):
    plain = video(client, seed="3")
    for field, value in (("motion_bucket_id", "255"), ("fps", "24"), ("noise_aug_strength", "0.5")):
        changed = video(client, seed="3", **{field: value})
        assert pixels(changed[-1]["url"]) != pixels(plain[-1]["url"]), field


def test_the_safety_checker_flags_each_frame(make_settings):
    settings = make_settings(
        pipeline="image-to-video", model_id=TINY_SVD, safety_checker_id=TINY_SAFETY_CHECKER_STRICT
    )
    with serving(settings) as strict:
        assert all(frame["nsfw"] is True for frame in video(strict, seed="1"))
        unchecked = video(strict, seed="1", safety_check="false")
        assert all(frame["nsfw"] is False for frame in unchecked)


@pytest.mark.parametrize(
    ("fields", "image", "message"),
    [
        ({"width": "100"}, None, "width must be a multiple of 8, got 100."),
        ({"height": "32"}, None, "height must be between 64 and 2048, got 32."),
        (
            {"num_inference_steps": "151"},
            None,
            "num_inference_steps must be between 1 and 150, got 151.",
        ),
        ({"fps": "0"}, None, "fps must be between 1 and 1024, got 0."),
        (
            {"motion_bucket_id": "-1"},
            None,
            "motion_bucket_id must be between 0 and 1023, got -1.",
        ),
        (
            {"noise_aug_strength": "1.5"},
            None,
            "noise_aug_strength must be between 0 and 1, got 1.5.",
        ),
        (
            {"seed": str(2**63)},
            None,
            "seed must be between -9223372036854775808 and 9223372036854775807, "
            "got 9223372036854775808.",
        ),
        (
            {"model_id": "org/other"},
            None,
            f"pipeline configured with {TINY_SVD} but called with org/other.",
        ),
        ({}, b"not an image", "image could not be decoded: not a PNG, JPEG, WebP, GIF or BMP."),
    ],
)
def test_bad_inputs_are_400(client, fields, image, message):
    response = animate(client, image, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_health_answers_ok_throughout_a_generation(client, num_frames):
    result: dict = {}
    request = threading.Thread(
        target=lambda: result.update(
            response=animate(client, width="128", height="128", num_inference_steps="3")
        )
    )
    request.start()
    wait_for_status(client, {"OK"})
    statuses = []
    while request.is_alive():
        response = client.get("/health")
        assert response.status_code == 200
        statuses.append(response.json()["status"])
    request.join()
    assert result["response"].status_code == 200
    assert len(result["response"].json()["frames"][0]) == num_frames
    busy = len(statuses) - statuses[::-1].index("OK") if "OK" in statuses else 0
    assert busy >= 3, statuses  # several polls answered while the request ran
    assert set(statuses[:busy]) == {"OK"} and set(statuses[busy:]) <= {"IDLE"}, statuses


def test_a_model_of_another_kind_fails_the_load_saying_why(make_settings):
    with serving(make_settings(pipeline="image-to-video", model_id=TINY_SD)) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        message = animate(client).json()["detail"]["msg"]
        assert message.endswith(
            f"{TINY_SD} is a StableDiffusionPipeline (model_index.json); this pipeline serves "
            "Stable Video Diffusion (StableVideoDiffusionPipeline)"
        )


@pytest.mark.parametrize(
    ("frames", "available", "chunk"),
    [
        (25, 20 * GiB, 10),  # 80% of 20 GiB in 1.5 GiB frames
        (25, 100 * GiB, 25),  # never more than the video's frames
        (25, 1 * GiB, 1),  # at least one frame, even when memory looks short
        (25, None, 4),  # the CPU: a fixed chunk
        (3, None, 3),
    ],
)
def test_the_decode_chunk_follows_the_free_memory(frames, available, chunk):
    assert decode_chunk_size(frames, int(1.5 * GiB), available) == chunk


def test_a_thin_image_is_served_at_the_video_size(client, num_frames):
    """Issue 13, finding 13: a thin upload (1x4,000,000 here) is brought to the video's size
    with bounded work (pipelines/image_shapes.py), as the model takes it."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 4_000_000), (90, 20, 200)).save(buffer, "PNG")
    frames = video(client, image=buffer.getvalue(), seed="1")
    assert len(frames) == num_frames
    assert decode_image(frames[0]["url"]).size == (96, 64)
