"""The attack mix of ``bench_load.py --attacks``: issue 13's hostile traffic against a runner
while legitimate requests keep coming.

Each attack runs its attackers (asyncio tasks in this process, on 127.0.0.1 only) for as long
as ``legit_concurrency`` legitimate clients send requests for ``seconds``; then the attackers
are cancelled, the runner is given ``drain_timeout`` to be IDLE again, and the round reports:

- legitimate requests sent, answered 200, refused for overload (Retry-After), answered another
  status, and **lost** (no HTTP answer: a transport error or the client's timeout);
- refusals while fewer than CAPACITY + MAX_QUEUE legitimate requests were in flight (counted
  at the refused request's sending; the target is none);
- ``/health`` p50, p99 and max, polled from a process of its own during the round;
- the runner's RSS before, at its peak and after the round, and the CPU time it used.

A watcher kills the runner when its RSS passes ``max_rss_mib`` (a thin image can cost tens
of GB before the shape bounds), and the round says so: the benchmark stays bounded in time,
count and memory, and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench_load import TOKEN, HealthPoller, resident_mib, wait_drained, wav
from PIL import Image

MiB = 1024 * 1024
CHUNK = 64 * 1024


# -- what attackers send ----------------------------------------------------------------------


def tiny_frame_opus(seconds: float) -> bytes:
    """Silence in 2.5 ms Opus frames at 6 kb/s (finding 4: 400 frames a second to decode);
    an hour is 5.9 MB. Encoded with PyAV, as ``ffmpeg -f lavfi -i anullsrc=r=48000:cl=mono
    -c:a libopus -b:a 6k -frame_duration 2.5 -application lowdelay`` would."""
    import av

    rate, block = 48_000, 48_000
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as out:
        stream = out.add_stream(
            "libopus", rate=rate, options={"frame_duration": "2.5", "application": "lowdelay"}
        )
        stream.bit_rate = 6000
        stream.layout = "mono"
        silence = np.zeros((1, block), dtype=np.int16)
        for number in range(max(1, round(seconds * rate / block))):
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = number * block
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def png(size: tuple[int, int], seed: int = 0) -> bytes:
    """A PNG of ``size``; a large one is one colour (8 x 5,000,000 is about a hundred KB)."""
    width, height = size
    if width * height <= 1_000_000:
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", size, (120, 60, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Route:
    """A pipeline's route: how to build a legitimate request and one carrying ``image``."""

    path: str
    legit: Callable[[random.Random], dict]  # httpx post keyword arguments
    with_image: Callable[[bytes, tuple[int, int]], dict] | None = None  # image routes


def text_to_image_route() -> Route:
    def legit(rng: random.Random) -> dict:
        body = {
            "prompt": rng.choice(["a cat", "a red boat at dawn"]),
            "width": 64,
            "height": 64,
            "num_inference_steps": 2,
            "seed": rng.randint(0, 1000),
        }
        return {"json": body, "headers": _auth()}

    return Route("/text-to-image", legit)


def audio_to_text_route() -> Route:
    clips = [wav(2, 220), wav(2, 440)]

    def legit(rng: random.Random) -> dict:
        return {"files": {"audio": ("clip.wav", rng.choice(clips))}, "headers": _auth()}

    return Route("/audio-to-text", legit)


# Form fields of each image route, sized for the tiny models; (x, y) is a point inside.
IMAGE_FIELDS: dict[str, Callable[[tuple[int, int]], dict[str, str]]] = {
    "image-to-image": lambda size: {"prompt": "autumn", "num_inference_steps": "2"},
    "image-to-text": lambda size: {},
    "upscale": lambda size: {"prompt": "sharp", "num_inference_steps": "2"},
    "segment-anything-2": lambda size: {
        "point_coords": f"[[{size[0] // 2}, {size[1] // 2}]]",
        "point_labels": "[1]",
    },
    "image-to-video": lambda size: {"width": "96", "height": "64", "num_inference_steps": "2"},
}
LEGIT_IMAGE_SIZE = (48, 32)


def image_route(pipeline: str) -> Route:
    fields = IMAGE_FIELDS[pipeline]
    small = png(LEGIT_IMAGE_SIZE)

    def with_image(image: bytes, size: tuple[int, int]) -> dict:
        return {"files": {"image": ("i.png", image)}, "data": fields(size), "headers": _auth()}

    return Route(f"/{pipeline}", lambda rng: with_image(small, LEGIT_IMAGE_SIZE), with_image)


def route_for(pipeline: str) -> Route:
    if pipeline == "text-to-image":
        return text_to_image_route()
    if pipeline == "audio-to-text":
        return audio_to_text_route()
    return image_route(pipeline)


# -- the attackers ------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the attackers aim, and what they counted."""

    url: str
    route: Route
    json_limit: int = MiB
    counts: Counter = field(default_factory=Counter)
    running: bool = True  # the attackers' loops end when False (a cancellation can be lost)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(*self.address)


def head(path: str, token: str, framing: str, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
    ).encode()


def status_of(answer: bytes) -> str:
    """The final status of a raw HTTP answer (interim 1xx skipped), or why there is none."""
    while answer.startswith(b"HTTP/1.1 1"):
        answer = answer.partition(b"\r\n\r\n")[2]
    return answer[9:12].decode("latin-1") if answer.startswith(b"HTTP/1.") else "no answer"


async def _closing(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def silent_sockets(count: int, half_sent: bool = True) -> Callable[[Target], Awaitable[None]]:
    """``count`` connections that never finish a request head (every other one sends half a
    head), each reopened when the runner closes it (finding 1)."""

    async def attack(target: Target) -> None:
        async def hold(number: int) -> None:
            while target.running:
                try:
                    reader, writer = await target.connect()
                except OSError:
                    target.counts["connect failed"] += 1
                    await asyncio.sleep(0.5)
                    continue
                target.counts["opened"] += 1
                try:
                    if half_sent and number % 2:
                        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    with contextlib.suppress(OSError):
                        await reader.read(65536)  # until the runner closes it
                    target.counts["closed by the runner"] += 1
                finally:
                    await _closing(writer)
                await asyncio.sleep(0.2)

        await asyncio.gather(*(hold(n) for n in range(count)))

    return attack


def slow_bodies(count: int, interval: float) -> Callable[[Target], Awaitable[None]]:
    """``count`` requests with the right token whose bodies come one byte every ``interval``
    seconds, each sent again when answered (finding 6)."""

    async def attack(target: Target) -> None:
        async def trickle() -> None:
            while target.running:
                reader, writer = await target.connect()
                try:
                    writer.write(head(target.route.path, TOKEN, "Content-Length: 1000"))
                    answer = asyncio.ensure_future(reader.read(65536))
                    with contextlib.suppress(OSError):
                        while not answer.done():
                            writer.write(b" ")
                            await writer.drain()
                            await asyncio.wait({answer}, timeout=interval)
                    target.counts[f"answered {status_of(await answer)}"] += 1
                except OSError:
                    target.counts["reset"] += 1
                finally:
                    await _closing(writer)

        await asyncio.gather(*(trickle() for _ in range(count)))

    return attack


WRONG_TOKEN_BODIES = (
    ("wrong token, chunked", "wrong", "Transfer-Encoding: chunked"),
    ("wrong token, 10 GB declared", "wrong", f"Content-Length: {10 * 1024 * MiB}"),
)
OVERSIZED_BODIES = (
    ("over the limit, declared", TOKEN, f"Content-Length: {1024 * MiB}"),
    ("over the limit, chunked", TOKEN, "Transfer-Encoding: chunked"),
)


def refused_bodies(
    count: int,
    variants: tuple[tuple[str, str, str], ...] = WRONG_TOKEN_BODIES + OVERSIZED_BODIES,
    per_connection: int = 256 * MiB,
) -> Callable[[Target], Awaitable[None]]:
    """``count`` connections streaming large bodies the runner refuses (a wrong token, a
    declared or counted size over the limit) as fast as they can, up to ``per_connection``
    bytes each, then again, taking ``variants`` (name, token, framing) in turn (finding 8)."""

    async def attack(target: Target) -> None:
        async def stream(number: int) -> None:
            for round_number in itertools.count(number):
                if not target.running:
                    return
                name, token, framing = variants[round_number % len(variants)]
                chunk = b"x" * CHUNK
                if framing.startswith("Transfer"):
                    chunk = b"%x\r\n%s\r\n" % (CHUNK, chunk)
                reader, writer = await target.connect()
                answer = asyncio.ensure_future(reader.read(65536))
                sent = 0
                try:
                    writer.write(head(target.route.path, token, framing))
                    while sent < per_connection:
                        writer.write(chunk)
                        await asyncio.wait_for(writer.drain(), 10)
                        sent += len(chunk)
                except (OSError, TimeoutError):
                    pass
                finally:
                    target.counts["bytes sent"] += sent
                    target.counts["streamed to the end"] += sent >= per_connection
                    with contextlib.suppress(OSError, TimeoutError):
                        status = status_of(await asyncio.wait_for(answer, 5))
                        target.counts[f"{name}: {status}"] += 1
                    answer.cancel()
                    await _closing(writer)

        await asyncio.gather(*(stream(n) for n in range(count)))

    return attack


def uploads(
    count: int,
    request: Callable[[], dict],
    hang_up_after: float | None = None,
    timeout: float = 120.0,
    pause: float = 0.5,
) -> Callable[[Target], Awaitable[None]]:
    """``count`` clients sending ``request()`` again and again with the right token: waiting
    up to ``timeout`` for the answer or, with ``hang_up_after``, closing the connection that
    many seconds after the last byte of the upload (finding 5)."""

    async def attack(target: Target) -> None:
        async def waiting(client: httpx.AsyncClient) -> None:
            while target.running:
                target.counts["sent"] += 1
                try:
                    response = await client.post(target.route.path, **request())
                    answer = f"answered {response.status_code}"
                    if response.status_code != 200:
                        answer += f" ({response.text[:80]})"
                    target.counts[answer] += 1
                except httpx.TimeoutException:
                    target.counts["hung up after the timeout"] += 1
                except httpx.HTTPError as exc:
                    target.counts[type(exc).__name__] += 1
                await asyncio.sleep(pause)

        async def abandoning() -> None:
            built = httpx.Request("POST", target.url + target.route.path, **request())
            body = built.read()
            raw_head = f"POST {target.route.path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in built.headers.items()
            )
            raw = raw_head.encode() + b"\r\n" + body
            while target.running:
                reader, writer = await target.connect()
                try:
                    writer.write(raw)
                    await writer.drain()
                    await asyncio.sleep(hang_up_after)
                    target.counts["uploaded, then hung up"] += 1
                except OSError:
                    target.counts["reset while uploading"] += 1
                finally:
                    writer.transport.abort()
                await asyncio.sleep(pause)

        if hang_up_after is not None:
            await asyncio.gather(*(abandoning() for _ in range(count)))
            return
        async with httpx.AsyncClient(base_url=target.url, timeout=timeout) as client:
            await asyncio.gather(*(waiting(client) for _ in range(count)))

    return attack


@dataclass(frozen=True)
class Attack:
    name: str
    pipeline: str
    attackers: Callable[[Target], Awaitable[None]]
    holds_places: int = 0  # places the attack's own valid requests may hold at once
    prepare: Callable[[], object] | None = None  # builds what it sends, before the round


# A thin image: its narrow side the least every route takes (two latent pixels of SD's VAE),
# the other long enough to cost far more than its pixel count suggests (3.2 megapixels).
THIN_WIDTH, THIN_HEIGHT = 16, 200_000
ATTACK_AUDIO_SECONDS = 600.0  # of tiny-frame silence: about 1 MB, 240,000 Opus frames


def attack_mix(
    audio_seconds: float = ATTACK_AUDIO_SECONDS,
    thin_height: int = THIN_HEIGHT,
    upscale_max_pixels: int = 512 * 512,
    image_routes: tuple[str, ...] = tuple(IMAGE_FIELDS),
) -> list[Attack]:
    """Issue 13's attacks, in the order the benchmark runs them."""
    opus: list[bytes] = []

    def audio() -> dict:
        if not opus:
            opus.append(tiny_frame_opus(audio_seconds))
        return {"files": {"audio": ("silence.opus", opus[0])}, "headers": _auth()}

    def thin(pipeline: str) -> Attack:
        height = thin_height
        if pipeline == "upscale":  # the largest upload it takes, made thin
            height = min(height, upscale_max_pixels // THIN_WIDTH)
        size = (THIN_WIDTH, height)
        image: list[bytes] = []

        def request() -> dict:
            if not image:
                image.append(png(size))
            return image_route(pipeline).with_image(image[0], size)

        name = f"thin image ({THIN_WIDTH} x {height:,})"
        return Attack(name, pipeline, uploads(1, request), holds_places=1, prepare=request)

    return [
        Attack("silent sockets (300)", "text-to-image", silent_sockets(300)),
        Attack("slow bodies (5, a byte a second)", "text-to-image", slow_bodies(5, 1.0)),
        Attack("refused large bodies (3 streams)", "text-to-image", refused_bodies(3)),
        Attack(
            f"audio in 2.5 ms frames ({audio_seconds:g} s)",
            "audio-to-text",
            uploads(1, audio),
            holds_places=1,
            prepare=audio,
        ),
        Attack(
            "disconnect after upload (2 clients)",
            "audio-to-text",
            uploads(2, audio, hang_up_after=0.5),
            holds_places=2,
            prepare=audio,
        ),
        *(thin(pipeline) for pipeline in image_routes),
    ]


# -- legitimate traffic alongside ---------------------------------------------------------------


@dataclass
class Legit:
    sent: int = 0
    ok: int = 0
    refused: int = 0
    refused_under_cap: int = 0  # refused while fewer than CAPACITY + MAX_QUEUE were in flight
    other: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # of the 200 answers


async def _legit_clients(
    url: str, route: Route, concurrency: int, seconds: float, timeout: float, places: int
) -> Legit:
    result = Legit()
    in_flight = 0
    deadline = time.monotonic() + seconds

    async def client_loop(number: int) -> None:
        nonlocal in_flight
        rng = random.Random(number)
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            while time.monotonic() < deadline:
                in_flight += 1
                at_sending = in_flight
                result.sent += 1
                started = time.perf_counter()
                try:
                    response = await client.post(route.path, **route.legit(rng))
                except httpx.HTTPError as exc:
                    result.lost.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                finally:
                    in_flight -= 1
                if response.status_code == 200:
                    result.ok += 1
                    result.seconds.append(time.perf_counter() - started)
                elif "retry-after" in response.headers:
                    result.refused += 1
                    result.refused_under_cap += at_sending < places
                    await asyncio.sleep(0.2)  # as a caller honouring Retry-After would
                else:
                    result.other[response.status_code] += 1

    await asyncio.gather(*(client_loop(n) for n in range(concurrency)))
    return result


# -- one round ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class MemoryWatch:
    """Polls a process's RSS and open files: their peaks, and a kill when the RSS passes
    ``limit_mib``."""

    def __init__(self, pid: int | None, limit_mib: float) -> None:
        self.pid, self.limit_mib = pid, limit_mib
        self.peak_mib = 0.0
        self.peak_files = 0
        self.killed = False
        self._stop = threading.Event()

    def __enter__(self) -> MemoryWatch:
        if self.pid is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = resident_mib(self.pid)
                self.peak_files = max(self.peak_files, open_files(self.pid))
            except (OSError, RuntimeError):
                return  # the process has ended
            self.peak_mib = max(self.peak_mib, rss)
            if rss > self.limit_mib:
                self.killed = True
                os.kill(self.pid, 9)
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.pid is not None:
            self._thread.join(5)


@dataclass
class AttackResult:
    attack: str
    pipeline: str
    legit: Legit
    health_ms: list[float]
    health_failures: int
    counts: Counter
    drained_s: float | None  # None: never IDLE again within the drain timeout
    rss_mib: tuple[float, float, float] | None = None  # before, peak, after
    cpu_s: float | None = None
    open_files: tuple[int, int] | None = None  # before, peak
    killed: bool = False  # for passing the RSS limit

    def health(self, q: float) -> float:
        from common import percentile

        return percentile(self.health_ms, q) if self.health_ms else float("nan")

    @property
    def met(self) -> bool:
        """Issue 13's target: /health max under 100 ms, nothing lost, no refusal under the cap."""
        return (
            not self.killed
            and self.drained_s is not None
            and self.health_failures == 0
            and bool(self.health_ms)
            and max(self.health_ms) < 100
            and not self.legit.lost
            and self.legit.refused_under_cap == 0
        )


async def _round(
    target: Target, attack: Attack, concurrency: int, seconds: float, timeout: float, places: int
) -> Legit:
    attackers = asyncio.ensure_future(attack.attackers(target))
    try:
        await asyncio.sleep(1.0)  # the attack in place before the legitimate traffic
        if attackers.done():
            attackers.result()  # an attacker that failed to start: say why
        return await _legit_clients(target.url, target.route, concurrency, seconds, timeout, places)
    finally:
        target.running = False
        for _ in range(10):  # asyncio.wait_for can swallow a cancellation (before 3.12)
            attackers.cancel()
            await asyncio.wait({attackers}, timeout=1.0)
            if attackers.done():
                break
        if not attackers.cancelled() and attackers.done():
            attackers.exception()  # retrieved: an attacker's failure is not the round's


def run_attack(
    url: str,
    attack: Attack,
    places: int,
    seconds: float = 20.0,
    legit_concurrency: int | None = None,
    pid: int | None = None,
    max_rss_mib: float = 4096.0,
    timeout: float = 60.0,
    health_interval: float = 0.05,
    drain_timeout: float = 60.0,
    json_limit: int = MiB,
) -> AttackResult:
    """One attack against the runner at ``url`` (``pid``: its process, for RSS, CPU time and
    the memory watch), with ``places`` = CAPACITY + MAX_QUEUE. Legitimate clients default to
    ``places - 1`` less the places the attack's own valid requests hold."""
    concurrency = legit_concurrency or max(1, places - 1 - attack.holds_places)
    target = Target(url, route_for(attack.pipeline), json_limit)
    if attack.prepare:
        attack.prepare()
    rss_before = resident_mib(pid) if pid else None
    cpu_before = cpu_seconds(pid) if pid else None
    files_before = open_files(pid) if pid else None
    with MemoryWatch(pid, max_rss_mib) as memory, HealthPoller(url, health_interval) as health:
        legit = asyncio.run(_round(target, attack, concurrency, seconds, timeout, places))
    result = AttackResult(
        attack.name,
        attack.pipeline,
        legit,
        health.latencies_ms,
        health.failures,
        target.counts,
        None if memory.killed else _drained(url, drain_timeout),
        killed=memory.killed,
    )
    if pid and not memory.killed:
        result.rss_mib = (rss_before, max(memory.peak_mib, rss_before), resident_mib(pid))
        result.cpu_s = cpu_seconds(pid) - cpu_before
        result.open_files = (files_before, max(memory.peak_files, files_before))
    return result


def _drained(url: str, timeout: float) -> float | None:
    try:
        return wait_drained(url, timeout)
    except httpx.HTTPError:
        return None


# -- the report -----------------------------------------------------------------------------------


def table(results: list[AttackResult]) -> str:
    rows = [
        "| attack | route | legit sent / 200 / refused (under the cap) / other / **lost** "
        "| /health p50 / p99 / max ms | RSS before → after (peak) MiB | runner CPU s "
        "| idle again | target |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for r in results:
        legit = r.legit
        other = sum(legit.other.values())
        rss = "killed at the RSS limit" if r.killed else "-"
        if r.rss_mib:
            rss = f"{r.rss_mib[0]:.0f} → {r.rss_mib[2]:.0f} ({r.rss_mib[1]:.0f})"
        drained = "never" if r.drained_s is None else f"{r.drained_s:.1f} s"
        rows.append(
            f"| {r.attack} | /{r.pipeline} "
            f"| {legit.sent} / {legit.ok} / {legit.refused} ({legit.refused_under_cap}) "
            f"/ {other} / **{len(legit.lost)}** "
            f"| {r.health(0.5):.1f} / {r.health(0.99):.1f} / "
            f"{max(r.health_ms, default=float('nan')):.1f}"
            f"{f' ({r.health_failures} failed)' if r.health_failures else ''} "
            f"| {rss} | {'-' if r.cpu_s is None else f'{r.cpu_s:.1f}'} | {drained} "
            f"| {'met' if r.met else '**missed**'} |"
        )
    return "\n".join(rows)


def describe(result: AttackResult) -> str:
    legit = result.legit
    lines = [
        f"{result.attack} on /{result.pipeline}: legit {legit.sent} sent, {legit.ok} ok, "
        f"{legit.refused} refused ({legit.refused_under_cap} under the cap), "
        f"other {dict(legit.other)}, {len(legit.lost)} lost",
        "  attackers: " + ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())),
    ]
    if legit.seconds:
        from common import percentile

        lines.append(
            f"  legit 200 latency p50 {percentile(legit.seconds, 0.5) * 1000:.0f} ms, "
            f"max {max(legit.seconds) * 1000:.0f} ms"
        )
    lines.append(
        f"  /health p50 {result.health(0.5):.1f} ms, p99 {result.health(0.99):.1f} ms, max "
        f"{max(result.health_ms, default=float('nan')):.1f} ms, {result.health_failures} failed"
    )
    if result.rss_mib and result.cpu_s is not None:
        before, peak, after = result.rss_mib
        lines.append(
            f"  runner RSS {before:.0f} → {after:.0f} MiB (peak {peak:.0f}), "
            f"CPU {result.cpu_s:.1f} s, open files {result.open_files[0]} "
            f"(peak {result.open_files[1]})"
        )
    if result.killed:
        lines.append("  the runner was killed at the RSS limit")
    lines += [f"  lost: {reason}" for reason in legit.lost[:3]]
    return "\n".join(lines)


# -- every attack, each pipeline's runner started once ---------------------------------------------


def run_attacks(
    attacks: list[Attack],
    start_runner: Callable[[str], object],
    places: int,
    **round_options: object,
) -> list[AttackResult]:
    """Run ``attacks`` in order; ``start_runner(pipeline)`` gives a started ``common.Runner``
    (one per pipeline, started again after a runner was killed or died)."""
    results: list[AttackResult] = []
    current: tuple[str, Any] | None = None  # the pipeline served, and its runner
    for attack in attacks:
        if current and (current[0] != attack.pipeline or current[1].proc.poll() is not None):
            current[1].stop()
            current = None
        if current is None:
            current = (attack.pipeline, start_runner(attack.pipeline))
            _warm_up(current[1].url, route_for(attack.pipeline))
        runner = current[1]
        result = run_attack(runner.url, attack, places, pid=runner.proc.pid, **round_options)
        results.append(result)
        print(describe(result), flush=True)
    if current:
        current[1].stop()
    return results


def _warm_up(url: str, route: Route) -> None:
    """Two legitimate requests before the first round: first-call costs are not the attack's."""
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=300) as client:
        for _ in range(2):
            client.post(route.path, **route.legit(rng)).raise_for_status()
