"""Decoding uploaded audio with PyAV: any container and codec FFmpeg reads, mono, 16 kHz."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import InvalidInput, RunnerError, UnsupportedMedia

SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(data: bytes, max_seconds: float) -> DecodedAudio:
    """Decode the first audio stream, mixed to mono and resampled to 16 kHz.

    Raises ``UnsupportedMedia`` for data FFmpeg cannot read, a file with no audio stream or a
    sample rate outside what recordings use, and ``InvalidInput`` for audio longer than
    ``max_seconds`` (decoding stops there).
    """
    import av

    try:
        return _decode(av, data, max_seconds)
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UnsupportedMedia(f"audio could not be decoded: {reason}.") from None
    except (RunnerError, MemoryError):
        raise
    except Exception as exc:  # PyAV's own checks on malformed streams
        reason = str(exc).rstrip(".") or type(exc).__name__
        raise UnsupportedMedia(f"audio could not be decoded: {reason}.") from None


def _decode(av: Any, data: bytes, max_seconds: float) -> DecodedAudio:
    limit = int(max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = 0
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise UnsupportedMedia("audio file has no audio stream.")
        stream = container.streams.audio[0]
        resampler, source = None, None
        # A final None flushes the resampler.
        for frame in itertools.chain(container.decode(stream), [None]):
            outputs = []
            if frame is not None and _layout(frame) != source:
                # A stream may change format mid-way (concatenated MP3s): flush, start anew.
                _check_rate(frame.sample_rate)
                if resampler is not None:
                    outputs += resampler.resample(None)
                resampler, source = _resampler(av), _layout(frame)
            if resampler is not None:
                outputs += resampler.resample(frame)
            for out in outputs:
                chunk = out.to_ndarray().reshape(-1)
                total += len(chunk)
                if total > limit:
                    raise InvalidInput(
                        f"audio is longer than the limit of {max_seconds:g} seconds."
                    )
                parts.append(chunk)
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return DecodedAudio(samples.astype(np.float32, copy=False))


def _resampler(av: Any) -> Any:
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def _layout(frame: Any) -> tuple[str, str, int]:
    return frame.format.name, frame.layout.name, frame.sample_rate


def _check_rate(rate: int) -> None:
    """Rates far outside what recordings use make the resampler fail or, below 1 kHz,
    multiply a few bytes into hours of 16 kHz samples."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedMedia(
            f"audio sample rate {rate} Hz is not supported: it must be between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz."
        )
