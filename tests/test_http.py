"""The shared HTTP layer: auth, model id, validation messages, aliases, codes, bodies."""

from __future__ import annotations

import logging

import pytest
import yaml
from conftest import serving
from test_openapi import _reference

SMALL = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}


def msg(response) -> str:
    return response.json()["detail"]["msg"]


@pytest.fixture(scope="module")
def authed_client(make_settings):
    with serving(make_settings(auth_token="s3cret")) as client:
        yield client


def test_missing_or_wrong_token_is_401_with_a_challenge(authed_client):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic s3cret"}):
        response = authed_client.post("/text-to-image", json=SMALL, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert set(response.json()) == {"detail"} and msg(response)


def test_token_is_checked_before_the_body(authed_client):
    response = authed_client.post("/text-to-image", content=b"{not json")
    assert response.status_code == 401


def test_right_token_is_served(authed_client):
    response = authed_client.post(
        "/text-to-image", json=SMALL, headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status_code == 200
    assert len(response.json()["images"]) == 1


@pytest.mark.parametrize("path", ["/health", "/version", "/hardware/info", "/hardware/stats"])
def test_status_endpoints_work_with_and_without_the_token(authed_client, path):
    assert authed_client.get(path).status_code == 200
    assert authed_client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_model_id_must_be_empty_or_the_loaded_one(sd_client):
    response = sd_client.post("/text-to-image", json={**SMALL, "model_id": "org/other"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": {
            "msg": "pipeline configured with tiny-random/stable-diffusion-v1-5 "
            "but called with org/other."
        }
    }
    same = {**SMALL, "model_id": "tiny-random/stable-diffusion-v1-5"}
    assert sd_client.post("/text-to-image", json=same).status_code == 200


def test_trailing_slash_is_an_alias(sd_client):
    response = sd_client.post("/text-to-image/", json=SMALL)
    assert response.status_code == 200
    assert len(response.json()["images"]) == 1


@pytest.mark.parametrize(
    "path", ["/image-to-image", "/audio-to-text", "/llm", "/upscale", "/image-to-video"]
)
def test_other_pipelines_are_not_served(sd_client, path):
    response = sd_client.post(path, json=SMALL)
    assert response.status_code == 404
    assert msg(response) == "Not Found"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "  "}, "prompt must not be empty."),
        ({"width": 100}, "width must be a multiple of 8, got 100."),
        ({"height": 0}, "height must be between 64 and 2048, got 0."),
        ({"width": 4096}, "width must be between 64 and 2048, got 4096."),
        ({"num_inference_steps": 0}, "num_inference_steps must be between 1 and 150, got 0."),
        (
            {"num_inference_steps": 10**9},
            "num_inference_steps must be between 1 and 150, got 1000000000.",
        ),
        ({"num_images_per_prompt": -1}, "num_images_per_prompt must be between 1 and 8, got -1."),
        ({"num_images_per_prompt": 9}, "num_images_per_prompt must be between 1 and 8, got 9."),
        ({"guidance_scale": -0.5}, "guidance_scale must be between 0 and 50.0, got -0.5."),
        ({"guidance_scale": 1e308}, "guidance_scale must be between 0 and 50.0, got 1e+308."),
        ({"seed": 2**70}, f"seed must be between {-(2**63)} and {2**63 - 1}, got {2**70}."),
        ({"loras": '{"a/b": 1}'}, "loras: adapter a/b is not in MODEL_DIR."),
    ],
)
def test_bad_values_are_400_naming_the_field(sd_client, fields, message):
    response = sd_client.post("/text-to-image", json={**SMALL, **fields})
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_size_limits_follow_the_settings(make_settings):
    with serving(make_settings(image_size_max=128)) as client:
        response = client.post("/text-to-image", json={**SMALL, "width": 136})
        assert response.json() == {"detail": {"msg": "width must be between 64 and 128, got 136."}}


def test_wrong_types_and_broken_json_are_422(sd_client):
    for body in ({**SMALL, "width": "wide"}, {"width": 64}, [1, 2], "text"):
        response = sd_client.post("/text-to-image", json=body)
        assert response.status_code == 422
        assert isinstance(response.json()["detail"], list)
    for raw in (b"", b"{", b"\xff\xfe"):
        response = sd_client.post(
            "/text-to-image", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422


def test_a_422_never_echoes_the_submitted_value(sd_client):
    """Issue 13, finding 18: FastAPI's 422 carried the value back in ``input``."""
    response = sd_client.post("/text-to-image", json={**SMALL, "width": "secret-wide-value"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["body", "width"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
            }
        ]
    }


@pytest.mark.parametrize(
    ("raw", "status", "detail"),
    [
        # Issue 13, finding 3: NaN and 1e999 in an integer field were 500s with a traceback.
        (b'{"prompt": "a", "width": NaN}', 422, "width"),
        (b'{"prompt": "a", "seed": 1e999}', 422, "seed"),
        (b'{"prompt": "a", "guidance_scale": Infinity}', 400, "guidance_scale"),
        (b'{"prompt": "a", "guidance_scale": NaN}', 400, "guidance_scale"),
        # Issue 13, finding 9: a lone surrogate reached the tokenizer (500 "TypeError").
        (b'{"prompt": "a \\ud800 cat"}', 400, "prompt is not valid Unicode text."),
        (b'{"prompt": "a", "negative_prompt": "\\udfff"}', 400, "negative_prompt is not"),
    ],
)
def test_malformed_values_are_client_errors(sd_client, caplog, raw, status, detail):
    with caplog.at_level(logging.DEBUG):
        response = sd_client.post(
            "/text-to-image", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    if status == 422:
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", detail] and set(error) == {"type", "loc", "msg"}
    else:
        assert response.json()["detail"]["msg"].startswith(detail)
    assert "Traceback" not in caplog.text
    assert sd_client.get("/health").json() == {"status": "IDLE"}


def test_oversized_json_body_is_400_on_a_route_without_413(make_settings):
    with serving(make_settings(max_json_bytes=2048)) as client:
        response = client.post("/text-to-image", json={**SMALL, "prompt": "x" * 4000})
        assert response.status_code == 400
        assert msg(response) == "Request body too large: the limit is 2048 bytes."


BATTERY = [
    {"prompt": "a cat", "width": 10**12, "height": 10**12},
    {"prompt": "a cat", "width": 0, "height": -8},
    {"prompt": "a cat", "num_inference_steps": -5},
    {"prompt": "a cat", "num_inference_steps": 10**18},
    {"prompt": "a cat", "num_images_per_prompt": 10**6},
    {"prompt": "a cat", "guidance_scale": 1e308},
    {"prompt": "a cat", "seed": -(2**80)},
    {"prompt": None},
    {"prompt": ["a", "b"]},
    {"prompt": "a cat", "safety_check": "perhaps"},
    {"prompt": "a cat", "model_id": "someone/else"},
    {},
]


def test_a_battery_of_bad_inputs_leaves_the_runner_serving(sd_client):
    reference = _reference()["paths"]["/text-to-image"]["post"]["responses"]
    declared = {int(code) for code in reference}
    for body in BATTERY:
        response = sd_client.post("/text-to-image", json=body)
        assert response.status_code in declared and response.status_code != 200, body
        assert response.status_code in (400, 422), (body, response.text)
    for raw in (b"", b"null", b"{]", b"\x00" * 1000):
        response = sd_client.post(
            "/text-to-image", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
    good = sd_client.post("/text-to-image", json={**SMALL, "seed": 1})
    assert good.status_code == 200


def test_a_very_long_prompt_is_truncated_by_the_tokenizer_not_refused(sd_client):
    response = sd_client.post("/text-to-image", json={**SMALL, "prompt": "cat " * 20_000})
    assert response.status_code == 200


def test_every_answer_of_the_route_is_declared_in_the_reference(make_settings):
    """Drive the route into each of its answers and check each code is declared."""
    declared = {int(code) for code in _reference()["paths"]["/text-to-image"]["post"]["responses"]}
    seen = set()
    with serving(make_settings(auth_token="t", max_json_bytes=2048, max_queue=0)) as client:
        auth = {"Authorization": "Bearer t"}
        seen.add(client.post("/text-to-image", json=SMALL, headers=auth).status_code)
        seen.add(client.post("/text-to-image", json=SMALL).status_code)
        seen.add(client.post("/text-to-image", json={"prompt": ""}, headers=auth).status_code)
        seen.add(client.post("/text-to-image", json={}, headers=auth).status_code)
        big = {"prompt": "x" * 5000}
        seen.add(client.post("/text-to-image", json=big, headers=auth).status_code)
    with serving(make_settings(model_id="org/not-downloaded")) as client:
        seen.add(client.post("/text-to-image", json=SMALL).status_code)
        # The status routes declare only 200, and answer it in every state, ERROR included.
        assert client.get("/health").json() == {"status": "ERROR"}
        for path in ("/health", "/version", "/hardware/info", "/hardware/stats"):
            assert set(_reference()["paths"][path]["get"]["responses"]) == {"200"}
            assert client.get(path).status_code == 200
    assert seen == {200, 400, 401, 422, 500}
    assert seen <= declared


def test_error_bodies_never_carry_tracebacks(make_settings):
    with serving(make_settings(model_id="org/not-downloaded")) as client:
        response = client.post("/text-to-image", json=SMALL)
        assert response.status_code == 500
        assert "Traceback" not in response.text
        assert set(response.json()) == {"detail"} and set(response.json()["detail"]) == {"msg"}


def test_openapi_document_is_yaml_dumpable(sd_client):
    yaml.safe_dump(sd_client.get("/openapi.json").json())
