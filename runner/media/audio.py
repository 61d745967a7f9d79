"""Decoding uploaded audio with PyAV: any container and codec FFmpeg reads, mono, 16 kHz.

FFmpeg's filter graph converts the decoded frames (mix to mono, resample, to float) and
hands them back in large frames, so the Python work per decoded frame is one loop turn and
one push, whatever the codec's frame size (2.5 ms Opus frames are 1.44 million an hour):
the conversion runs with the GIL released, and the samples are written into one growing
buffer rather than kept as many small arrays and joined at the end.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from errno import EAGAIN
from typing import Any

import numpy as np

from runner.cancellation import checkpoint
from runner.errors import InvalidInput, RunnerError, UnsupportedMedia

SAMPLE_RATE = 16_000
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 768_000
# Decoded audio is converted, checked against the limits and the cancellation, and copied
# out in chunks of this many seconds.
CHUNK_SECONDS = 10
CHUNK = CHUNK_SECONDS * SAMPLE_RATE
PACKETS_PER_CHECK = 4096
# Audio decodes one at a time: the loop over frames needs the GIL, so several at once finish
# no sooner on the whole and make the event loop wait longer for it (/health).
_TURN = threading.Lock()


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
    ``max_seconds`` (decoding stops there). Between chunks, and while it waits for its turn,
    it stops with the current request's cancellation (``runner.cancellation.checkpoint``).
    """
    import av

    try:
        with _turn():
            return _decode(av, data, max_seconds)
    except av.error.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UnsupportedMedia(f"audio could not be decoded: {reason}.") from None
    except (RunnerError, MemoryError):
        raise
    except Exception as exc:  # PyAV's own checks on malformed streams
        reason = str(exc).rstrip(".") or type(exc).__name__
        raise UnsupportedMedia(f"audio could not be decoded: {reason}.") from None


@contextmanager
def _turn() -> Iterator[None]:
    """This thread's turn to decode; a request cancelled while it waits stops waiting."""
    while not _TURN.acquire(timeout=0.1):
        checkpoint()
    try:
        yield
    finally:
        _TURN.release()


def _decode(av: Any, data: bytes, max_seconds: float) -> DecodedAudio:
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise UnsupportedMedia("audio file has no audio stream.")
        stream = container.streams.audio[0]
        out = _Samples(int(max_seconds * SAMPLE_RATE), max_seconds, _estimate(container))
        decoder = stream.codec_context
        converter: _Converter | None = None
        # The last packet flushes the decoder.
        for count, packet in enumerate(container.demux(stream)):
            if not count % PACKETS_PER_CHECK:  # packets may decode to nothing
                checkpoint()
            for frame in decoder.decode(packet):
                if converter is None or not converter.push(frame):
                    # The first frame, or the stream changed format mid-way (concatenated
                    # MP3s): a graph for the frame's format.
                    if converter is not None:
                        converter.finish()
                    converter = _Converter(av, frame, out)
        if converter is not None:
            converter.finish()
    return DecodedAudio(out.samples())


class _Converter:
    """One FFmpeg filter graph from the format of ``frame`` (pushed first) to float mono at
    16 kHz, pulled in frames of ``CHUNK`` samples once ``CHUNK_SECONDS`` of input is pushed."""

    def __init__(self, av: Any, frame: Any, out: _Samples) -> None:
        _check_rate(frame.sample_rate)
        self.av, self.out = av, out
        graph = av.filter.Graph()
        args = {"time_base": str(frame.time_base)} if frame.time_base is not None else {}
        source = graph.add(
            "abuffer",
            sample_rate=str(frame.sample_rate),
            sample_fmt=frame.format.name,
            channel_layout=frame.layout.name,
            **args,
        )
        convert = graph.add(
            "aformat", sample_fmts="flt", sample_rates=str(SAMPLE_RATE), channel_layouts="mono"
        )
        sink = graph.add("abuffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        graph.set_audio_frame_size(CHUNK)
        self.graph, self.source, self.sink = graph, source, sink
        self.every = frame.sample_rate * CHUNK_SECONDS  # input samples between pulls
        source.push(frame)
        self.pushed = frame.samples

    def push(self, frame: Any) -> bool:
        """False when the frame's format differs from the graph's (nothing was pushed)."""
        try:
            self.source.push(frame)
        except self.av.error.ArgumentError:  # EINVAL: a frame in another format
            return False
        self.pushed += frame.samples
        if self.pushed >= self.every:
            self.pushed = 0
            self._pull()
        return True

    def finish(self) -> None:
        self.source.push(None)
        self._pull()

    def _pull(self) -> None:
        av = self.av
        while True:
            try:
                frame = self.sink.pull()
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                if exc.errno == EAGAIN:
                    return
                raise
            self.out.add(frame.to_ndarray().reshape(-1))
            checkpoint()


class _Samples:
    """The decoded samples, in one buffer grown geometrically up to the limit."""

    def __init__(self, limit: int, max_seconds: float, expected_seconds: float | None) -> None:
        self.limit, self.max_seconds = limit, max_seconds
        expected = int((expected_seconds or CHUNK_SECONDS) * SAMPLE_RATE * 1.05)
        self.buffer = np.empty(min(max(expected, CHUNK), limit), dtype=np.float32)
        self.size = 0

    def add(self, chunk: np.ndarray) -> None:
        end = self.size + len(chunk)
        if end > self.limit:
            raise InvalidInput(f"audio is longer than the limit of {self.max_seconds:g} seconds.")
        if end > len(self.buffer):
            grown = np.empty(min(max(end, 2 * len(self.buffer)), self.limit), dtype=np.float32)
            grown[: self.size] = self.buffer[: self.size]
            self.buffer = grown
        self.buffer[self.size : end] = chunk
        self.size = end

    def samples(self) -> np.ndarray:
        """The samples; a copy when the buffer is much larger than they are."""
        used = self.buffer[: self.size]
        return used.copy() if self.size < len(self.buffer) // 2 else used


def _estimate(container: Any) -> float | None:
    """The container's idea of its duration in seconds, if any (only a first guess: the
    buffer grows past it, and never beyond the limit)."""
    duration = container.duration  # in microseconds
    return duration / 1_000_000 if duration and duration > 0 else None


def _check_rate(rate: int) -> None:
    """Rates far outside what recordings use make the resampler fail or, below 1 kHz,
    multiply a few bytes into hours of 16 kHz samples."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise UnsupportedMedia(
            f"audio sample rate {rate} Hz is not supported: it must be between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz."
        )
