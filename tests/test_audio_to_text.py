"""audio-to-text (Whisper) end to end over multipart HTTP, on the tiny Whisper model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import serving
from helpers import encode_audio, tone

from tiny_models import TINY_WHISPER

WAV = encode_audio(tone(4.0), 16_000, "wav", "pcm_s16le")


@pytest.fixture(scope="module")
def client(make_settings):
    settings = make_settings(
        pipeline="audio-to-text", model_id=TINY_WHISPER, max_audio_bytes=4_000_000
    )
    with serving(settings) as client:
        yield client


def transcribe(client, data=WAV, name="speech.wav", **fields):
    return client.post("/audio-to-text", files={"audio": (name, data, "audio/wav")}, data=fields)


def test_segments_by_default_and_deterministic(client):
    response = transcribe(client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"text", "chunks"} and isinstance(body["text"], str)
    assert body["chunks"], body
    for chunk in body["chunks"]:
        assert set(chunk) == {"timestamp", "text"} and len(chunk["timestamp"]) == 2
    assert transcribe(client).json() == body
    assert transcribe(client, return_timestamps="sentence").json() == body


def test_false_gives_text_without_chunks_and_word_gives_word_chunks(client):
    plain = transcribe(client, return_timestamps="false").json()
    assert plain["chunks"] == [] and isinstance(plain["text"], str)
    words = transcribe(client, return_timestamps="word").json()
    assert words["chunks"]
    assert all(len(chunk["text"].split()) <= 1 for chunk in words["chunks"])


def test_long_audio_is_transcribed_in_windows_with_timestamps_past_the_first(client):
    long_audio = encode_audio(tone(75.0, 16_000, 300.0), 16_000, "flac", "flac")
    body = transcribe(client, long_audio, "long.flac").json()
    ends = [chunk["timestamp"][1] for chunk in body["chunks"] if chunk["timestamp"][1] is not None]
    starts = [chunk["timestamp"][0] for chunk in body["chunks"]]
    assert starts == sorted(starts)
    assert max(ends) > 30.0  # timestamps continue across the 30-second window borders


@pytest.mark.parametrize(
    ("container", "codec", "rate", "name"),
    [
        ("flac", "flac", 44_100, "a.flac"),
        ("mp3", "libmp3lame", 44_100, "a.mp3"),
        ("ipod", "aac", 48_000, "a.m4a"),
        ("ogg", "libopus", 48_000, "a.ogg"),
        ("webm", "libopus", 48_000, "a.webm"),
    ],
)
def test_common_containers_and_codecs_decode(client, container, codec, rate, name):
    response = transcribe(client, encode_audio(tone(3.0, rate), rate, container, codec), name)
    assert response.status_code == 200, response.text


def test_an_mp4_video_with_an_audio_track_is_transcribed(client):
    data = encode_audio(tone(2.0, 44_100), 44_100, "mp4", "aac", with_video=True)
    assert transcribe(client, data, "clip.mp4").status_code == 200


def test_silence_is_an_empty_transcript(client):
    silence = encode_audio(np.zeros(16_000 * 3, np.float32), 16_000, "wav", "pcm_s16le")
    response = transcribe(client, silence)
    assert response.status_code == 200
    assert response.json() == {"text": "", "chunks": []}


@pytest.mark.parametrize(
    "metadata", ['{"duration": "4"}', '{"duration": 4.0}', '{"duration": null}']
)
def test_metadata_duration_is_a_number_or_a_numeric_string(client, metadata):
    """The gateway sends whole seconds as a string (go-livepeer server/ai_process.go
    submitAudioToText); ai-runner reads the value with float() (routes/utils.py
    parse_key_from_metadata)."""
    assert transcribe(client, metadata=metadata).json() == transcribe(client).json()


def test_a_duration_that_disagrees_with_the_audio_is_logged_not_refused(client, caplog):
    with caplog.at_level(logging.INFO, logger="pipelines.audio_to_text"):
        response = transcribe(client, metadata='{"duration": "60"}')
    assert response.status_code == 200, response.text
    assert response.json() == transcribe(client).json()
    assert "metadata duration is 60 s but the audio lasts 4.00 s" in caplog.text


@pytest.mark.parametrize(
    ("spelling", "same_as"),
    [("1", "true"), ("TRUE", "true"), ("Sentence", "true"), ("0", "false"), ("WORD", "word")],
)
def test_return_timestamps_spelled_as_ai_runner_takes_them(client, spelling, same_as):
    """ai-runner routes/audio_to_text.py parse_return_timestamps: "1"/"0" and any case."""
    response = transcribe(client, return_timestamps=spelling)
    assert response.status_code == 200, response.text
    assert response.json() == transcribe(client, return_timestamps=same_as).json()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"metadata": "{not json"},
            "metadata is not valid JSON: Expecting property name enclosed in double quotes at "
            "character 1.",
        ),
        ({"metadata": "[1, 2]"}, "metadata must be a JSON object."),
        # Issue 13, finding 9: nested 5,000 deep was a 500 (RecursionError).
        (
            {"metadata": '{"x": ' + "[" * 5000 + "]" * 5000 + "}"},
            "metadata is nested too deeply: at most 8 levels.",
        ),
        (
            {"metadata": '{"duration": "long"}'},
            'metadata duration must be a number of seconds, got "long".',
        ),
        (
            {"return_timestamps": "yes"},
            "return_timestamps must be one of 'true', 'sentence', 'word', 'false', '1' or '0', "
            "got 'yes'.",
        ),
    ],
)
def test_bad_fields_are_400_naming_the_field(client, fields, message):
    response = transcribe(client, **fields)
    assert response.status_code == 400
    assert response.json() == {"detail": {"msg": message}}


def test_limits_on_size_and_duration(make_settings):
    settings = make_settings(
        pipeline="audio-to-text",
        model_id=TINY_WHISPER,
        max_audio_bytes=100_000,
        max_audio_seconds=2,
    )
    with serving(settings) as client:
        response = transcribe(client, encode_audio(tone(4.0), 16_000, "wav", "pcm_s16le"))
        assert response.status_code == 413
        assert response.json() == {
            "detail": {"msg": "audio is too large: the limit is 100000 bytes."}
        }
        response = transcribe(client, encode_audio(tone(3.0), 16_000, "flac", "flac"))
        assert response.status_code == 400
        assert response.json() == {
            "detail": {"msg": "audio is longer than the limit of 2 seconds."}
        }


def test_health_is_ok_during_a_long_transcription_then_idle(client):
    import threading
    import time

    long_audio = encode_audio(tone(150.0, 16_000, 300.0), 16_000, "flac", "flac")
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(r=transcribe(client, long_audio, "l.flac"))
    )
    worker.start()
    seen = set()
    while worker.is_alive():
        seen.add(client.get("/health").json()["status"])
        time.sleep(0.05)
    worker.join()
    assert result["r"].status_code == 200
    assert "OK" in seen and seen <= {"OK", "IDLE"}
    assert client.get("/health").json() == {"status": "IDLE"}
