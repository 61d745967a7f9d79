"""text-to-speech: MMS-TTS (VITS) and Bark through transformers, Parler-TTS through parler-tts;
answers a WAV data URL.

Long text is split at sentence boundaries into pieces the model handles well, spoken piece
by piece, and joined with a short pause. parler-tts pins a transformers older than the
other families need, so Parler-TTS has an image of its own (the ``parler`` extra, tagged
``text-to-speech`` as ai-runner's Parler image was) and Bark and MMS-TTS another
(the ``speech`` extra).
"""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, Field

from pipelines import checks
from pipelines.base import Pipeline, Route
from pipelines.registry import pipeline_tag
from runner.cancellation import stopping_criteria
from runner.device import ModelFiles, prepare_model
from runner.errors import InvalidInput, RunnerError
from runner.media.encoding import data_url

log = logging.getLogger("pipelines.text_to_speech")
PAUSE_SECONDS = 0.15
DEFAULT_DESCRIPTION = (
    "A male speaker delivers a slightly expressive and animated speech with a moderate speed "
    "and pitch."
)


class TextToSpeechParams(BaseModel):
    model_id: str = Field(
        "", description="Hugging Face model ID used for text to speech generation."
    )
    text: str = Field("", description="Text input for speech generation.")
    description: str = Field(
        DEFAULT_DESCRIPTION,
        description="Description of speaker to steer text to speech generation.",
    )


class MediaURL(BaseModel):
    """A URL from which media can be accessed."""

    url: str = Field(description="The URL where the media can be accessed.")


class AudioResponse(BaseModel):
    """Response model for audio generation."""

    audio: MediaURL = Field(description="The generated audio.")


class Speech(Protocol):
    """One text-to-speech model family."""

    sample_rate: int
    max_chars: int  # longest piece of text it speaks well in one go
    voices: frozenset[str]
    described: bool  # whether any description steers the voice (else only a voice's name)
    cuda_dtype: str | None  # the precision it needs on a GPU, where the default does not do

    def speak(self, text: str, voice: str | None) -> np.ndarray:
        """The waveform; empty when the model has nothing to say for ``text``."""
        ...


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Pieces of at most ``max_chars``, cut after sentence ends, else at spaces."""
    sentences = [s for s in re.split(r"(?<=[.!?;:])\s+", " ".join(text.split())) if s]
    pieces: list[str] = []
    for sentence in sentences:
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {sentence}"
        elif sentence:
            pieces.append(sentence)
    return pieces


class VitsSpeech:
    """facebook/mms-tts-*: VITS, one voice per model."""

    max_chars = 400
    voices: frozenset[str] = frozenset()
    described = False
    cuda_dtype = None

    def __init__(self, files: ModelFiles) -> None:
        from transformers import VitsModel, VitsTokenizer

        self.tokenizer = VitsTokenizer.from_pretrained(files.repo, **files.source)
        self.model = VitsModel.from_pretrained(
            files.repo, dtype=files.placement.dtype, **files.source
        )
        self.model.to(files.device).eval()
        self.device = files.device
        self.sample_rate = self.model.config.sampling_rate

    def speak(self, text: str, voice: str | None) -> np.ndarray:
        import torch

        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        if not inputs["input_ids"].shape[-1]:  # no character of the text is in its vocabulary
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            return self.model(**inputs).waveform[0].float().cpu().numpy()


class BarkSpeech:
    """suno/bark and bark-small; voices are the presets shipped in the model folder."""

    max_chars = 220  # Bark speaks about 13 seconds at a time
    described = False
    cuda_dtype = None

    def __init__(self, files: ModelFiles) -> None:
        from transformers import BarkModel, BarkProcessor

        # From the snapshot folder: BarkProcessor drops cache_dir before loading its tokenizer,
        # and reads the voice presets relative to where it was loaded from.
        self.processor = BarkProcessor.from_pretrained(str(files.path))
        self.model = BarkModel.from_pretrained(
            files.repo, dtype=files.placement.dtype, **files.source
        )
        self.model.to(files.device).eval()
        self.device = files.device
        self.sample_rate = self.model.generation_config.sample_rate
        presets = getattr(self.processor, "speaker_embeddings", None) or {}
        self.voices = frozenset(k for k in presets if k != "repo_or_path")

    def speak(self, text: str, voice: str | None) -> np.ndarray:
        import torch

        inputs = self.processor(text, voice_preset=voice, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            # Bark's semantic and coarse stages generate token by token; its fine stage is short.
            return (
                self.model.generate(
                    **inputs,
                    semantic_stopping_criteria=stopping_criteria(),
                    coarse_stopping_criteria=stopping_criteria(),
                )[0]
                .float()
                .cpu()
                .numpy()
            )


class ParlerSpeech:
    """parler-tts/parler-tts-*: the description (speaker, pace, pitch, recording quality)
    steers the voice, as in ai-runner; it is read by the T5 encoder, the text is the prompt."""

    max_chars = 300  # the large model speaks up to about 30 seconds at a time
    voices: frozenset[str] = frozenset()
    described = True
    cuda_dtype = "bfloat16"  # T5 encoders overflow in float16; parler-tts runs in bfloat16

    def __init__(self, files: ModelFiles) -> None:
        # parler-tts warns at every load with each sub-model's whole config, and about
        # flash-attn and masks it fills in itself: noise in a container log.
        logging.getLogger("parler_tts").setLevel(logging.ERROR)
        from parler_tts import ParlerTTSForConditionalGeneration
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(files.repo, **files.source)
        self.model = ParlerTTSForConditionalGeneration.from_pretrained(
            files.repo, torch_dtype=files.placement.dtype, **files.source
        )
        self.model.to(files.device).eval()
        self.device = files.device
        self.sample_rate = self.model.config.sampling_rate

    def speak(self, text: str, voice: str | None) -> np.ndarray:
        import torch

        description = self.tokenizer(voice or DEFAULT_DESCRIPTION, return_tensors="pt")
        prompt = self.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            audio = self.model.generate(
                input_ids=description.input_ids.to(self.device),
                attention_mask=description.attention_mask.to(self.device),
                prompt_input_ids=prompt.input_ids.to(self.device),
                prompt_attention_mask=prompt.attention_mask.to(self.device),
                stopping_criteria=stopping_criteria(),
            )
        waveform = audio[0].float().cpu().numpy()
        return waveform if waveform.size > 1 else waveform[:0]  # one zero: no frame to decode


FAMILIES = {"vits": VitsSpeech, "bark": BarkSpeech, "parler_tts": ParlerSpeech}
PARLER_IMAGE = pipeline_tag("parler", "text-to-speech")  # the parler extra's image
TRANSFORMERS_IMAGE = pipeline_tag("speech", "text-to-speech")  # Bark and MMS-TTS


def image_serving(model_type: str) -> str:
    """The tag of the image that serves a text-to-speech model of ``model_type``."""
    return PARLER_IMAGE if model_type == "parler_tts" else TRANSFORMERS_IMAGE


def unservable_reason(model_id: str, model_type: str) -> str | None:
    """Why this image cannot serve ``model_type``: the Parler image has parler-tts and its
    older transformers, the other image the transformers that Bark and MMS-TTS need."""
    from importlib.util import find_spec

    parler_image = find_spec("parler_tts") is not None
    if model_type == "parler_tts" and not parler_image:
        return (
            f"{model_id} is a Parler-TTS model: it needs parler-tts, which pins an older "
            f"transformers than this image has; the image tagged {PARLER_IMAGE} serves it"
        )
    if model_type != "parler_tts" and parler_image:
        return (
            f"{model_id} is a {model_type} model: this image serves Parler-TTS models only "
            f"(parler-tts pins an older transformers); the image tagged {TRANSFORMERS_IMAGE} "
            "serves it"
        )
    return None


class TextToSpeech(Pipeline[TextToSpeechParams, TextToSpeechParams, np.ndarray]):
    route = Route(
        path="/text-to-speech",
        operation_id="genTextToSpeech",
        summary="Text To Speech",
        description=(
            "Generate a text-to-speech audio file based on the provided text input and "
            "speaker description."
        ),
        params=TextToSpeechParams,
        response=AudioResponse,
        sdk_name="textToSpeech",
        example={"text": "Hello from the Livepeer network."},
    )

    speech: Any = None

    def load(self) -> None:
        files = prepare_model(self.settings)
        config = files.path / "config.json"
        model_type = json.loads(config.read_text()).get("model_type", "") if config.exists() else ""
        if model_type not in FAMILIES:
            kind = f"a {model_type}" if model_type else "not a transformers"
            raise RunnerError(
                f"{self.model_id} is {kind} model; text-to-speech serves "
                f"{', '.join(FAMILIES)} models"
            )
        reason = unservable_reason(self.model_id, model_type)
        if reason:
            raise RunnerError(reason)
        family = FAMILIES[model_type]
        if files.device == "cuda" and family.cuda_dtype:
            files = files.with_dtype(family.cuda_dtype)
        self.device, self.placement = files.device, files.placement
        self.speech = family(files)
        self._ignored_description = False

    def describe(self) -> str:
        return (
            f"{self.model_id} ({type(self.speech).__name__}, {self.speech.sample_rate} Hz, "
            f"{self.placement.describe()})"
        )

    def warmup(self) -> None:
        self.predict(TextToSpeechParams(text="Warming up."))

    def check(self, params: TextToSpeechParams) -> TextToSpeechParams:
        checks.non_empty("text", params.text)
        checks.max_length("text", params.text, self.settings.max_text_chars)
        return params

    def _voice(self, description: str) -> str | None:
        voice = description.strip()
        if self.speech.described:
            return voice or None
        if voice in self.speech.voices:
            return voice
        if voice and voice != DEFAULT_DESCRIPTION and not self._ignored_description:
            self._ignored_description = True
            log.info(
                "description is ignored: %s has no voice named so (voices: %s)",
                self.model_id,
                ", ".join(sorted(self.speech.voices)) or "none",
            )
        return None

    def predict(self, params: TextToSpeechParams) -> np.ndarray:
        import torch

        voice = self._voice(params.description)
        pause = np.zeros(int(PAUSE_SECONDS * self.speech.sample_rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        # Every family samples: a fixed seed makes the same request give the same audio.
        cuda = [torch.cuda.current_device()] if self.device == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(0)
            for piece in split_sentences(params.text, self.speech.max_chars):
                spoken = self.speech.speak(piece, voice).astype(np.float32)
                if len(spoken):
                    parts += [pause, spoken] if parts else [spoken]
        if not parts:
            raise InvalidInput(f"text has no character that {self.model_id} can speak.")
        return np.concatenate(parts)

    def encode(self, output: np.ndarray) -> AudioResponse:
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, output, self.speech.sample_rate, format="WAV", subtype="PCM_16")
        return AudioResponse(audio=MediaURL(url=data_url(buffer.getvalue(), "audio/wav")))
