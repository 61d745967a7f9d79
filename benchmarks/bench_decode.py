"""Audio in tiny frames against an audio-to-text runner (issue 13, findings 4, 5 and 12).

The file is the issue's: silence in 2.5 ms Opus frames (400 frames a second; an hour is
5.9 MB), made with ffmpeg. Against ``ai-runner serve`` on the tiny Whisper model, in a child
process, for each ``MEMORY_TRIM_BYTES`` given it measures:

- one upload alone, then ``--concurrent`` at once: seconds per request, and ``/health``
  p99 and max, polled from a process of its own every 10 ms meanwhile;
- ``--concurrent`` uploads whose clients hang up a second after sending: seconds until
  ``/health`` says IDLE again (the decodes stopped) and the runner's CPU seconds meanwhile;
- the runner's resident memory (VmRSS) when idle before, and after each part.

    python benchmarks/bench_decode.py                    # an hour of audio; a few minutes
    python benchmarks/bench_decode.py --seconds 600 --trim-bytes 0 1048576
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import HealthPoller, resident_mib, wait_drained  # noqa: E402
from common import Runner, arguments, percentile, tiny_models  # noqa: E402


def tiny_frames(seconds: int, folder: Path) -> bytes:
    path = folder / f"tiny-frames-{seconds}.ogg"
    if not path.exists():
        command = [
            shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
            "-i", "anullsrc=r=48000:cl=mono", "-t", str(seconds), "-c:a", "libopus",
            "-b:a", "6k", "-frame_duration", "2.5", "-application", "lowdelay", str(path),
        ]  # fmt: skip
        subprocess.run(command, check=True)
    return path.read_bytes()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


@dataclass
class Part:
    name: str
    seconds: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    rss_after: float = 0.0
    cpu: float = 0.0
    statuses: list[int] = field(default_factory=list)


async def _upload(url: str, data: bytes, hang_up_after: float | None) -> tuple[float, int]:
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        request = client.post("/audio-to-text", files={"audio": ("a.ogg", data)})
        try:
            if hang_up_after is None:
                response = await request
                return time.perf_counter() - started, response.status_code
            await asyncio.wait_for(request, hang_up_after)
        except TimeoutError:
            pass
    return time.perf_counter() - started, 0


def run_part(runner: Runner, name: str, data: bytes, count: int, hang_up: float | None) -> Part:
    part = Part(name)
    cpu_before = cpu_seconds(runner.proc.pid)
    started = time.perf_counter()
    with HealthPoller(runner.url, 0.01) as health:

        async def all_uploads() -> list[tuple[float, int]]:
            return await asyncio.gather(*(_upload(runner.url, data, hang_up) for _ in range(count)))

        results = asyncio.run(all_uploads())
        if hang_up is not None:
            wait_drained(runner.url, 600)
            part.seconds = [time.perf_counter() - started]
    if hang_up is None:
        part.seconds = [took for took, _ in results]
    part.statuses = [status for _, status in results]
    part.health_ms = health.latencies_ms
    part.cpu = cpu_seconds(runner.proc.pid) - cpu_before
    time.sleep(1.0)  # a trim runs on a thread of its own after the answer
    part.rss_after = resident_mib(runner.proc.pid)
    return part


def main() -> int:
    parser = arguments(__doc__, runs=1, port=8951)
    parser.add_argument("--seconds", type=int, default=3600, help="length of the audio")
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--trim-bytes", type=int, nargs="+", default=[0, 1024 * 1024])
    args = parser.parse_args()

    from tiny_models import TINY_WHISPER

    model_dir = tiny_models(args.model_dir, [TINY_WHISPER])
    data = tiny_frames(args.seconds, Path(tempfile.gettempdir()))
    print(f"{args.seconds} s of silence in 2.5 ms Opus frames: {len(data) / 1e6:.1f} MB")
    rows = [
        "| MEMORY_TRIM_BYTES | part | s per request (abandoned: until IDLE) | runner CPU s "
        "| /health p99 / max ms | RSS idle → after MiB |",
        "|---:|---|---|---:|---|---|",
    ]
    port = args.port
    for trim_bytes in args.trim_bytes:
        runner = Runner(
            port,
            PIPELINE="audio-to-text",
            MODEL_ID=TINY_WHISPER,
            MODEL_DIR=str(model_dir),
            WARMUP="false",
            CAPACITY="1",
            MAX_QUEUE=str(max(4, args.concurrent)),
            MEMORY_TRIM_BYTES=str(trim_bytes),
        )
        port += 1
        try:
            rss = resident_mib(runner.proc.pid)
            parts = [
                run_part(runner, "one upload", data, 1, None),
                run_part(runner, f"{args.concurrent} at once", data, args.concurrent, None),
                run_part(runner, f"{args.concurrent} abandoned after 1 s", data,
                         args.concurrent, 1.0),
            ]  # fmt: skip
        finally:
            runner.stop()
        for part in parts:
            seconds = ", ".join(f"{s:.1f}" for s in part.seconds)
            health = part.health_ms or [0.0]
            rows.append(
                f"| {trim_bytes} | {part.name} ({part.statuses}) | {seconds} | {part.cpu:.1f} "
                f"| {percentile(health, 0.99):.1f} / {max(health):.1f} "
                f"| {rss:.0f} → {part.rss_after:.0f} |"
            )
            rss = part.rss_after
            print(rows[-1], flush=True)
    print(f"\n#### {args.seconds} s of 2.5 ms Opus frames, tiny Whisper, CPU\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
