"""text-to-speech with Parler-TTS over HTTP, on the tiny Parler model (the ``parler`` extra).

parler-tts pins its own transformers, so this runs in the parler environment only:
``pip install -e '.[parler,test]'``. The request follows ai-runner's
runner/src/runner/pipelines/text_to_speech.py (TextToSpeechPipeline._generate_speech): the
description is the encoder's input, the text the prompt; the answer is a WAV data URL.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

pytest.importorskip("parler_tts")

import soundfile  # noqa: E402
from conftest import serving  # noqa: E402

from pipelines.text_to_speech import DEFAULT_DESCRIPTION  # noqa: E402
from runner.hub import locate_model  # noqa: E402
from runner.settings import Settings  # noqa: E402
from tiny_models import TINY_PARLER, build  # noqa: E402
from tiny_models.hub_layout import snapshot_folder  # noqa: E402

PREFIX = "data:audio/wav;base64,"
HOP = 512  # samples per DAC frame at 44.1 kHz
FRAMES = 36  # the tiny model's generation budget (max_length 40, less the 4-codebook delay)


@pytest.fixture(scope="module")
def parler_dir(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("parler-models")
    build(folder, only=[TINY_PARLER])
    return folder


def test_the_tiny_model_is_laid_out_as_parler_tts_large_v1(parler_dir):
    snapshot = locate_model(parler_dir, TINY_PARLER)
    files = {"spiece.model", "tokenizer.json", "model.safetensors", "generation_config.json"}
    assert files <= {p.name for p in snapshot.iterdir()}
    config = json.loads((snapshot / "config.json").read_text())
    assert config["model_type"] == "parler_tts"
    assert config["architectures"] == ["ParlerTTSForConditionalGeneration"]
    assert config["text_encoder"]["model_type"] == "t5"
    assert config["audio_encoder"]["sampling_rate"] == 44_100
    assert config["audio_encoder"]["model_type"] in {"dac", "dac_on_the_hub"}
    assert config["decoder"]["model_type"] == "parler_tts_decoder"


def settings(model_dir, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "pipeline": "text-to-speech",
        "model_id": TINY_PARLER,
        "model_dir": model_dir,
        "warmup": True,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture(scope="module")
def client(parler_dir):
    with serving(settings(parler_dir)) as client:
        yield client


def speak(client, **fields) -> tuple[np.ndarray, int]:
    response = client.post("/text-to-speech", json=fields)
    assert response.status_code == 200, response.text
    url = response.json()["audio"]["url"]
    assert url.startswith(PREFIX)
    wav = io.BytesIO(base64.b64decode(url[len(PREFIX) :]))
    info = soundfile.info(wav)
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    wav.seek(0)
    return soundfile.read(wav)


def test_the_model_loads_and_speaks_whole_dac_frames_at_44_1_khz(client):
    assert client.get("/health").json() == {"status": "IDLE"}
    samples, rate = speak(client, text="Hello world.")
    assert rate == 44_100
    assert len(samples) % HOP == 0 and 0 < len(samples) <= FRAMES * HOP
    assert np.abs(samples).max() > 0.001  # random codes decode to sound, not silence


def test_the_same_request_gives_the_same_audio(client):
    first, _ = speak(client, text="Hello world.", description="A calm voice.")
    again, _ = speak(client, text="Hello world.", description="A calm voice.")
    assert np.array_equal(first, again)


def test_the_description_steers_the_voice(client):
    calm, _ = speak(client, text="Hello world.", description="A calm voice.")
    fast, _ = speak(client, text="Hello world.", description="A fast high pitched voice.")
    assert not np.array_equal(calm, fast)


def test_without_a_description_the_default_voice_speaks(client):
    omitted, _ = speak(client, text="Hello world.")
    default, _ = speak(client, text="Hello world.", description=DEFAULT_DESCRIPTION)
    blank, _ = speak(client, text="Hello world.", description="  ")
    assert np.array_equal(omitted, default) and np.array_equal(omitted, blank)


def test_the_text_changes_the_audio(client):
    hello, _ = speak(client, text="Hello world.")
    other, _ = speak(client, text="This is a test of speech.")
    assert not np.array_equal(hello, other)


def test_long_text_is_spoken_piece_by_piece_and_joined(client):
    one, _ = speak(client, text="Hello world.")
    long, _ = speak(client, text=" ".join(["This is one sentence of a longer text."] * 20))
    assert len(long) > 2 * len(one)


def test_empty_text_is_400(client):
    response = client.post("/text-to-speech", json={"text": " "})
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": "text must not be empty."}}


def test_this_image_refuses_other_families_naming_the_image_that_serves_them(tmp_path):
    snapshot = snapshot_folder(tmp_path, "facebook/mms-tts-eng", "1")
    (snapshot / "config.json").write_text(json.dumps({"model_type": "vits"}))
    with serving(settings(tmp_path, model_id="facebook/mms-tts-eng")) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        message = client.post("/text-to-speech", json={"text": "Hi."}).json()["detail"]["msg"]
    assert message == (
        "Model facebook/mms-tts-eng failed to load: facebook/mms-tts-eng is a vits model: this "
        "image serves Parler-TTS models only (parler-tts pins an older transformers); the image "
        "tagged text-to-speech-bark serves it"
    )
