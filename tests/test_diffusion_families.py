"""The text-to-image families: SDXL-Lightning UNets in the SDXL base, SD3's three encoders,
FLUX.1 schnell, and the refusal of architectures a pipeline does not serve."""

from __future__ import annotations

import io
import logging

import pytest
from conftest import serving
from helpers import decode_image, denoiser_calls, pixels
from PIL import Image

from pipelines.diffusion_families import LightningUNet, family_of, lightning_unet
from tiny_models import (
    TINY_FLUX_SCHNELL,
    TINY_SD3,
    TINY_SDXL,
    TINY_SDXL_LIGHTNING,
    TINY_SDXL_TURBO,
    TINY_UPSCALER,
)

SMALL = {"width": 96, "height": 64}


def generate(client, **fields):
    response = client.post("/text-to-image", json={"prompt": "a cat", **SMALL, **fields})
    assert response.status_code == 200, response.text
    return response.json()["images"]


def refused(client, **fields) -> str:
    response = client.post("/text-to-image", json={"prompt": "a cat", **SMALL, **fields})
    assert response.status_code == 400, response.text
    return response.json()["detail"]["msg"]


@pytest.fixture(scope="module")
def lightning(make_settings):
    with serving(make_settings(model_id=TINY_SDXL_LIGHTNING, sdxl_base_id=TINY_SDXL)) as client:
        yield client


def test_lightning_runs_its_unet_in_the_sdxl_base(lightning, make_settings):
    pipeline = lightning.app.state.runtime.pipeline
    assert type(pipeline.pipe).__name__ == "StableDiffusionXLPipeline"
    assert type(pipeline.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipeline.pipe.scheduler.config.timestep_spacing == "trailing"
    images = generate(lightning, seed=4, num_images_per_prompt=2)
    assert [image["seed"] for image in images] == [4, 5]
    assert all(decode_image(image["url"]).size == (96, 64) for image in images)
    again = generate(lightning, seed=4, num_images_per_prompt=2)
    assert [pixels(i["url"]) for i in again] == [pixels(i["url"]) for i in images]
    # The same request on the base alone: its own UNet gives another image.
    with serving(make_settings(model_id=TINY_SDXL)) as base:
        plain = generate(base, seed=4, num_inference_steps=8, guidance_scale=0)
    assert pixels(plain[0]["url"]) != pixels(images[0]["url"])


def test_lightning_steps_and_guidance_apply_whatever_the_request_says(lightning):
    body = {"prompt": "a cat", "width": 64, "height": 64}
    # No suffix is the 8-step UNet, as ai-runner's pipelines/text_to_image.py "Default to 8step".
    assert denoiser_calls(lightning, body) == 8  # 8 steps, no guidance: one call each
    assert denoiser_calls(lightning, body | {"num_inference_steps": 30}) == 8
    assert denoiser_calls(lightning, body | {"guidance_scale": 9}) == 8


def test_the_step_count_comes_from_the_model_id(make_settings, tiny, caplog):
    tiny.need(TINY_SDXL_LIGHTNING)  # the repo the -4step id names
    model_id = TINY_SDXL_LIGHTNING + "-4step"
    with (
        caplog.at_level(logging.INFO),
        serving(make_settings(model_id=model_id, sdxl_base_id=TINY_SDXL)) as client,
    ):
        assert client.get("/health").json() == {"status": "IDLE"}
        body = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 2}
        assert denoiser_calls(client, body) == 4
    assert (
        f"{model_id}: UNet sdxl_lightning_4step_unet.safetensors from {TINY_SDXL_LIGHTNING} "
        f"in the {TINY_SDXL} base; scheduler EulerDiscreteScheduler on trailing timesteps"
    ) in caplog.text


def test_lightning_serves_image_to_image(make_settings):
    settings = make_settings(
        pipeline="image-to-image", model_id=TINY_SDXL_LIGHTNING, sdxl_base_id=TINY_SDXL
    )
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    with serving(settings) as client:
        response = client.post(
            "/image-to-image",
            data={"prompt": "make it blue", "seed": "1"},
            files={"image": ("in.png", buffer.getvalue(), "image/png")},
        )
    assert response.status_code == 200, response.text
    assert decode_image(response.json()["images"][0]["url"]).size == (64, 48)


def test_a_missing_lightning_base_fails_the_load_naming_it(make_settings):
    settings = make_settings(model_id=TINY_SDXL_LIGHTNING, sdxl_base_id="stabilityai/absent-base")
    with serving(settings) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        response = client.post("/text-to-image", json={"prompt": "a cat", **SMALL})
    assert response.status_code == 500
    assert "model stabilityai/absent-base is not in MODEL_DIR" in response.json()["detail"]["msg"]


@pytest.fixture(scope="module")
def sd3(make_settings):
    with serving(make_settings(model_id=TINY_SD3)) as client:
        yield client


def test_sd3_feeds_up_to_three_prompts_to_its_three_encoders(sd3):
    base = dict(seed=2, num_inference_steps=2)
    one = generate(sd3, prompt="a cat", **base)[0]
    assert decode_image(one["url"]).size == (96, 64)
    assert pixels(generate(sd3, prompt="a cat", **base)[0]["url"]) == pixels(one["url"])
    # With one prompt, SD3 gives it to all three encoders.
    same = generate(sd3, prompt="a cat|a cat|a cat", **base)[0]
    third = generate(sd3, prompt="a cat|a cat|a dog", **base)[0]
    assert pixels(same["url"]) == pixels(one["url"])
    assert pixels(third["url"]) != pixels(one["url"])
    pair = generate(sd3, prompt="a cat", num_images_per_prompt=2, **base)
    assert [image["seed"] for image in pair] == [2, 3]
    assert pixels(pair[1]["url"]) != pixels(pair[0]["url"])
    negative = generate(sd3, prompt="a cat", negative_prompt="ugly|blurry|dark", **base)[0]
    assert pixels(negative["url"]) != pixels(one["url"])


def test_prompt_parts_beyond_the_encoders_are_ignored_with_a_log_line(sd3, caplog):
    """ai-runner lets extra parts through (pipelines/utils/utils.py split_prompt); part C of
    issue 12: accepted, logged."""
    base = dict(seed=2, num_inference_steps=2)
    three = generate(sd3, prompt="a cat|a dog|a cow", **base)[0]
    with caplog.at_level(logging.INFO, logger="pipelines.diffusion"):
        four = generate(sd3, prompt="a cat|a dog|a cow|a hen", **base)[0]
    assert pixels(four["url"]) == pixels(three["url"])
    assert "prompt has 4 '|'-separated prompts but this model takes at most 3" in caplog.text


@pytest.fixture(scope="module")
def flux(make_settings):
    with serving(make_settings(model_id=TINY_FLUX_SCHNELL)) as client:
        yield client


def test_flux_schnell_generates_in_its_own_steps(flux):
    images = generate(flux, seed=8, num_images_per_prompt=2)
    assert [image["seed"] for image in images] == [8, 9]
    assert all(decode_image(image["url"]).size == (96, 64) for image in images)
    again = generate(flux, seed=8, num_images_per_prompt=2)
    assert [pixels(i["url"]) for i in again] == [pixels(i["url"]) for i in images]
    assert pixels(generate(flux, seed=8, prompt="a cat|a dog")[0]["url"]) != pixels(
        images[0]["url"]
    )
    body = {"prompt": "a cat", "width": 64, "height": 64}
    assert denoiser_calls(flux, body) == 4
    assert denoiser_calls(flux, body | {"num_inference_steps": 2}) == 2


def test_flux_ignores_a_negative_prompt_with_a_log_line(flux, caplog):
    """ai-runner drops it for FLUX (pipelines/text_to_image.py); part C of issue 12."""
    plain = generate(flux, seed=5)[0]
    with caplog.at_level(logging.INFO, logger="pipelines.diffusion"):
        negative = generate(flux, seed=5, negative_prompt="blurry|dark")[0]
    assert pixels(negative["url"]) == pixels(plain["url"])
    assert "negative_prompt ignored: FLUX.1 schnell models do not take one" in caplog.text


def test_flux_refuses_sizes_it_cannot_make(flux):
    """The image would not be the size asked for: this refusal stays."""
    assert refused(flux, width=72) == (
        "width must be a multiple of 16 for FLUX.1 schnell models, got 72."
    )


def test_an_architecture_the_pipeline_does_not_serve_fails_the_load(make_settings):
    with serving(make_settings(model_id=TINY_UPSCALER)) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        response = client.post("/text-to-image", json={"prompt": "a cat", **SMALL})
    assert response.status_code == 500
    message = response.json()["detail"]["msg"]
    assert (
        f"{TINY_UPSCALER} is a StableDiffusionUpscalePipeline (model_index.json); this "
        "pipeline serves Stable Diffusion 1.x/2.x (StableDiffusionPipeline), Stable Diffusion "
        "XL (StableDiffusionXLPipeline), Stable Diffusion 3 (StableDiffusion3Pipeline), "
        "FLUX.1 (FluxPipeline)"
    ) in message


SERVED = ("StableDiffusionXLPipeline", "FluxPipeline", "StableDiffusionPipeline")


@pytest.mark.parametrize(
    ("model_id", "class_name", "name", "steps", "guidance"),
    [
        ("SG161222/RealVisXL_V4.0_Lightning", "StableDiffusionXLPipeline", "Lightning", 6, 1.5),
        ("stabilityai/sdxl-turbo", "StableDiffusionXLPipeline", "Turbo", 2, 0),
        ("stabilityai/sd-turbo", "StableDiffusionPipeline", "Turbo", 2, 0),
        ("black-forest-labs/FLUX.1-schnell", "FluxPipeline", "FLUX.1 schnell", 4, 0),
        ("black-forest-labs/FLUX.1-dev", "FluxPipeline", "FLUX.1", None, None),
        (
            "stabilityai/stable-diffusion-xl-base-1.0",
            "StableDiffusionXLPipeline",
            "Stable Diffusion XL",
            None,
            None,
        ),
    ],
)
def test_families_come_from_the_architecture_and_id_conventions(
    model_id, class_name, name, steps, guidance
):
    family = family_of(model_id, class_name, SERVED)
    assert (family.name, family.steps, family.guidance_scale) == (name, steps, guidance)
    assert family.negative_prompt is (class_name != "FluxPipeline")


def test_lightning_unet_ids():
    # ai-runner's pipelines/text_to_image.py and image_to_image.py: "Default to 8step".
    assert lightning_unet("ByteDance/SDXL-Lightning") == LightningUNet(
        "ByteDance/SDXL-Lightning", 8
    )
    swap = lightning_unet("ByteDance/SDXL-Lightning-8step")
    assert swap.filename == "sdxl_lightning_8step_unet.safetensors"
    assert (swap.family.steps, swap.family.guidance_scale, swap.family.fixed) == (8, 0, True)
    assert lightning_unet("ByteDance/SDXL-Lightning-3step") is None
    assert lightning_unet("SG161222/RealVisXL_V4.0_Lightning") is None


def test_turbo_image_to_image_runs_its_few_steps_scaled_by_strength(make_settings):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (20, 90, 200)).save(buffer, format="PNG")
    settings = make_settings(pipeline="image-to-image", model_id=TINY_SDXL_TURBO)
    with serving(settings) as client:
        unet = client.app.state.runtime.pipeline.pipe.unet
        calls = []
        handle = unet.register_forward_pre_hook(lambda module, args: calls.append(1))
        counts = []
        try:
            for strength in ("0.8", "1.0"):
                calls.clear()
                response = client.post(
                    "/image-to-image",
                    data={"prompt": "make it green", "strength": strength, "seed": "3"},
                    files={"image": ("in.png", buffer.getvalue(), "image/png")},
                )
                assert response.status_code == 200, response.text
                assert decode_image(response.json()["images"][0]["url"]).size == (64, 48)
                counts.append(len(calls))
        finally:
            handle.remove()
    # Turbo: 2 steps and no guidance (one UNet call a step); strength 0.8 runs int(2 x 0.8).
    assert counts == [1, 2]
