"""Decoding uploaded audio with PyAV: any container and codec FFmpeg reads, mono, 16 kHz."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

import numpy as np

from runner.errors import InvalidInput, UnsupportedMedia

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(data: bytes, max_seconds: float) -> DecodedAudio:
    """Decode the first audio stream, mixed to mono and resampled to 16 kHz.

    Raises ``UnsupportedMedia`` for data FFmpeg cannot read or a file with no audio stream,
    and ``InvalidInput`` for audio longer than ``max_seconds`` (decoding stops there).
    """
    import av

    limit = int(max_seconds * SAMPLE_RATE)
    parts: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise UnsupportedMedia("audio file has no audio stream.")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            # A final None flushes the resampler.
            for frame in itertools.chain(container.decode(stream), [None]):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    total += len(chunk)
                    if total > limit:
                        raise InvalidInput(
                            f"audio is longer than the limit of {max_seconds:g} seconds."
                        )
                    parts.append(chunk)
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UnsupportedMedia(f"audio could not be decoded: {reason}.") from None
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return DecodedAudio(samples.astype(np.float32, copy=False))
