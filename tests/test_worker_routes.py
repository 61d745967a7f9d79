"""Every pipeline route, called as go-livepeer's AI worker calls it and read as it reads the
answers (see go_worker.py for what is emulated and from which go-livepeer files)."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest
from conftest import serving
from examples import TINY
from go_worker import (
    GoWorker,
    assemble_video,
    check_png,
    data_url_bytes,
    failed,
    go_json_float32,
    go_percent_f,
    json_request,
    multipart_request,
    succeeded,
)
from helpers import encode_audio, max_pixel_difference, tone
from PIL import Image

from tiny_models import (
    TINY_BLIP,
    TINY_MMS_TTS,
    TINY_SAM2,
    TINY_SD,
    TINY_SVD,
    TINY_UPSCALER,
    TINY_WHISPER,
)


def image_bytes(size=(96, 64), fmt="PNG") -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def worker_for(make_settings, pipeline: str):
    """The pipeline's runner in-process on its tiny model, and the worker's client for it
    (module-scoped by the fixtures below)."""
    with serving(make_settings(pipeline=pipeline, model_id=TINY[pipeline])) as client:
        yield GoWorker(client)


@pytest.fixture(scope="module")
def text_to_image(sd_client):
    return GoWorker(sd_client)


@pytest.fixture(scope="module")
def image_to_image(make_settings):
    yield from worker_for(make_settings, "image-to-image")


@pytest.fixture(scope="module")
def image_to_video(make_settings):
    yield from worker_for(make_settings, "image-to-video")


@pytest.fixture(scope="module")
def upscale(make_settings):
    yield from worker_for(make_settings, "upscale")


@pytest.fixture(scope="module")
def audio_to_text(make_settings):
    yield from worker_for(make_settings, "audio-to-text")


@pytest.fixture(scope="module")
def segment_anything_2(make_settings):
    yield from worker_for(make_settings, "segment-anything-2")


@pytest.fixture(scope="module")
def image_to_text(make_settings):
    yield from worker_for(make_settings, "image-to-text")


@pytest.fixture(scope="module")
def text_to_speech(make_settings):
    yield from worker_for(make_settings, "text-to-speech")


# -- the emulation itself ---------------------------------------------------------------------


def test_values_are_formatted_as_go_formats_them():
    """multipart.go: fmt.Sprintf("%f") of a float32, strconv.Itoa, strconv.FormatBool;
    runner.gen.go request types through encoding/json (field order, omitempty, float32)."""
    assert go_percent_f(0.8) == "0.800000" and go_percent_f(7.5) == "7.500000"
    assert go_percent_f(0.02) == "0.020000"
    assert [go_json_float32(v) for v in (7.5, 1.0, 0.1, 0, 1e-7)] == [
        "7.5",
        "1",
        "0.1",
        "0",
        "1e-07",
    ]
    content_type, body = json_request(
        "/text-to-image", prompt="a <cat> & dog", width=64, seed=3, guidance_scale=0.1
    )
    assert content_type == "application/json"
    assert body == (
        b'{"guidance_scale":0.1,"prompt":"a \\u003ccat\\u003e \\u0026 dog","seed":3,"width":64}'
    )
    content_type, body = multipart_request(
        "/image-to-image", ("in put.jpg", b"JPEGDATA"), prompt="p", strength=0.8, safety_check=False
    )
    boundary = content_type.removeprefix("multipart/form-data; boundary=")
    assert len(boundary) == 60
    assert (
        body
        == (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="image"; filename="in put.jpg"\r\n'
            "Content-Type: application/octet-stream\r\n\r\nJPEGDATA"
            f"\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="prompt"\r\n\r\np'
            f"\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="strength"\r\n\r\n0.800000'
            f"\r\n--{boundary}\r\n"
            'Content-Disposition: form-data; name="safety_check"\r\n\r\nfalse'
            f"\r\n--{boundary}--\r\n"
        ).encode()
    )


# -- every route, as the worker calls it ------------------------------------------------------


def test_text_to_image(text_to_image, tmp_path):
    """worker.go TextToImage: GenTextToImageWithResponse(json.Marshal(TextToImageParams))."""
    result = succeeded(
        text_to_image.json(
            "/text-to-image",
            model_id=TINY_SD,
            prompt="a lighthouse",
            width=96,
            height=64,
            guidance_scale=7.5,
            num_inference_steps=2,
            num_images_per_prompt=2,
            seed=7,
            safety_check=True,
        )
    )
    assert [image["seed"] for image in result["images"]] == [7, 8]
    for i, image in enumerate(result["images"]):
        with Image.open(check_png(image["url"], tmp_path / f"{i}.png")) as decoded:
            assert decoded.size == (96, 64)
        assert image["nsfw"] is False


def test_seeds_of_a_request_stay_in_go_int_range(text_to_image):
    """Media.Seed is a Go int: an answer seed past int64 fails json.Unmarshal of the whole
    answer. Image i of seed s uses s + i, wrapped as Go's int addition wraps."""
    result = succeeded(
        text_to_image.json(
            "/text-to-image",
            model_id="",
            prompt="a cat",
            width=64,
            height=64,
            num_inference_steps=1,
            num_images_per_prompt=2,
            seed=2**63 - 1,
        )
    )
    assert [image["seed"] for image in result["images"]] == [2**63 - 1, -(2**63)]
    again = succeeded(
        text_to_image.json(
            "/text-to-image", prompt="a cat", width=64, height=64, num_inference_steps=1,
            seed=-(2**63),
        )
    )  # fmt: skip
    # the wrapped seed reproduces the image (batched kernels may round the last bit apart)
    assert max_pixel_difference(again["images"][0]["url"], result["images"][1]["url"]) <= 2


def test_image_to_image(image_to_image, tmp_path):
    """multipart.go NewImageToImageMultipartWriter: strength and guidance as %f."""
    result = succeeded(
        image_to_image.multipart(
            "/image-to-image",
            ("holiday photo.jpg", image_bytes((96, 64), "JPEG")),
            prompt="make it autumn",
            model_id=TINY_SD,
            strength=0.8,
            guidance_scale=7.5,
            image_guidance_scale=1.5,
            negative_prompt="blurry",
            safety_check=False,
            seed=3,
            num_images_per_prompt=1,
            num_inference_steps=4,
        )
    )
    [image] = result["images"]
    assert image["seed"] == 3 and image["nsfw"] is False
    with Image.open(check_png(image["url"], tmp_path / "out.png")) as decoded:
        assert decoded.size == (96, 64)


def test_image_to_video_frames_assemble_at_the_requests_fps_and_size(image_to_video, tmp_path):
    """worker.go ImageToVideo, then core/ai_orchestrator.go ImageToVideo: exactly one video;
    its frames written as <i>.png and transcoded at the request's fps and size."""
    fields = dict(width=96, height=64, fps=8, num_inference_steps=2, seed=5)
    result = succeeded(
        image_to_video.multipart(
            "/image-to-video",
            ("still.png", image_bytes((96, 64))),
            model_id=TINY_SVD,
            motion_bucket_id=127,
            noise_aug_strength=0.02,
            safety_check=True,
            **fields,
        )
    )
    assert len(result["frames"]) == 1
    [frames] = result["frames"]
    assert len(frames) > 1 and all(frame["seed"] == 5 for frame in frames)
    video = assemble_video([f["url"] for f in frames], tmp_path / "frames", 8, 96, 64)
    assert video == {"frames": len(frames), "size": (96, 64), "rate": "8/1"}
    for i in range(len(frames)):
        with Image.open(tmp_path / "frames" / f"{i}.png") as decoded:
            assert decoded.size == (96, 64)


def test_upscale(upscale, tmp_path):
    """multipart.go NewUpscaleMultipartWriter."""
    result = succeeded(
        upscale.multipart(
            "/upscale",
            ("small.png", image_bytes((40, 24))),
            prompt="sharp",
            model_id=TINY_UPSCALER,
            safety_check=True,
            seed=2,
            num_inference_steps=2,
        )
    )
    [image] = result["images"]
    with Image.open(check_png(image["url"], tmp_path / "up.png")) as decoded:
        assert decoded.size == (160, 96)


def test_audio_to_text_with_the_gateways_metadata(audio_to_text):
    """server/ai_process.go submitAudioToText: metadata {"duration": "<whole seconds>"} as a
    string (the 2.6 s file is declared "2"); return_timestamps as the caller sent it."""
    audio = encode_audio(tone(2.6), 16_000, "mp3", "libmp3lame")
    metadata = json.dumps({"duration": "2"}, separators=(",", ":"))
    for spelling in (None, "1", "false"):
        result = succeeded(
            audio_to_text.multipart(
                "/audio-to-text",
                ("voice note.mp3", audio),
                model_id=TINY_WHISPER,
                return_timestamps=spelling,
                metadata=metadata,
            )
        )
        assert isinstance(result["text"], str)
        assert (result["chunks"] == []) == (spelling == "false")


def test_segment_anything_2_always_returns_logits(segment_anything_2):
    """multipart.go NewSegmentAnything2MultipartWriter; ai-runner routes/segment_anything_2.py
    answers the low-resolution logits whatever return_logits says."""
    for return_logits in (True, False):
        result = succeeded(
            segment_anything_2.multipart(
                "/segment-anything-2",
                ("scene.png", image_bytes((96, 64))),
                model_id=TINY_SAM2,
                point_coords="[[48,32]]",
                point_labels="[1]",
                multimask_output=True,
                return_logits=return_logits,
                normalize_coords=True,
            )
        )
        masks, scores, logits = (
            np.asarray(json.loads(result[key])) for key in ("masks", "scores", "logits")
        )
        assert masks.shape == (3, 64, 96) and scores.shape == (3,)
        assert logits.shape == (3, 256, 256)


def test_image_to_text_with_and_without_a_prompt(image_to_text):
    """multipart.go NewImageToTextMultipartWriter writes prompt only when the caller set it."""
    for prompt in (None, "a picture of"):
        result = succeeded(
            image_to_text.multipart(
                "/image-to-text", ("photo.webp", image_bytes(fmt="WEBP")), prompt=prompt,
                model_id=TINY_BLIP,
            )
        )  # fmt: skip
        assert isinstance(result["text"], str)


def test_text_to_speech(text_to_speech):
    """worker.go TextToSpeech: json.Marshal(TextToSpeechParams); the gateway keeps the audio
    data URL's bytes as they are (ai/worker/b64.go ReadAudioB64DataUrl)."""
    result = succeeded(
        text_to_speech.json(
            "/text-to-speech",
            model_id=TINY_MMS_TTS,
            text="Hello there.",
            description="A calm voice.",
        )
    )
    with wave.open(io.BytesIO(data_url_bytes(result["audio"]["url"], "audio/wav"))) as wav:
        assert wav.getnframes() > 0 and wav.getnchannels() == 1


def test_text_to_speech_without_text_is_a_declared_error(text_to_speech):
    """TextToSpeechParams.Text is an omitempty pointer: a caller may leave it out."""
    error = failed(text_to_speech.json("/text-to-speech", model_id=TINY_MMS_TTS), 400)
    assert error.startswith("text-to-speech container returned 400: ")


def test_a_file_name_as_the_caller_gave_it(image_to_text):
    """CreateFormFile writes the caller's file name as it is: empty, quoted or not ASCII."""
    for name in ("", 'say "cheese".png', "фото.png", "no-extension"):
        succeeded(image_to_text.multipart("/image-to-text", (name, image_bytes())))


# -- answers the worker can read ----------------------------------------------------------------

ALL = [
    "text_to_image",
    "image_to_image",
    "image_to_video",
    "upscale",
    "audio_to_text",
    "segment_anything_2",
    "image_to_text",
    "text_to_speech",
]


def call(worker: GoWorker, route: str, **values) -> object:
    """The route's smallest valid request, with ``values`` on top."""
    path = "/" + route.replace("_", "-")
    if path in ("/text-to-image", "/text-to-speech"):
        base = {"prompt": "a cat"} if path == "/text-to-image" else {"text": "Hi."}
        return worker.json(path, **(base | values))
    file = ("a.wav", encode_audio(tone(1.0), 16_000, "wav", "pcm_s16le"))
    if path != "/audio-to-text":
        file = ("a.png", image_bytes())
    base = {"prompt": "a cat"} if path in ("/image-to-image", "/upscale") else {}
    if path == "/segment-anything-2":
        base = {"point_coords": "[[4,4]]", "point_labels": "[1]"}
    return worker.multipart(path, file, **(base | values))


@pytest.mark.parametrize("route", ALL)
def test_a_wrong_model_id_is_an_error_the_worker_reads(request, route):
    """worker.go: a decoded JSON400 becomes "<pipeline> container returned 400: <msg>"."""
    worker = request.getfixturevalue(route)
    error = failed(call(worker, route, model_id="someone/else"), 400)
    assert error.endswith("but called with someone/else.")
    assert "container returned 400: pipeline configured with tiny-random/" in error


@pytest.mark.parametrize("route", ["image_to_image", "upscale", "image_to_video", "image_to_text"])
def test_an_image_that_does_not_decode_is_a_declared_error(request, route):
    """415 is declared on audio-to-text only: elsewhere an undecodable upload must be a 400,
    or the generated client decodes nothing (go-livepeer issue 4026)."""
    worker = request.getfixturevalue(route)
    path = "/" + route.replace("_", "-")
    fields = {"prompt": "a cat"} if route in ("image_to_image", "upscale") else {}
    error = failed(
        worker.multipart(path, ("broken.png", b"\x89PNG\r\n\x1a\nnot a png"), **fields), 400
    )
    assert "image could not be decoded" in error


def test_audio_that_does_not_decode_is_415(audio_to_text):
    error = failed(audio_to_text.multipart("/audio-to-text", ("x.mp3", b"not audio at all")), 415)
    assert error.startswith("audio-to-text container returned 415: ")


def test_a_request_the_worker_would_not_write_is_422_in_fastapis_list_shape(image_to_text):
    """runner.gen.go decodes 422 as HTTPValidationError: {"detail": [{loc, msg, type}]}."""
    from go_worker import GoMultipartWriter

    writer = GoMultipartWriter()
    writer.write_field("prompt", "no image part")
    response = image_to_text.send("/image-to-text", writer.content_type(), writer.close())
    error = failed(response, 422)
    assert response.decoded["detail"][0]["loc"] == ["body", "image"]
    assert error.startswith("image-to-text  container returned 422: ")


def test_status_endpoints_decode_as_the_worker_reads_them(audio_to_text):
    """container.go NewRunnerContainer reads /hardware/info and /version once; the version is
    compared as semver with the gateway's minimum (server/ai_http.go)."""
    info = succeeded(audio_to_text.get("/hardware/info"))
    assert info["pipeline"] == "audio-to-text" and info["model_id"] == TINY_WHISPER
    version = succeeded(audio_to_text.get("/version"))
    assert len(version["version"].split(".")) == 3
    assert succeeded(audio_to_text.get("/health")) == {"status": "IDLE"}


def test_an_unauthorised_call_and_a_failed_load_are_errors_the_worker_reads(make_settings):
    """External containers get the token as a bearer (container.go NewRunnerContainer); a
    request to a runner whose load failed is a 500 the worker reads."""
    settings = make_settings(model_id="tiny-random/absent", auth_token="s3cret")
    with serving(settings) as client:
        error = failed(GoWorker(client).json("/text-to-image", prompt="a cat"), 401)
        assert error.startswith("text-to-image container returned 401: ")
        worker = GoWorker(client, token="s3cret")
        assert succeeded(worker.get("/health")) == {"status": "ERROR"}
        error = failed(worker.json("/text-to-image", prompt="a cat", width=64, height=64), 500)
        assert "tiny-random/absent" in error
