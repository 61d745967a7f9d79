"""text-to-speech (MMS-TTS / VITS) end to end over HTTP, on the tiny VITS model."""

from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
import pytest
import soundfile
from conftest import serving

from pipelines.text_to_speech import split_sentences
from tiny_models import TINY_BARK, TINY_MMS_TTS, TINY_SD
from tiny_models.hub_layout import snapshot_folder

PREFIX = "data:audio/wav;base64,"


@pytest.fixture(scope="module")
def client(make_settings):
    with serving(make_settings(pipeline="text-to-speech", model_id=TINY_MMS_TTS)) as client:
        yield client


def speak(client, **fields):
    return client.post("/text-to-speech", json=fields)


def decode(response) -> tuple[np.ndarray, int]:
    assert response.status_code == 200, response.text
    url = response.json()["audio"]["url"]
    assert url.startswith(PREFIX)
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(url[len(PREFIX) :])))
    return samples, rate


def test_speech_is_a_wav_at_the_models_rate_and_reproducible(client):
    samples, rate = decode(speak(client, text="Hello world."))
    assert rate == 16_000 and samples.ndim == 1 and len(samples) > 1000
    again, _ = decode(speak(client, text="Hello world."))
    assert np.array_equal(samples, again)


def test_long_text_is_spoken_sentence_by_sentence_and_joined(client):
    one, _ = decode(speak(client, text="Hello world."))
    text = " ".join(["This is one sentence of a longer text."] * 20)
    long, _ = decode(speak(client, text=text))
    assert len(long) > 10 * len(one)


def test_pieces_with_nothing_to_speak_are_skipped(client):
    speakable = " ".join(["Hello world."] * 30)  # one piece of at most 400 characters
    alone, _ = decode(speak(client, text=speakable))
    with_digits, _ = decode(speak(client, text=speakable + " 1234" * 90))
    assert np.array_equal(with_digits, alone)


def test_splitting_keeps_pieces_short_and_cuts_after_sentences():
    text = "First sentence. Second one! " + "word " * 100
    pieces = split_sentences(text, 60)
    assert all(len(piece) <= 60 for piece in pieces)
    assert pieces[0] == "First sentence. Second one!"
    assert " ".join(pieces).split() == text.split()


def test_a_description_the_model_cannot_use_is_ignored_and_logged_once(client, caplog):
    with caplog.at_level(logging.INFO, logger="pipelines.text_to_speech"):
        plain, _ = decode(speak(client, text="Hi there."))
        described, _ = decode(speak(client, text="Hi there.", description="A calm voice."))
        decode(speak(client, text="Hi there.", description="A calm voice."))
    assert np.array_equal(plain, described)
    assert sum("description is ignored" in r.message for r in caplog.records) <= 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "text must not be empty."),
        ({"text": "   "}, "text must not be empty."),
        ({"text": "x" * 2001}, "text must be at most 2000 characters, got 2001."),
        # Found by schemathesis (tests/test_fuzz.py): text with no character in the model's
        # vocabulary gave the model no input, and a 500.
        ({"text": "123"}, "text has no character that tiny-random/mms-tts-eng can speak."),
        ({"text": "\u008a"}, "text has no character that tiny-random/mms-tts-eng can speak."),
    ],
)
def test_bad_text_is_400(client, fields, message):
    response = speak(client, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_other_architectures_fail_the_load_saying_why(make_settings):
    with serving(make_settings(pipeline="text-to-speech", model_id=TINY_SD)) as client:
        assert client.get("/health").json() == {"status": "ERROR"}
        message = speak(client, text="Hi.").json()["detail"]["msg"]
        served = "text-to-speech serves vits, bark, parler_tts models"
        assert f"is not a transformers model; {served}" in message


def test_a_parler_model_fails_the_load_naming_the_image_that_serves_it(make_settings, tmp_path):
    snapshot = snapshot_folder(tmp_path, "parler-tts/parler-tts-mini-v1", "1")
    (snapshot / "config.json").write_text(json.dumps({"model_type": "parler_tts"}))
    settings = make_settings(
        pipeline="text-to-speech", model_id="parler-tts/parler-tts-mini-v1", model_dir=tmp_path
    )
    with serving(settings) as client:
        message = speak(client, text="Hi.").json()["detail"]["msg"]
        assert message == (
            "Model parler-tts/parler-tts-mini-v1 failed to load: parler-tts/parler-tts-mini-v1 "
            "is a Parler-TTS model: it needs parler-tts, which pins an older transformers than "
            "this image has; the image tagged text-to-speech serves it"
        )


@pytest.fixture(scope="module")
def bark(make_settings):
    with serving(make_settings(pipeline="text-to-speech", model_id=TINY_BARK)) as client:
        yield client


def test_bark_speaks_at_24_khz_and_the_description_picks_a_voice_preset(bark):
    plain, rate = decode(speak(bark, text="Hello world."))
    assert rate == 24_000 and len(plain) > 0
    again, _ = decode(speak(bark, text="Hello world."))
    assert np.array_equal(plain, again)
    voiced, _ = decode(speak(bark, text="Hello world.", description="v2/en_speaker_0"))
    assert not np.array_equal(plain, voiced)
