"""image-to-image end to end over multipart HTTP: SD 1.x through the auto pipeline, and
InstructPix2Pix, on tiny models."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import serving
from helpers import decode_image, image_sizes_given, pixels
from PIL import Image

from pipelines.image_shapes import fit_to_budget
from tiny_models import TINY_PIX2PIX, TINY_SD, TINY_SD_LORA


def png(size=(96, 64)) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def edit(client, image=None, **fields):
    data = {"prompt": "autumn", "num_inference_steps": "4", **fields}
    return client.post("/image-to-image", files={"image": ("i.png", image or png())}, data=data)


@pytest.fixture(scope="module")
def sd(make_settings):
    with serving(make_settings(pipeline="image-to-image", model_id=TINY_SD)) as client:
        yield client


@pytest.fixture(scope="module")
def pix2pix(make_settings):
    with serving(make_settings(pipeline="image-to-image", model_id=TINY_PIX2PIX)) as client:
        yield client


def test_sd_keeps_the_input_size_and_seeds_reproduce(sd):
    response = edit(sd, seed="3", num_images_per_prompt="2")
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert [image["seed"] for image in images] == [3, 4]
    assert all(decode_image(image["url"]).size == (96, 64) for image in images)
    again = edit(sd, seed="3", num_images_per_prompt="2").json()["images"]
    assert pixels(again[0]["url"]) == pixels(images[0]["url"])


def test_strength_changes_how_far_the_image_moves(sd):
    light = edit(sd, seed="1", strength="0.3").json()["images"][0]
    strong = edit(sd, seed="1", strength="0.9").json()["images"][0]
    assert pixels(light["url"]) != pixels(strong["url"])


def test_a_lora_changes_the_edit_and_unloading_restores_it(sd):
    def edited(loras: str) -> bytes:
        response = edit(sd, seed="2", num_inference_steps="2", strength="1", loras=loras)
        assert response.status_code == 200, response.text
        return pixels(response.json()["images"][0]["url"])

    plain = edited("")
    styled = edited(json.dumps({TINY_SD_LORA: 1}))
    assert styled != plain
    assert edited("{}") == plain


def test_pix2pix_uses_image_guidance_scale(pix2pix):
    low = edit(pix2pix, seed="1", image_guidance_scale="1.0").json()["images"][0]
    high = edit(pix2pix, seed="1", image_guidance_scale="3.0").json()["images"][0]
    assert decode_image(low["url"]).size == (96, 64)
    assert pixels(low["url"]) != pixels(high["url"])


def test_inputs_over_the_pixel_budget_are_scaled_down_keeping_the_aspect(make_settings):
    settings = make_settings(pipeline="image-to-image", model_id=TINY_SD, image_pixel_budget=4096)
    with serving(settings) as small:
        image = edit(small, png((128, 64)), seed="1").json()["images"][0]
        assert decode_image(image["url"]).size == (88, 40)


def test_fit_to_budget_rounds_sides_down_to_multiples_of_8():
    assert fit_to_budget(Image.new("RGB", (100, 50)), 10**6).size == (96, 48)
    assert fit_to_budget(Image.new("RGB", (4000, 3000)), 1024 * 1024).size == (1176, 880)


@pytest.mark.parametrize(
    "size", [(16, 40_000), (40_000, 16), (8, 5_000_000), (1, 40_000_000), (3000, 7), (99, 9999)]
)
def test_fit_to_budget_never_exceeds_the_budget_for_thin_images(size):
    """Issue 13, finding 14: 8x5,000,000 became 8x809,536, 6.2 times the budget."""
    budget = 1024 * 1024
    width, height = fit_to_budget(Image.new("1", size), budget).size
    assert width * height <= budget
    assert min(width, height) >= 16 and width % 8 == 0 and height % 8 == 0


def test_a_thin_image_is_served_within_the_budget(make_settings):
    """Issue 13, finding 13, too: CLIP's preprocessing (the safety checker's) scales an image's
    short side to 224 pixels and its long side with it (a 16x65,536 answer would become
    224x917,504 floats); the central square it keeps is cropped first."""
    settings = make_settings(pipeline="image-to-image", model_id=TINY_SD, image_pixel_budget=4096)
    with serving(settings) as small:
        checker = small.app.state.runtime.pipeline.safety_checker.processor
        with image_sizes_given(checker, "preprocess") as sizes:
            image = edit(small, png((16, 2000)), seed="1").json()["images"][0]
        assert decode_image(image["url"]).size == (16, 256)
        assert sizes == [(16, 16)]


def test_sides_too_small_for_the_model_are_400(sd):
    """Issue 13, finding 17: a side under 16 pixels was a 500 from the UNet's group norm;
    upscale already refused such images."""
    response = edit(sd, png((15, 64)))
    assert response.status_code == 400
    assert response.json() == {
        "detail": {"msg": "image is 15x64 pixels; each side must be at least 16 pixels."}
    }
    smallest = edit(sd, png((16, 64)), seed="1")
    assert smallest.status_code == 200
    assert decode_image(smallest.json()["images"][0]["url"]).size == (16, 64)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "  "}, "prompt must not be empty."),
        ({"strength": "1.5"}, "strength must be between 0 and 1, got 1.5."),
        (
            {"strength": "0.1", "num_inference_steps": "4"},
            "num_inference_steps x strength must be at least 1, got 4 x 0.1.",
        ),
        (
            {"image_guidance_scale": "-1"},
            "image_guidance_scale must be between 0 and 50.0, got -1.0.",
        ),
        ({"num_images_per_prompt": "0"}, "num_images_per_prompt must be between 1 and 8, got 0."),
        ({"loras": '{"org/absent": 1}'}, "loras: adapter org/absent is not in MODEL_DIR."),
        ({"loras": '{"a/b": "x"}'}, 'loras: the weight of a/b must be a finite number, got "x".'),
    ],
)
def test_bad_values_are_400(sd, fields, message):
    response = edit(sd, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}
