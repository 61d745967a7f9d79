"""segment-anything-2 (SAM 2) end to end over multipart HTTP, on the tiny SAM 2 model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import serving
from helpers import image_sizes_given
from PIL import Image

from tiny_models import TINY_SAM2
from tiny_models.hub_layout import snapshot_folder
from tiny_models.vision import build_sam2

WIDTH, HEIGHT = 96, 64


def picture() -> bytes:
    pixels = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pixels[16:48, 24:72] = (220, 40, 40)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(make_settings):
    with serving(make_settings(pipeline="segment-anything-2", model_id=TINY_SAM2)) as client:
        yield client


def segment(client, **fields):
    data = {"point_coords": "[[48, 32]]", "point_labels": "[1]", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    return client.post("/segment-anything-2", files={"image": ("p.png", picture())}, data=data)


def parsed(response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"masks", "scores", "logits"}
    return {key: np.asarray(json.loads(value)) for key, value in body.items()}


def test_three_masks_at_image_size_sorted_by_score(client):
    result = parsed(segment(client))
    assert result["masks"].shape == (3, HEIGHT, WIDTH)
    assert result["scores"].shape == (3,)
    assert list(result["scores"]) == sorted(result["scores"], reverse=True)
    assert result["logits"].shape == (3, 256, 256)
    assert result["masks"].dtype == np.float64  # logits, not thresholded
    assert parsed(segment(client))["scores"].tolist() == result["scores"].tolist()


def test_return_logits_false_binarises_the_masks_and_still_returns_the_logits(client):
    """ai-runner routes/segment_anything_2.py always answers the low-resolution logits;
    return_logits only changes the masks (SAM2ImagePredictor.predict)."""
    logits = parsed(segment(client))
    result = parsed(segment(client, return_logits="false"))
    assert set(np.unique(result["masks"])) <= {0, 1}
    assert result["masks"].shape == (3, HEIGHT, WIDTH)
    assert result["logits"].shape == (3, 256, 256)
    assert result["logits"].tolist() == logits["logits"].tolist()


def test_single_mask_output(client):
    result = parsed(segment(client, multimask_output="false"))
    assert result["masks"].shape[0] == 1 and result["scores"].shape == (1,)


def test_box_and_normalised_prompts(client):
    boxed = parsed(segment(client, point_coords=None, point_labels=None, box="[24, 16, 72, 48]"))
    assert boxed["masks"].shape[1:] == (HEIGHT, WIDTH)
    normalised = parsed(segment(client, point_coords="[[0.5, 0.5]]", normalize_coords="false"))
    pixels = parsed(segment(client))
    assert np.allclose(normalised["scores"], pixels["scores"], atol=1e-4)


def test_mask_input_is_accepted(client):
    previous = json.dumps(np.zeros((1, 256, 256)).tolist())
    assert segment(client, mask_input=previous).status_code == 200


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"point_coords": "[[1, 2"},
            "point_coords is not valid JSON: Expecting ',' delimiter at character 6.",
        ),
        ({"point_coords": "[1, 2]"}, "point_coords must be a non-empty Nx2 list of [x, y] points."),
        (
            {"point_labels": "[1, 0]"},
            "point_labels must hold one label per point: 1 points, 2 labels.",
        ),
        ({"point_labels": "[7]"}, "point_labels must be 1 (foreground) or 0 (background)."),
        ({"point_labels": None}, "point_labels is required with point_coords."),
        (
            {"point_coords": "[[500, 10]]"},
            "point_coords has coordinates outside the image (96x64).",
        ),
        (
            {"point_coords": "[[0.5, 2]]", "normalize_coords": "false"},
            "point_coords has coordinates outside [0, 1] (normalize_coords is false) (96x64).",
        ),
        ({"box": "[1, 2, 3]"}, "box must be four numbers: [x0, y0, x1, y1]."),
        ({"box": "[50, 10, 20, 30]"}, "box must have x1 >= x0 and y1 >= y0."),
        ({"mask_input": "[[1, 2]]"}, "mask_input must be 1x256x256, got 1x2."),
        ({"point_coords": '[["a", "b"]]'}, "point_coords must be an Nx2 list of numbers."),
        (
            {"point_coords": None, "point_labels": None},
            "give at least one prompt: point_coords, box or mask_input.",
        ),
    ],
)
def test_bad_prompts_are_400_naming_the_field(client, fields, message):
    response = segment(client, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


BIG = "9" * 400
DEEP = "[" * 50_000 + "]" * 50_000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"point_coords": f"[[{BIG}, 1]]"},
            "point_coords holds an integer of 400 digits; at most 20 are taken.",
        ),
        (
            {"point_labels": f"[{BIG}]"},
            "point_labels holds an integer of 400 digits; at most 20 are taken.",
        ),
        ({"box": f"[0, 0, {BIG}, 1]"}, "box holds an integer of 400 digits; at most 20 are taken."),
        (
            {"mask_input": f"[[[-{BIG}]]]"},
            "mask_input holds an integer of 400 digits; at most 20 are taken.",
        ),
        ({"point_coords": DEEP}, "point_coords is nested too deeply: at most 8 levels."),
        ({"point_labels": DEEP}, "point_labels is nested too deeply: at most 8 levels."),
        ({"box": DEEP}, "box is nested too deeply: at most 8 levels."),
        ({"mask_input": DEEP}, "mask_input is nested too deeply: at most 8 levels."),
        ({"mask_input": "[" * 9 + "]" * 9}, "mask_input is nested too deeply: at most 8 levels."),
        ({"mask_input": "[[[1e300]]]"}, "mask_input must hold finite numbers."),
        (
            {"point_coords": json.dumps([[1, 1]] * 257), "point_labels": json.dumps([1] * 257)},
            "point_coords: at most 256 points (MAX_PROMPT_POINTS), got 257.",
        ),
    ],
)
def test_hostile_prompts_are_400_naming_the_field(client, fields, message):
    """Issue 13, finding 16: a 400-digit integer (OverflowError) or arrays nested 50,000 deep
    (RecursionError) were 500s; 100,000 points ran for 52 s."""
    response = segment(client, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_the_most_points_allowed_are_served(client):
    points = json.dumps([[48, 32]] * 256)
    response = segment(client, point_coords=points, point_labels=json.dumps([1] * 256))
    assert parsed(response)["masks"].shape == (3, HEIGHT, WIDTH)


def png_of(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(8, 5_000_000), (8000, 5000)])
def test_masks_larger_than_the_bound_are_400_naming_it(client, size):
    """Issue 13, finding 13: 8x5,000,000 (inside MAX_IMAGE_PIXELS) got the process killed for
    memory, and 8000x5000 made a 530 MB answer: the masks are the image's size."""
    response = client.post(
        "/segment-anything-2",
        files={"image": ("thin.png", png_of(size))},
        data={"point_coords": "[[4, 4]]", "point_labels": "[1]"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": {
            "msg": f"image is {size[0]}x{size[1]} pixels; segment-anything-2 answers masks of "
            "the image's size, for images of at most 16777216 pixels (MAX_MASK_PIXELS)."
        }
    }


def test_a_thin_image_reaches_the_model_at_its_input_size(client):
    """Issue 13, finding 13: the processor resized a thin image itself (8x1,000,000 peaked at
    4.95 GB); it is brought to the model's 1024x1024 first, with bounded work, and its masks
    are still the image's size."""
    image_processor = client.app.state.runtime.pipeline.processor.image_processor
    with image_sizes_given(image_processor, "preprocess") as sizes:
        response = client.post(
            "/segment-anything-2",
            files={"image": ("thin.png", png_of((8, 20_000)))},
            data={"point_coords": "[[4, 10000]]", "point_labels": "[1]"},
        )
    assert sizes == [(1024, 1024)]
    assert parsed(response)["masks"].shape == (3, 20_000, 8)


def test_an_original_sam2_id_loads_its_transformers_conversion(make_settings, tmp_path):
    """The network asks for facebook/sam2-hiera-large; transformers reads ...-hf, which ships
    weights and config only."""
    folder = snapshot_folder(tmp_path, "facebook/sam2-hiera-tiny-hf", "1")
    build_sam2(folder, seed=0)
    (folder / "processor_config.json").unlink()
    settings = make_settings(
        pipeline="segment-anything-2", model_id="facebook/sam2-hiera-tiny", model_dir=tmp_path
    )
    with serving(settings) as converted:
        assert parsed(segment(converted))["masks"].shape == (3, HEIGHT, WIDTH)
    missing = make_settings(
        pipeline="segment-anything-2", model_id="facebook/sam2-hiera-small", model_dir=tmp_path
    )
    with serving(missing) as client:
        message = segment(client).json()["detail"]["msg"]
        assert "nor its conversion facebook/sam2-hiera-small-hf" in message


@pytest.mark.parametrize(
    "shape", [(1, 3, 200_000, 16), (1, 3, 16, 200_000), (1, 3, 700, 500), (3,), (1, 0, 4, 4)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_masks_are_written_in_pieces_as_the_same_json(shape, dtype):
    """Issue 13's attack mix: one orjson call over a thin image's masks held the GIL for
    150 ms and more (/health p99 146 ms); pieces give the event loop its turns."""
    import orjson

    from pipelines.segment_anything_2 import json_in_pieces

    values = np.random.default_rng(0).standard_normal(shape).round(4).astype(dtype)
    whole = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    assert json_in_pieces(values) == whole
