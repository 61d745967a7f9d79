"""audio-to-text: Whisper (and distil-Whisper) transcription with timestamps.

Audio arrives decoded (mono, 16 kHz) from the shared upload layer. Long audio is cut in
30-second windows that are transcribed in batches, and the timestamps are stitched across
window borders by transformers' speech-recognition pipeline.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipelines.base import Pipeline, Route
from pipelines.checks import json_field
from runner.cancellation import stopping_criteria
from runner.device import prepare_model
from runner.errors import InvalidInput
from runner.media.audio import DecodedAudio
from runner.media.uploads import Upload

log = logging.getLogger("pipelines.audio_to_text")

# As ai-runner reads the field (routes/audio_to_text.py parse_return_timestamps), any case.
TIMESTAMP_MODES: dict[str, bool | str] = {
    "true": True,
    "1": True,
    "sentence": True,
    "word": "word",
    "false": False,
    "0": False,
}
SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS: nothing to transcribe below this
# The gateway sends whole seconds (server/ai_process.go submitAudioToText truncates ffprobe's
# duration), so a declared duration up to a second short of the decoded one is expected.
DURATION_TOLERANCE = 1.0


@dataclass(frozen=True)
class Transcription:
    """A request as ``predict`` takes it: its timestamp mode parsed once, by ``check``."""

    audio: DecodedAudio
    timestamps: bool | str  # as the ASR pipeline's return_timestamps takes it


class AudioToTextParams(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    audio: Annotated[DecodedAudio, Upload("audio", "Uploaded audio file to be transcribed.")]
    model_id: str = Field("", description="Hugging Face model ID used for transcription.")
    return_timestamps: str = Field(
        "true",
        description=(
            "Return timestamps for the transcribed text. Supported values: 'sentence', "
            "'word', or a string boolean ('true' or 'false'). Default is 'true' ('sentence'). "
            "'false' means no timestamps. 'word' means word-based timestamps."
        ),
    )
    metadata: str = Field(
        "{}", description="Additional job information to be passed to the pipeline."
    )


class Chunk(BaseModel):
    """A chunk of text with a timestamp."""

    timestamp: list = Field(description="The timestamp of the chunk.")
    text: str = Field(description="The text of the chunk.")


class TextResponse(BaseModel):
    """Response model for text generation."""

    text: str = Field(description="The generated text.")
    chunks: list[Chunk] = Field(description="The generated text chunks.")


def declared_duration(metadata: str) -> float | None:
    """The ``duration`` in the request's metadata, in seconds: a number or a numeric string,
    read as ai-runner reads it (float()); the gateway sends whole seconds as a string
    (server/ai_process.go submitAudioToText: ``{"duration": "12"}``)."""
    values = json_field("metadata", metadata or "{}")
    if not isinstance(values, dict):
        raise InvalidInput("metadata must be a JSON object.")
    declared = values.get("duration")
    if declared is None:
        return None
    try:
        if isinstance(declared, list | dict):
            raise TypeError
        return float(declared)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"metadata duration must be a number of seconds, got {json.dumps(declared)}."
        ) from None


class AudioToText(Pipeline[AudioToTextParams, Transcription, TextResponse]):
    route = Route(
        path="/audio-to-text",
        operation_id="genAudioToText",
        summary="Audio To Text",
        description="Transcribe audio files to text.",
        params=AudioToTextParams,
        response=TextResponse,
        sdk_name="audioToText",
        example={"return_timestamps": "true"},
        extra_error_codes=(413, 415),
    )

    asr: Any = None

    def load(self) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

        files = prepare_model(self.settings)
        self.device, self.placement = files.device, files.placement
        processor = WhisperProcessor.from_pretrained(files.repo, **files.source)
        # Eager attention returns the cross-attentions that word timestamps are aligned on.
        model = WhisperForConditionalGeneration.from_pretrained(
            files.repo, dtype=self.placement.dtype, attn_implementation="eager", **files.source
        ).to(self.device)
        self.asr = pipeline(
            "automatic-speech-recognition",
            model=model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            chunk_length_s=30,
            batch_size=8 if self.device == "cuda" else 2,
            device=model.device,
            dtype=self.placement.dtype,
        )

    def describe(self) -> str:
        model = self.asr.model if self.asr else None
        return f"{self.model_id} ({type(model).__name__}, {self.placement.describe()})"

    def warmup(self) -> None:
        tone = np.sin(np.linspace(0, 2000 * math.pi, 16_000 * 2)).astype(np.float32) * 0.1
        self.predict(Transcription(DecodedAudio(tone), TIMESTAMP_MODES["true"]))

    def check(self, params: AudioToTextParams) -> Transcription:
        mode = params.return_timestamps.strip().lower()
        if mode not in TIMESTAMP_MODES:
            raise InvalidInput(
                "return_timestamps must be one of 'true', 'sentence', 'word', 'false', '1' or "
                f"'0', got {params.return_timestamps!r}."
            )
        declared = declared_duration(params.metadata)
        actual = params.audio.duration
        if declared is not None and not abs(declared - actual) <= DURATION_TOLERANCE:
            log.info(
                "metadata duration is %g s but the audio lasts %.2f s; transcribing all of it",
                declared,
                actual,
            )
        return Transcription(params.audio, TIMESTAMP_MODES[mode])

    def predict(self, request: Transcription) -> TextResponse:
        samples = request.audio.samples
        if not len(samples) or float(np.max(np.abs(samples))) < SILENCE_PEAK:
            return TextResponse(text="", chunks=[])  # Whisper invents words for silence
        mode = request.timestamps
        result = self.asr(
            {"raw": samples, "sampling_rate": request.audio.sample_rate},
            return_timestamps=mode,
            generate_kwargs={"task": "transcribe", "stopping_criteria": stopping_criteria()},
        )
        found = result.get("chunks", []) if mode else []
        chunks = [Chunk(timestamp=list(c["timestamp"]), text=c["text"]) for c in found]
        return TextResponse(text=result["text"].strip(), chunks=chunks)

    def encode(self, output: TextResponse) -> TextResponse:
        return output
