"""upscale (the x4 upscaler) end to end over multipart HTTP, on the tiny upscaler."""

from __future__ import annotations

import io

import pytest
from conftest import serving
from helpers import decode_image, image_sizes_given, pixels
from PIL import Image

from tiny_models import TINY_SAFETY_CHECKER_STRICT, TINY_UPSCALER


def png(size=(40, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 160, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(make_settings):
    with serving(make_settings(pipeline="upscale", model_id=TINY_UPSCALER)) as client:
        yield client


def upscale(client, image=None, **fields):
    data = {"prompt": "sharp", "num_inference_steps": "2", **fields}
    return client.post("/upscale", files={"image": ("i.png", image or png())}, data=data)


def test_the_answer_is_four_times_the_input_and_seeds_reproduce(client):
    first = upscale(client, seed="5")
    assert first.status_code == 200, first.text
    [image] = first.json()["images"]
    assert decode_image(image["url"]).size == (160, 96)
    assert image["seed"] == 5 and image["nsfw"] is False
    again = upscale(client, seed="5").json()["images"][0]
    assert pixels(again["url"]) == pixels(image["url"])
    other = upscale(client, seed="6").json()["images"][0]
    assert pixels(other["url"]) != pixels(image["url"])


def test_inputs_over_the_bound_are_400_naming_the_largest_size(make_settings):
    settings = make_settings(
        pipeline="upscale", model_id=TINY_UPSCALER, upscale_max_input_pixels=4096
    )
    with serving(settings) as small:
        response = upscale(small, png((80, 60)))
        assert response.status_code == 400
        assert response.json() == {
            "detail": {
                "msg": "image is 80x60; upscale takes at most 4096 pixels (such as 64x64), so "
                "that the 4x result fits in GPU memory."
            }
        }
        assert upscale(small, png((64, 64))).status_code == 200


def test_the_safety_checker_flags_upscaled_images(make_settings):
    settings = make_settings(
        pipeline="upscale", model_id=TINY_UPSCALER, safety_checker_id=TINY_SAFETY_CHECKER_STRICT
    )
    with serving(settings) as strict:
        assert upscale(strict).json()["images"][0]["nsfw"] is True
        assert upscale(strict, safety_check="false").json()["images"][0]["nsfw"] is False


@pytest.mark.parametrize(
    ("fields", "image", "message"),
    [
        ({"prompt": " "}, None, "prompt must not be empty."),
        (
            {"num_inference_steps": "0"},
            None,
            "num_inference_steps must be between 1 and 150, got 0.",
        ),
        # Found by schemathesis (tests/test_fuzz.py): sides below the VAE's scale factor
        # (4 for the x4 upscaler) were a 500 from inside diffusers.
        ({}, png((3, 3)), "image is 3x3 pixels; each side must be at least 4 pixels."),
        ({}, png((130, 1)), "image is 130x1 pixels; each side must be at least 4 pixels."),
    ],
)
def test_bad_inputs_are_400(client, fields, image, message):
    response = upscale(client, image, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_a_thin_image_is_upscaled_and_checked_on_its_central_square(client):
    """Issue 13, finding 13: the safety checker (CLIP scales the short side to 224 pixels, the
    long side with it) is given the central square it keeps, cropped first."""
    checker = client.app.state.runtime.pipeline.safety_checker.processor
    with image_sizes_given(checker, "preprocess") as sizes:
        response = upscale(client, png((8, 128)), seed="1")
    assert response.status_code == 200, response.text
    assert decode_image(response.json()["images"][0]["url"]).size == (32, 512)
    assert sizes == [(32, 32)]


@pytest.mark.parametrize("size", [(8, 129), (4000, 16)])
def test_an_image_thinner_than_the_aspect_bound_is_400_naming_it(client, size):
    """Issue 13: upscale cannot resize its input, so its shape is bounded: a 16x16,384 image
    is within UPSCALE_MAX_INPUT_PIXELS but would make a 64x65,536 answer."""
    response = upscale(client, png(size))
    assert response.status_code == 400
    width, height = size
    assert response.json() == {
        "detail": {
            "msg": f"image is {width}x{height}; upscale takes images at most 16 times as long as "
            "they are wide (UPSCALE_MAX_ASPECT_RATIO)."
        }
    }
