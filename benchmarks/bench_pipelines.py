"""audio-to-text, image-to-text, segment-anything-2 and text-to-speech, measured in one run
(the diffusion pipelines are in ``bench_diffusion.py``).

Prints Markdown tables (paste them into the README):

1. audio decoding throughput: seconds of audio decoded per second, for a 10-minute file in
   three codecs, with the runner's decoder (PyAV, mono, 16 kHz);
2. audio-to-text real-time factor (processing time / audio length) of the runner over HTTP
   against the bare transformers pipeline call on the same audio;
3. each pipeline's overhead: end to end over HTTP minus the model time it reports in
   ``Server-Timing`` (the bare call with the same inputs is shown beside it).

Runs on the tiny models (built into a temporary folder unless ``--model-dir`` has them).
``--pipelines`` measures only those named.

    python benchmarks/bench_pipelines.py --runs 5
    python benchmarks/bench_pipelines.py --pipelines image-to-text
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Runner,
    arguments,
    measure_over_http,
    median_ms,
    timed,
    tiny_models,
)

from runner.media.audio import decode_audio  # noqa: E402
from runner.settings import Settings  # noqa: E402
from tiny_models import (  # noqa: E402
    TINY_BLIP,
    TINY_MMS_TTS,
    TINY_SAFETY_CHECKER,
    TINY_SAM2,
    TINY_WHISPER,
)


def encode(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        kind = stream.format.name
        scale = {"s16": 32767, "s16p": 32767, "s32p": 2**31 - 2**16}.get(kind)
        pcm = (
            (samples * scale).astype(np.int32 if kind == "s32p" else np.int16) if scale else samples
        )
        for start in range(0, len(pcm), 4096):
            piece = np.ascontiguousarray(pcm[start : start + 4096].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(piece, format=kind, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def speech_like(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    noise = np.random.default_rng(0).normal(0, 0.02, len(t))
    return (0.3 * envelope * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32)


def png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (180, 60, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = arguments(__doc__, runs=5, port=8912)
    parser.add_argument("--pipelines", nargs="+", metavar="PIPELINE", help="only these")
    args = parser.parse_args()

    from runner.logs import configure_logging, quiet_progress_bars

    configure_logging(verbose=False)
    quiet_progress_bars()
    import torch
    from PIL import Image

    model_dir = tiny_models(
        args.model_dir, [TINY_WHISPER, TINY_BLIP, TINY_SAM2, TINY_MMS_TTS, TINY_SAFETY_CHECKER]
    )
    torch.set_num_threads(Settings(pipeline="text-to-image").torch_threads)

    wanted = set(args.pipelines or [])
    if not wanted or "audio-to-text" in wanted:
        print("### audio decoding, a 10-minute file\n")
        print("| codec | file MB | decode s | audio s per s |\n|---|---:|---:|---:|")
        ten_minutes = speech_like(600, 44_100)
        for name, container, codec in (
            ("wav (PCM)", "wav", "pcm_s16le"),
            ("flac", "flac", "flac"),
            ("mp3", "mp3", "libmp3lame"),
        ):
            data = encode(ten_minutes, 44_100, container, codec)
            seconds = min(timed(lambda data=data: decode_audio(data, 3600), 2))
            print(f"| {name} | {len(data) / 1e6:.1f} | {seconds:.2f} | {600 / seconds:,.0f} |")

    clip_seconds = 60
    clip = encode(speech_like(clip_seconds, 16_000), 16_000, "flac", "flac")
    image = png((640, 480))
    cases = {
        "audio-to-text": (
            TINY_WHISPER,
            {"files": {"audio": ("a.flac", clip)}, "data": {"return_timestamps": "true"}},
        ),
        "image-to-text": (TINY_BLIP, {"files": {"image": ("i.png", image)}, "data": {}}),
        "segment-anything-2": (
            TINY_SAM2,
            {
                "files": {"image": ("i.png", image)},
                "data": {
                    "point_coords": "[[320, 240]]",
                    "point_labels": "[1]",
                    "return_logits": "false",
                },
            },
        ),
        "text-to-speech": (TINY_MMS_TTS, {"json": {"text": "Hello from the Livepeer network."}}),
    }
    unknown = wanted - set(cases)
    if unknown:
        raise SystemExit(f"unknown pipelines {sorted(unknown)}; known: {', '.join(cases)}")
    cases = {name: case for name, case in cases.items() if not wanted or name in wanted}
    bare = bare_calls(model_dir, clip, Image.open(io.BytesIO(image)).convert("RGB"), set(cases))
    rows = []
    for port, (pipeline, (model_id, request)) in enumerate(cases.items(), start=args.port):
        runner = Runner(
            port,
            PIPELINE=pipeline,
            MODEL_ID=model_id,
            MODEL_DIR=str(model_dir),
            SAFETY_CHECKER_ID=TINY_SAFETY_CHECKER,
        )
        try:
            e2e_ms, model_ms = measure_over_http(runner.url, f"/{pipeline}", request, args.runs)
        finally:
            runner.stop()
        bare_ms = median_ms(timed(bare[pipeline], args.runs))
        rows.append((pipeline, bare_ms, e2e_ms, model_ms))

    for pipeline, bare_ms, e2e_ms, _ in rows:
        if pipeline == "audio-to-text":
            print(
                f"\n### audio-to-text real-time factor, {clip_seconds} s of audio "
                "(lower is faster)\n"
            )
            print("| | seconds | real-time factor |\n|---|---:|---:|")
            for label, ms in (
                ("bare transformers pipeline", bare_ms),
                ("runner over HTTP", e2e_ms),
            ):
                print(f"| {label} | {ms / 1000:.2f} | {ms / 1000 / clip_seconds:.3f} |")

    print(f"\n### overhead per pipeline (median of {args.runs}, ms)\n")
    print("| pipeline | bare call | runner end to end | model time in runner | **overhead** |")
    print("|---|---:|---:|---:|---:|")
    for pipeline, bare_ms, e2e_ms, model_ms in rows:
        overhead = e2e_ms - model_ms
        print(
            f"| {pipeline} | {bare_ms:.1f} | {e2e_ms:.1f} | {model_ms:.1f} | **{overhead:.1f}** |"
        )


def bare_calls(model_dir: Path, clip: bytes, image, wanted: set[str]) -> dict:
    """Each pipeline's model called directly, with the inputs the runner gets."""
    calls = {
        "audio-to-text": _bare_asr,
        "image-to-text": _bare_caption,
        "segment-anything-2": _bare_segment,
        "text-to-speech": _bare_speech,
    }
    return {name: calls[name](model_dir, clip, image) for name in wanted}


SOURCE = {"local_files_only": True}


def _bare_asr(model_dir: Path, clip: bytes, image):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

    audio = decode_audio(clip, 3600).samples
    processor = WhisperProcessor.from_pretrained(TINY_WHISPER, cache_dir=model_dir, **SOURCE)
    asr = pipeline(
        "automatic-speech-recognition",
        model=WhisperForConditionalGeneration.from_pretrained(
            TINY_WHISPER, attn_implementation="eager", cache_dir=model_dir, **SOURCE
        ),
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
        chunk_length_s=30,
        batch_size=2,
    )
    return lambda: asr(
        {"raw": audio, "sampling_rate": 16_000},
        return_timestamps=True,
        generate_kwargs={"task": "transcribe"},
    )


def _bare_caption(model_dir: Path, clip: bytes, image):
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    blip = BlipForConditionalGeneration.from_pretrained(TINY_BLIP, cache_dir=model_dir, **SOURCE)
    processor = BlipProcessor.from_pretrained(TINY_BLIP, cache_dir=model_dir, **SOURCE)

    def caption():
        with torch.inference_mode():
            return blip.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=64)

    return caption


def _bare_segment(model_dir: Path, clip: bytes, image):
    import torch
    from transformers import Sam2Model, Sam2Processor

    sam = Sam2Model.from_pretrained(TINY_SAM2, cache_dir=model_dir, **SOURCE)
    processor = Sam2Processor.from_pretrained(TINY_SAM2, cache_dir=model_dir, **SOURCE)

    def segment():
        inputs = processor(
            images=image, input_points=[[[[320, 240]]]], input_labels=[[[1]]], return_tensors="pt"
        )
        with torch.inference_mode():
            return sam(**inputs)

    return segment


def _bare_speech(model_dir: Path, clip: bytes, image):
    import torch
    from transformers import VitsModel, VitsTokenizer

    vits = VitsModel.from_pretrained(TINY_MMS_TTS, cache_dir=model_dir, **SOURCE)
    tokenizer = VitsTokenizer.from_pretrained(TINY_MMS_TTS, cache_dir=model_dir, **SOURCE)

    def speak():
        with torch.inference_mode():
            return vits(**tokenizer("Hello from the Livepeer network.", return_tensors="pt"))

    return speak


if __name__ == "__main__":
    main()
