"""JSON bodies on the six multipart routes, answered exactly as the form is.

The network's SDK sends JSON only (livepeer-gateway 1.0.0, http.py ``_json_request_parts``:
``Content-Type: application/json``, the payload ``json.dumps``'d, as ``call_runner`` in
live_runner.py sends it), and go-livepeer's live runner proxies the body and headers as
they come (doc/live-runner.md). Each test sends the same request as a form (the reference's
contract, ai-runner runner/src/runner/routes/*.py: ``File``/``Form`` parameters) and as
JSON, on a tiny model served over a real socket, and compares the answers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import httpx
import pytest
from conftest import served_over_tcp, serving
from examples import TINY, VALID
from fastapi.testclient import TestClient
from helpers import decode_image, pixels

from pipelines.registry import pipeline_class
from runner.app import create_app
from runner.json_bodies import JSON_BODIES_PATH, MAX_DATA_URL_PREFIX, base64_length
from runner.media.uploads import upload_fields

KiB = 1024
FILE_LIMIT = 64 * KiB  # MAX_IMAGE_BYTES and MAX_AUDIO_BYTES here
FIELD_ALLOWANCE = 1 * KiB  # MAX_JSON_BYTES: what the form's other fields may take
FORM_LIMIT = FIELD_ALLOWANCE + FILE_LIMIT
JSON_LIMIT = FIELD_ALLOWANCE + base64_length(FILE_LIMIT) + MAX_DATA_URL_PREFIX
MULTIPART = [
    "image-to-image",
    "image-to-video",
    "upscale",
    "audio-to-text",
    "segment-anything-2",
    "image-to-text",
]
SEEDED = {"image-to-image", "image-to-video", "upscale"}
MIME = {"image": "image/png", "audio": "audio/wav"}
TIMEOUT = 120.0


@pytest.fixture(scope="module", params=MULTIPART)
def runner(request, make_settings):
    pipeline = request.param
    settings = make_settings(
        pipeline=pipeline,
        model_id=TINY[pipeline],
        max_image_bytes=FILE_LIMIT,
        max_audio_bytes=FILE_LIMIT,
        max_json_bytes=FIELD_ALLOWANCE,
    )
    with served_over_tcp(settings) as (url, _app):
        yield Runner(pipeline, url)


class Runner:
    """One pipeline served over TCP, and its request as a form and as JSON."""

    def __init__(self, pipeline: str, url: str) -> None:
        self.pipeline = pipeline
        self.url = url
        self.path = "/" + pipeline
        self.uploads = upload_fields(pipeline_class(pipeline).route.params)
        self.fields = {k: v for k, v in VALID[pipeline].items() if k not in self.uploads}
        if pipeline in SEEDED:
            self.fields["seed"] = 7
        self.files = {k: VALID[pipeline][k] for k in self.uploads}

    def form(self, files: dict[str, bytes] | None = None, **fields: object) -> httpx.Response:
        files = self.files if files is None else files
        values = {k: str(v) for k, v in {**self.fields, **fields}.items()}
        parts = {k: (f"{k}.bin", data, MIME[self.uploads[k].kind]) for k, data in files.items()}
        return httpx.post(self.url + self.path, data=values, files=parts or None, timeout=TIMEOUT)

    def body(self, files: dict[str, bytes] | None = None, as_data_url: bool = True) -> dict:
        """The JSON request: the form's fields, each file as base64."""
        files = self.files if files is None else files
        body: dict = dict(self.fields)
        for name, data in files.items():
            text = base64.b64encode(data).decode()
            mime = MIME[self.uploads[name].kind]
            body[name] = f"data:{mime};base64,{text}" if as_data_url else text
        return body

    def json(
        self,
        files: dict[str, bytes] | None = None,
        as_data_url: bool = True,
        content_type: str = "application/json",
        **fields: object,
    ) -> httpx.Response:
        body = {**self.body(files, as_data_url), **fields}
        return self.raw(json.dumps(body).encode(), content_type)

    def raw(self, payload: bytes, content_type: str = "application/json") -> httpx.Response:
        return httpx.post(
            self.url + self.path,
            content=payload,
            headers={"content-type": content_type},
            timeout=TIMEOUT,
        )


def by_pixels(body: object) -> object:
    """``body`` with each PNG data URL replaced by its decoded pixels: two encodings of the
    same image are compared by what they show (see tests/test_media.py)."""
    if isinstance(body, dict):
        return {key: by_pixels(value) for key, value in body.items()}
    if isinstance(body, list):
        return [by_pixels(value) for value in body]
    if isinstance(body, str) and body.startswith("data:image/png;base64,"):
        return pixels(body)
    return body


def answer(response: httpx.Response) -> tuple[int, object]:
    return response.status_code, by_pixels(response.json())


def check_output(pipeline: str, body: dict) -> None:
    """The answer holds real output of the expected shape, not only the same bytes."""
    if pipeline == "image-to-image":
        assert decode_image(body["images"][0]["url"]).size == (64, 64)
    elif pipeline == "upscale":
        assert decode_image(body["images"][0]["url"]).size == (64, 64)  # 16x16, 4 times
    elif pipeline == "image-to-video":
        frames = body["frames"][0]
        assert frames and decode_image(frames[0]["url"]).size == (64, 64)
    elif pipeline == "segment-anything-2":
        assert json.loads(body["scores"]) and json.loads(body["masks"])
    else:
        assert isinstance(body["text"], str)


def test_json_gets_the_answer_the_form_gets(runner):
    form = runner.form()
    assert form.status_code == 200, form.text
    check_output(runner.pipeline, form.json())
    data_url = runner.json()
    plain = runner.json(as_data_url=False, content_type="application/json; charset=utf-8")
    assert answer(data_url) == answer(form)
    assert answer(plain) == answer(form)


def test_the_sdks_call_runner_gets_the_forms_answer(runner):
    """The network's own client, straight to the runner (no orchestrator between): what it
    sends is what the route takes (livepeer-gateway 1.0.0 live_runner.py ``call_runner``)."""
    sdk = pytest.importorskip("livepeer_gateway.live_runner")
    form = runner.form()
    assert form.status_code == 200, form.text
    call = sdk.call_runner(runner.url + runner.path, payload=runner.body(), timeout=TIMEOUT)
    result = asyncio.run(call)
    assert by_pixels(result.data) == by_pixels(form.json())


def test_fields_the_form_takes_as_text_also_take_json_values(runner):
    """SAM 2's prompts and audio-to-text's metadata are JSON text in the form (ai-runner
    runner/src/runner/routes/segment_anything_2.py, audio_to_text.py: ``Form`` strings)."""
    text_values = {
        "segment-anything-2": {"point_coords": [[4, 4]], "point_labels": [1]},
        "audio-to-text": {"metadata": {"duration": 1}, "return_timestamps": True},
        "image-to-image": {"loras": {}},
        "upscale": {"prompt": "a cat"},
        "image-to-video": {"fps": "6"},  # and numbers as the form's text
        "image-to-text": {"prompt": "a cat"},
    }[runner.pipeline]
    as_text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in text_values.items()}
    form = runner.form(**as_text)
    assert form.status_code == 200, form.text
    assert answer(runner.json(**text_values)) == answer(form)


def test_an_empty_value_is_a_field_left_out_as_in_the_form(runner):
    """FastAPI reads an empty form value as the field left out (fastapi/dependencies/utils.py
    ``_get_multidict_value``): its default, or a 422 where it is required."""
    empty = {
        "image-to-image": {"num_images_per_prompt": ""},
        "image-to-video": {"motion_bucket_id": ""},
        "upscale": {"num_inference_steps": ""},
        "segment-anything-2": {"box": "", "multimask_output": ""},
        "audio-to-text": {"metadata": "", "return_timestamps": ""},
        "image-to-text": {"prompt": "", "model_id": ""},
    }[runner.pipeline]
    form = runner.form(**empty)
    assert form.status_code == 200, form.text
    assert answer(runner.json(**empty)) == answer(form)
    if "prompt" in runner.fields:  # required: left out, it is the form's 422
        form = runner.form(prompt="")
        assert form.status_code == 422
        assert answer(runner.json(prompt="")) == answer(form)


def test_a_file_over_its_limit_gets_the_forms_error(runner):
    """Its base64 is larger than the form's whole body limit, so this also shows the JSON
    body's limit is the base64-expanded one."""
    name = next(iter(runner.uploads))
    too_large = {name: b"\0" * (FILE_LIMIT + 1)}
    assert base64_length(FILE_LIMIT + 1) > FORM_LIMIT
    form = runner.form(files=too_large)
    expected = f"{name} is too large: the limit is {FILE_LIMIT} bytes."
    assert form.json() == {"detail": {"msg": expected}}
    assert form.status_code in (400, 413)  # 413 where the route declares it
    assert answer(runner.json(files=too_large)) == answer(form)
    assert answer(runner.json(files=too_large, as_data_url=False)) == answer(form)


def refused_before_the_body(url: str, path: str, content_type: str, length: int) -> tuple:
    """Send only the head of a request announcing ``length`` bytes: the answer must come
    without any of the body sent."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        data = b""
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            assert time.monotonic() < deadline, data
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_an_oversized_body_is_refused_before_it_is_read(runner):
    form_type = "multipart/form-data; boundary=x"
    status, body = refused_before_the_body(runner.url, runner.path, form_type, FORM_LIMIT + 1)
    assert body == {"detail": {"msg": f"Request body too large: the limit is {FORM_LIMIT} bytes."}}
    json_status, json_body = refused_before_the_body(
        runner.url, runner.path, "application/json", JSON_LIMIT + 1
    )
    assert json_status == status
    assert json_body == {
        "detail": {"msg": f"Request body too large: the limit is {JSON_LIMIT} bytes."}
    }


def test_an_oversized_body_without_a_length_is_refused_while_streaming(runner):
    def chunks():
        for _ in range(JSON_LIMIT // KiB + 2):
            yield b" " * KiB

    response = httpx.post(
        runner.url + runner.path,
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.json() == {
        "detail": {"msg": f"Request body too large: the limit is {JSON_LIMIT} bytes."}
    }
    assert response.status_code in (400, 413)


def test_an_undecodable_file_gets_the_forms_error(runner):
    name, upload = next(iter(runner.uploads.items()))
    broken = runner.files[name][: len(runner.files[name]) // 2]
    if upload.kind == "audio":
        broken = b"RIFF\x00\x00\x00\x00WAVEnot audio at all" * 8
    form = runner.form(files={name: broken})
    assert form.status_code in (400, 415), form.text
    assert "could not be decoded" in form.json()["detail"]["msg"]
    assert answer(runner.json(files={name: broken})) == answer(form)


def test_an_empty_file_gets_the_forms_error(runner):
    name = next(iter(runner.uploads))
    form = runner.form(files={name: b""})
    assert answer(runner.json(files={name: b""})) == answer(form)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "{name} is not valid base64."),
        ("data:image/png;base64,@@@@", "{name} is not valid base64."),
        ("data:image/png,iVBORw0KGgo=", "{name} is not a base64 data URL"),
        ("data:image/png;base64;iVBORw0KGgo=", "{name} is not a base64 data URL"),
    ],
)
def test_malformed_base64_is_a_400_naming_the_field(runner, value, message):
    name = next(iter(runner.uploads))
    body = {**runner.fields, name: value}
    response = runner.raw(json.dumps(body).encode())
    assert response.status_code == 400
    assert response.json()["detail"]["msg"].startswith(message.format(name=name))
    assert value not in response.text


def test_a_missing_file_is_the_forms_422(runner):
    name = next(iter(runner.uploads))
    form = httpx.post(
        runner.url + runner.path,
        data={k: str(v) for k, v in runner.fields.items()} or {"model_id": ""},
        timeout=TIMEOUT,
    )
    assert form.status_code == 422
    assert {"type": "missing", "loc": ["body", name], "msg": "Field required"} in (
        form.json()["detail"]
    )
    assert answer(runner.json(files={})) == answer(form)


# A value of the wrong type for a field of each route that is not text.
BAD_VALUE = {
    "image-to-image": ("num_inference_steps", "NOT-A-NUMBER"),
    "image-to-video": ("fps", "NOT-A-NUMBER"),
    "upscale": ("num_inference_steps", "NOT-A-NUMBER"),
    "segment-anything-2": ("multimask_output", "NOT-A-BOOL"),
}


def test_an_invalid_field_is_the_forms_422_without_its_value(runner):
    if runner.pipeline in BAD_VALUE:
        field, value = BAD_VALUE[runner.pipeline]
        form = runner.form(**{field: value})
        assert form.status_code == 422
        assert [error["loc"] for error in form.json()["detail"]] == [["body", field]]
        response = runner.json(**{field: value})
        assert answer(response) == answer(form)
        assert value not in response.text
    null = runner.json(model_id=None)  # only JSON can send a null
    assert null.status_code == 422
    assert null.json() == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "model_id"],
                "msg": "Input should be a valid string",
            }
        ]
    }


def test_a_missing_required_field_is_the_forms_422(runner):
    prompt = pipeline_class(runner.pipeline).route.params.model_fields.get("prompt")
    if prompt is None or not prompt.is_required():
        pytest.skip(f"{runner.pipeline} requires no field but its file")
    fields = {k: str(v) for k, v in runner.fields.items() if k != "prompt"}
    parts = {k: (k, data) for k, data in runner.files.items()}
    form = httpx.post(runner.url + runner.path, data=fields, files=parts, timeout=TIMEOUT)
    assert form.status_code == 422
    assert form.json()["detail"] == [
        {"type": "missing", "loc": ["body", "prompt"], "msg": "Field required"}
    ]
    body = runner.body()
    del body["prompt"]
    assert answer(runner.raw(json.dumps(body).encode())) == answer(form)


def test_the_body_must_be_a_json_object(runner):
    for raw, loc in ((b"{]", ["body", 1]), (b"[]", ["body"]), (b"null", ["body"])):
        response = runner.raw(raw)
        assert response.status_code == 422, raw
        assert [error["loc"] for error in response.json()["detail"]] == [loc], raw


def test_openapi_json_is_still_the_forms_only(runner):
    document = httpx.get(runner.url + "/openapi.json").json()
    assert JSON_BODIES_PATH not in document["paths"]
    assert set(document["paths"]) == {
        "/health",
        "/version",
        "/hardware/info",
        "/hardware/stats",
        runner.path,
    }
    body = document["paths"][runner.path]["post"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]
    assert not [name for name in document["components"]["schemas"] if "Json" in name]


def test_the_second_document_lists_the_json_form(runner):
    served = httpx.get(runner.url + "/openapi.json").json()
    document = httpx.get(runner.url + JSON_BODIES_PATH).json()
    form_op = served["paths"][runner.path]["post"]
    json_op = document["paths"][runner.path]["post"]
    assert json_op["operationId"] == form_op["operationId"]
    assert json_op["responses"] == form_op["responses"]
    [(content_type, media)] = json_op["requestBody"]["content"].items()
    assert content_type == "application/json"
    json_schema = document["components"]["schemas"][media["schema"]["$ref"].rsplit("/", 1)[-1]]
    form_ref = form_op["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form_schema = served["components"]["schemas"][form_ref.rsplit("/", 1)[-1]]
    assert list(json_schema["properties"]) == list(form_schema["properties"])
    assert json_schema.get("required") == form_schema.get("required")
    for name in runner.uploads:
        assert form_schema["properties"][name]["format"] == "binary"
        assert json_schema["properties"][name]["type"] == "string"
        assert "base64 data URL" in json_schema["properties"][name]["description"]


def test_a_json_body_needs_the_token_the_form_needs(make_settings):
    """The token is checked by the gate before any body is read, whatever its type; the
    second document is public like /openapi.json."""
    settings = make_settings(
        pipeline="image-to-text", model_id=TINY["image-to-text"], auth_token="t"
    )
    with serving(settings) as client:
        image = base64.b64encode(VALID["image-to-text"]["image"]).decode()
        unauthorised = client.post("/image-to-text", json={"image": image})
        form = client.post("/image-to-text", files={"image": ("i.png", b"x", "image/png")})
        assert answer(unauthorised) == answer(form)
        assert unauthorised.status_code == 401
        assert client.get(JSON_BODIES_PATH).status_code == 200
        auth = {"Authorization": "Bearer t"}
        for path in ("/image-to-text", "/image-to-text/"):
            response = client.post(path, json={"image": image}, headers=auth)
            assert response.status_code == 200, response.text
            assert isinstance(response.json()["text"], str)


def test_a_json_route_documents_its_own_body_in_the_second_document(make_settings):
    client = TestClient(create_app(make_settings()))  # no lifespan: nothing loads
    document = client.get(JSON_BODIES_PATH).json()
    body = document["paths"]["/text-to-image"]["post"]["requestBody"]
    served = client.get("/openapi.json").json()["paths"]["/text-to-image"]["post"]
    assert body == served["requestBody"]
