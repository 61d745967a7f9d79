"""A bounded load test: mixed good and bad requests from concurrent clients, some of which
hang up early, against text-to-image and audio-to-text runners at CAPACITY 1 and 4.

For each runner (``ai-runner serve`` in a child process, on the tiny models) it runs a
warm-up round of the request mix, then a measured round of the same mix, and prints:

- requests sent, answered by status, disconnected on purpose, and **lost** (a request that
  was not meant to hang up and got no HTTP answer: a transport error or a client timeout);
- answers whose status the request's kind does not allow (``unexpected``);
- the disconnects the clients caused against the cancellations the runner counted
  (``runner_cancelled_requests_total{reason="disconnect"}``);
- ``/health`` latency p99 and max, polled every ``--health-interval`` during the round;
- throughput, and queue time p50/p99 from ``Server-Timing: queue;dur=`` of 200 answers;
- the runner's resident memory (VmRSS) after the warm-up and after the measured round;
- whether the runner drained (``/health`` back to IDLE) after each round.

Traffic goes to 127.0.0.1 only; a round stops after its requests (200 text-to-image, 60
audio-to-text, times ``--scale``). It exits 1 if a request was lost or answered a status
its kind does not allow.

    python benchmarks/bench_load.py                       # a few minutes on 2 cores
    python benchmarks/bench_load.py --scale 4 --concurrency 32

With ``--attacks`` it runs issue 13's attack mix instead (benchmarks/attacks.py): silent
sockets, slow bodies, refused large bodies, audio in tiny Opus frames, disconnects after an
upload, and a thin image on every image route, each for ``--attack-seconds`` while
legitimate clients keep sending, against runners with AUTH_TOKEN set, CAPACITY=1,
MAX_QUEUE=4 and a file-descriptor limit of 256. It prints a table per attack (legitimate
requests sent/ok/refused/lost, /health p50/p99/max, RSS before/after) and exits 1 unless
every attack met the target: /health max under 100 ms, nothing lost, no legitimate request
refused while fewer than CAPACITY + MAX_QUEUE were in flight.

    python benchmarks/bench_load.py --attacks              # about ten minutes on 2 cores
    python benchmarks/bench_load.py --attacks --only "slow bodies" --attack-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Runner, percentile, server_timing, tiny_models  # noqa: E402

TOKEN = "bench-load-token"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Kind:
    """One sort of request in the mix: how to build it and which answers it may get."""

    name: str
    weight: int
    build: Callable[[random.Random], dict]  # httpx.AsyncClient.post keyword arguments
    expected: frozenset[int]
    hang_up_within: float = 0.0  # > 0: the client hangs up after a random time up to this
    can_be_refused: bool = True  # admission (overload) is checked after auth


@dataclass(frozen=True)
class Mix:
    path: str
    kinds: tuple[Kind, ...]

    def draw(self, rng: random.Random, count: int) -> list[Kind]:
        return rng.choices(self.kinds, weights=[k.weight for k in self.kinds], k=count)


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def text_to_image_mix(json_limit: int = MiB, long_steps: int = 30) -> Mix:
    def body(rng: random.Random, **extra: object) -> dict:
        values = {
            "prompt": rng.choice(["a cat", "a red boat at dawn", "mountains|a lake"]),
            "width": 64,
            "height": 64,
            "num_inference_steps": rng.randint(2, 4),
            "seed": rng.randint(0, 1000),
        }
        return {"json": values | extra, "headers": _auth()}

    def raw(content: bytes, **headers: str) -> dict:
        return {
            "content": content,
            "headers": _auth() | {"content-type": "application/json"} | headers,
        }

    async def stream(size: int):  # no Content-Length: the runner has to count
        for _ in range(size // (64 * 1024) + 1):
            yield b" " * (64 * 1024)

    return Mix(
        "/text-to-image",
        (
            Kind("good", 40, body, frozenset({200})),
            Kind(
                "hang-up",
                14,
                lambda rng: body(rng, num_inference_steps=long_steps),
                frozenset({200}),
                hang_up_within=1.5,
            ),
            Kind(
                "wrong model_id", 6, lambda rng: body(rng, model_id="org/other"), frozenset({400})
            ),
            Kind(
                "invalid value",
                6,
                lambda rng: body(rng, **rng.choice([{"width": 63}, {"num_inference_steps": 0}])),
                frozenset({400}),
            ),
            Kind("malformed JSON", 6, lambda rng: raw(b'{"prompt": "a cat",'), frozenset({422})),
            Kind(  # 413 is not among the route's declared codes, so it is answered 400
                "oversized body",
                3,
                lambda rng: raw(b" " * (json_limit + 1)),
                frozenset({400}),
            ),
            Kind(
                "oversized, chunked",
                2,
                lambda rng: raw(stream(json_limit + 1)),
                frozenset({400}),
            ),
            Kind(
                "wrong token",
                4,
                lambda rng: body(rng) | {"headers": _auth("wrong")},
                frozenset({401}),
                can_be_refused=False,
            ),
        ),
    )


def wav(seconds: float, frequency: float = 440.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def audio_to_text_mix(audio_limit: int, json_limit: int = MiB) -> Mix:
    clips = [wav(seconds, frequency) for seconds in (2, 3, 4) for frequency in (220, 440)]

    def form(rng: random.Random, audio: bytes | None = None, **data: str) -> dict:
        request: dict = {
            "data": {"return_timestamps": rng.choice(["true", "false", "word"])} | data,
            "headers": _auth(),
        }
        request["files"] = {
            "audio": ("clip.wav", audio if audio is not None else rng.choice(clips))
        }
        return request

    return Mix(
        "/audio-to-text",
        (
            Kind("good", 26, form, frozenset({200})),
            Kind("hang-up", 12, form, frozenset({200}), hang_up_within=3.0),
            Kind(
                "wrong model_id", 8, lambda rng: form(rng, model_id="org/other"), frozenset({400})
            ),
            Kind(
                "invalid value",
                8,
                lambda rng: form(rng, return_timestamps="sometimes"),
                frozenset({400}),
            ),
            Kind(
                "no audio field",
                6,
                lambda rng: {"data": {"return_timestamps": "true"}, "headers": _auth()},
                frozenset({422}),
            ),
            Kind(
                "undecodable audio",
                8,
                lambda rng: form(rng, audio=b"this is not audio " * 64),
                frozenset({415}),
            ),
            Kind(
                "oversized file",
                3,
                lambda rng: form(rng, audio=b"\0" * (audio_limit + 1)),
                frozenset({413}),
            ),
            Kind(
                "oversized body",
                3,
                lambda rng: form(rng, audio=b"\0" * (audio_limit + json_limit + 1)),
                frozenset({413}),
            ),
            Kind(
                "wrong token",
                4,
                lambda rng: form(rng) | {"headers": _auth("wrong")},
                frozenset({401}),
                can_be_refused=False,
            ),
        ),
    )


# -- one round ------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    request_id: str  # sent as X-Request-Id, so the runner's log can be matched
    status: int | None = None  # None: no HTTP answer
    overloaded: bool = False  # refused with Retry-After because the runner was full
    hung_up: bool = False  # the client hung up on purpose before its answer
    error: str = ""  # why a request that should have been answered was not
    queue_s: float | None = None
    unexpected: bool = False


@dataclass
class Round:
    outcomes: list[Outcome]
    seconds: float
    health_ms: list[float]
    health_failures: int
    cancelled_by_runner: float  # the runner's disconnect cancellations during the round
    drained_s: float | None  # seconds until /health said IDLE again; None: it never did

    @property
    def lost(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def answered(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is not None]

    @property
    def unexpected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.unexpected]

    def statuses(self) -> Counter:
        return Counter(o.status for o in self.answered)

    def queue_ms(self) -> list[float]:
        return [o.queue_s * 1000 for o in self.outcomes if o.queue_s is not None]


def poll_health(url: str, interval: float) -> None:
    """The poller's process: poll until stdin closes, then print the latencies as JSON."""
    latencies_ms: list[float] = []
    failures = 0
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                client.get(url).raise_for_status()
                latencies_ms.append((time.perf_counter() - started) * 1000)
            except httpx.HTTPError:
                failures += 1
            if len(latencies_ms) + failures == 1:
                print("polling", flush=True)
            stop.wait(max(0.0, interval - (time.perf_counter() - started)))
    print(json.dumps({"latencies_ms": latencies_ms, "failures": failures}), flush=True)


class HealthPoller:
    """Polls ``/health`` from a process of its own: neither the load's event loop nor this
    process's GIL can delay a poll, so the latencies are the runner's."""

    def __init__(self, url: str, interval: float) -> None:
        self.url, self.interval = url + "/health", interval
        self.latencies_ms: list[float] = []
        self.failures = 0

    def __enter__(self) -> HealthPoller:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--poll-health", self.url, str(self.interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._process.stdout.readline().strip() != "polling":
            raise RuntimeError("the /health poller did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._process.communicate("", timeout=30)
        polled = json.loads(out)
        self.latencies_ms, self.failures = polled["latencies_ms"], polled["failures"]


def disconnect_cancellations(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(r'^runner_cancelled_requests_total\{reason="disconnect"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_drained(url: str, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if httpx.get(url + "/health", timeout=5).json()["status"] == "IDLE":
            return time.monotonic() - started
        time.sleep(0.05)
    return None


async def _send(
    client: httpx.AsyncClient,
    mix: Mix,
    kind: Kind,
    request_id: str,
    rng: random.Random,
    overload_status: int,
) -> Outcome:
    outcome = Outcome(kind.name, request_id)
    request = kind.build(rng)
    request["headers"] = request["headers"] | {"x-request-id": request_id}
    try:
        if kind.hang_up_within:
            response = await asyncio.wait_for(
                client.post(mix.path, **request), rng.uniform(0.05, kind.hang_up_within)
            )
        else:
            response = await client.post(mix.path, **request)
    except TimeoutError:
        outcome.hung_up = bool(kind.hang_up_within)
        outcome.error = "" if outcome.hung_up else "client timeout"
        return outcome
    except httpx.HTTPError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.status = response.status_code
    outcome.overloaded = (
        kind.can_be_refused
        and response.status_code == overload_status
        and "retry-after" in response.headers
    )
    outcome.unexpected = not outcome.overloaded and response.status_code not in kind.expected
    if response.status_code == 200:
        outcome.queue_s = server_timing(response.headers["server-timing"])["queue"]
    elif not outcome.overloaded:
        try:
            detail = response.json()["detail"]
        except (ValueError, KeyError, TypeError):
            outcome.unexpected = True  # every error answer has the contract's body
        else:
            if response.status_code != 422 and not isinstance(detail.get("msg"), str):
                outcome.unexpected = True
    return outcome


async def _clients(
    url: str,
    mix: Mix,
    requests: int,
    concurrency: int,
    seed: int,
    timeout: float,
    overload_status: int,
    backoff: float,
) -> list[Outcome]:
    rng = random.Random(seed)
    queue = list(reversed(list(enumerate(mix.draw(rng, requests)))))
    outcomes: list[Outcome] = []

    async def client_loop(client_number: int) -> None:
        own = random.Random(seed * 1000 + client_number)
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
            while queue:
                number, kind = queue.pop()
                request_id = f"load-{seed}-{number}"
                outcome = await _send(client, mix, kind, request_id, own, overload_status)
                outcomes.append(outcome)
                if outcome.overloaded:
                    await asyncio.sleep(backoff)  # as a caller that honours Retry-After would

    await asyncio.gather(*(client_loop(n) for n in range(concurrency)))
    return outcomes


def run_round(
    url: str,
    mix: Mix,
    requests: int,
    concurrency: int,
    seed: int = 0,
    timeout: float = 120.0,
    overload_status: int = 500,
    backoff: float = 0.2,
    health_interval: float = 0.075,
    drain_timeout: float = 60.0,
) -> Round:
    """Send ``requests`` requests of ``mix`` from ``concurrency`` clients; wait until the
    runner is idle again."""
    cancelled_before = disconnect_cancellations(url)
    started = time.perf_counter()
    with HealthPoller(url, health_interval) as health:
        outcomes = asyncio.run(
            _clients(url, mix, requests, concurrency, seed, timeout, overload_status, backoff)
        )
    seconds = time.perf_counter() - started
    drained = wait_drained(url, drain_timeout)
    return Round(
        outcomes=outcomes,
        seconds=seconds,
        health_ms=health.latencies_ms,
        health_failures=health.failures,
        cancelled_by_runner=disconnect_cancellations(url) - cancelled_before,
        drained_s=drained,
    )


# -- the benchmark --------------------------------------------------------------------------


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Result:
    pipeline: str
    capacity: int
    measured: Round
    idle_health_ms: list[float]  # /health of the idle runner: the machine's noise floor
    rss_mib: list[float] = field(default_factory=list)  # after warm-up, after each round


def describe(result: Result) -> str:
    r = result.measured
    statuses = ", ".join(
        f"{code}: {count}" for code, count in sorted(r.statuses().items(), key=lambda x: x[0])
    )
    overloaded = sum(o.overloaded for o in r.outcomes)
    hung_up = sum(o.hung_up for o in r.outcomes)
    queue = r.queue_ms()
    lines = [
        f"{result.pipeline}, CAPACITY={result.capacity}: {len(r.outcomes)} requests "
        f"in {r.seconds:.1f} s",
        f"  answered {len(r.answered)} ({statuses}; {overloaded} of them overload refusals)",
        f"  hung up on purpose {hung_up}, runner counted {r.cancelled_by_runner:.0f} "
        "disconnect cancellations",
        f"  lost {len(r.lost)}, unexpected status {len(r.unexpected)}",
        f"  /health p99 {percentile(r.health_ms, 0.99):.1f} ms, max {max(r.health_ms):.1f} ms "
        f"({len(r.health_ms)} polls, {r.health_failures} failed); idle runner: "
        f"p99 {percentile(result.idle_health_ms, 0.99):.1f} ms",
        f"  throughput {len(r.answered) / r.seconds:.1f} answers/s, "
        f"{r.statuses()[200] / r.seconds:.2f} inferences answered/s",
    ]
    if queue:
        lines.append(
            f"  queue time p50 {percentile(queue, 0.5):.0f} ms, "
            f"p99 {percentile(queue, 0.99):.0f} ms"
        )
    drained = "never" if r.drained_s is None else f"after {r.drained_s:.1f} s"
    lines.append(f"  idle again {drained}")
    rss = result.rss_mib
    lines.append(
        f"  runner RSS after warm-up {rss[0]:.0f} MiB, after each measured round "
        + ", ".join(f"{m:.0f}" for m in rss[1:])
        + f" MiB (last / warm-up = {rss[-1] / rss[0]:.3f})"
    )
    for outcome in r.lost[:5]:
        lines.append(f"  lost: {outcome.request_id} {outcome.kind}: {outcome.error}")
    for outcome in r.unexpected[:5]:
        lines.append(f"  unexpected: {outcome.request_id} {outcome.kind}: {outcome.status}")
    return "\n".join(lines)


def table(results: list[Result]) -> str:
    rows = [
        "| pipeline | CAPACITY | sent | answered (200 / 4xx / overload) | hung up (runner "
        "cancelled) | **lost** | /health p99 / max ms (idle p99) | answers/s "
        "| queue p50 / p99 ms "
        "| RSS warm-up → after MiB |",
        "|---|---:|---:|---|---|---:|---|---:|---|---|",
    ]
    for result in results:
        r = result.measured
        statuses = r.statuses()
        client_errors = sum(n for code, n in statuses.items() if 400 <= code < 500)
        overloaded = sum(o.overloaded for o in r.outcomes)
        queue = r.queue_ms() or [0.0]
        rss = result.rss_mib
        rows.append(
            f"| {result.pipeline} | {result.capacity} | {len(r.outcomes)} "
            f"| {len(r.answered)} ({statuses[200]} / {client_errors} / {overloaded}) "
            f"| {sum(o.hung_up for o in r.outcomes)} ({r.cancelled_by_runner:.0f}) "
            f"| **{len(r.lost)}** "
            f"| {percentile(r.health_ms, 0.99):.1f} / {max(r.health_ms):.1f} "
            f"({percentile(result.idle_health_ms, 0.99):.1f}) "
            f"| {len(r.answered) / r.seconds:.1f} "
            f"| {percentile(queue, 0.5):.0f} / {percentile(queue, 0.99):.0f} "
            f"| {rss[0]:.0f} → {rss[-1]:.0f} ({rss[-1] / rss[0]:.2f}) |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--capacities", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--pipelines", nargs="+", default=["text-to-image", "audio-to-text"], metavar="PIPELINE"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies the requests per round (200 text-to-image, 60 audio-to-text)",
    )
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1, help="measured rounds after warm-up")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout, seconds")
    parser.add_argument("--health-interval", type=float, default=0.075)
    parser.add_argument("--port", type=int, default=8921)
    parser.add_argument("--runner-log", type=Path, help="the runners' logs (default: a temp file)")
    attack = parser.add_argument_group("the attack mix")
    attack.add_argument("--attacks", action="store_true", help="run the attack mix instead")
    attack.add_argument(
        "--only", nargs="+", default=[], metavar="WORDS", help="attacks whose names hold these"
    )
    attack.add_argument("--attack-seconds", type=float, default=15.0)
    attack.add_argument("--open-files", type=int, default=256, help="the runners' fd limit")
    attack.add_argument(
        "--max-rss-mib", type=float, default=4096, help="a runner past this RSS is killed"
    )
    attack.add_argument("--attack-audio-seconds", type=float, default=600.0)
    attack.add_argument("--legit-timeout", type=float, default=60.0, help="seconds")
    attack.add_argument("--thin-height", type=int, default=200_000, help="of a 16-wide image")
    args = parser.parse_args()
    if args.attacks:
        return attack_main(args)

    from runner.logs import quiet_progress_bars
    from tiny_models import TINY_SAFETY_CHECKER, TINY_SD, TINY_WHISPER

    quiet_progress_bars()
    model_dir = tiny_models(args.model_dir, [TINY_SD, TINY_SAFETY_CHECKER, TINY_WHISPER])
    runner_log = args.runner_log or Path(tempfile.mkstemp(prefix="bench-load-", suffix=".log")[1])

    audio_limit = MiB
    setups = {
        "text-to-image": (TINY_SD, text_to_image_mix(), 200),
        "audio-to-text": (TINY_WHISPER, audio_to_text_mix(audio_limit), 60),
    }
    results = []
    port = args.port
    for pipeline in args.pipelines:
        model_id, mix, requests = setups[pipeline]
        requests = max(1, round(requests * args.scale))
        for capacity in args.capacities:
            runner = Runner(
                port,
                log=runner_log,
                PIPELINE=pipeline,
                MODEL_ID=model_id,
                MODEL_DIR=str(model_dir),
                SAFETY_CHECKER_ID=TINY_SAFETY_CHECKER,
                CAPACITY=str(capacity),
                AUTH_TOKEN=TOKEN,
                MAX_AUDIO_BYTES=str(audio_limit),
            )
            port += 1
            try:
                common = {
                    "requests": requests,
                    "concurrency": args.concurrency,
                    "timeout": args.timeout,
                    "health_interval": args.health_interval,
                }
                with HealthPoller(runner.url, args.health_interval) as idle:
                    time.sleep(3)
                run_round(runner.url, mix, seed=0, **common)
                rss = [resident_mib(runner.proc.pid)]
                for number in range(1, args.rounds + 1):
                    measured = run_round(runner.url, mix, seed=number, **common)
                    rss.append(resident_mib(runner.proc.pid))
            finally:
                runner.stop()
            result = Result(pipeline, capacity, measured, idle.latencies_ms, rss)
            results.append(result)
            print(describe(result), flush=True)

    print(
        f"\n#### {args.concurrency} concurrent clients, tiny models, CPU "
        f"({Path('/proc/cpuinfo').read_text().count('processor')} cores)\n"
    )
    print(table(results))
    print(f"\nthe runners' logs: {runner_log}")
    failed = [r for r in results if r.measured.lost or r.measured.unexpected]
    return 1 if failed else 0


ATTACK_CAPACITY, ATTACK_MAX_QUEUE = 1, 4


def attack_main(args: argparse.Namespace) -> int:
    import attacks

    from pipelines.registry import REGISTRY
    from runner.logs import quiet_progress_bars
    from tiny_models import TINY_SAFETY_CHECKER

    quiet_progress_bars()
    models = {pipeline: entry.tiny_model for pipeline, entry in REGISTRY.items()}
    mix = [
        a
        for a in attacks.attack_mix(args.attack_audio_seconds, args.thin_height)
        if not args.only or any(words in a.name or words == a.pipeline for words in args.only)
    ]
    wanted = sorted({models[a.pipeline] for a in mix} | {TINY_SAFETY_CHECKER})
    model_dir = tiny_models(args.model_dir, wanted)
    runner_log = args.runner_log or Path(tempfile.mkstemp(prefix="bench-attack-", suffix=".log")[1])
    ports = iter(range(args.port, args.port + 1000))

    def start_runner(pipeline: str) -> Runner:
        return Runner(
            next(ports),
            log=runner_log,
            open_files=args.open_files,
            PIPELINE=pipeline,
            MODEL_ID=models[pipeline],
            MODEL_DIR=str(model_dir),
            SAFETY_CHECKER_ID=TINY_SAFETY_CHECKER,
            AUTH_TOKEN=TOKEN,
            CAPACITY=str(ATTACK_CAPACITY),
            MAX_QUEUE=str(ATTACK_MAX_QUEUE),
            SHUTDOWN_GRACE="5",
        )

    results = attacks.run_attacks(
        mix,
        start_runner,
        ATTACK_CAPACITY + ATTACK_MAX_QUEUE,
        seconds=args.attack_seconds,
        max_rss_mib=args.max_rss_mib,
        timeout=args.legit_timeout,
    )
    cores = Path("/proc/cpuinfo").read_text().count("processor")
    print(
        f"\n#### Attack mix: {cores} cores, CPU, tiny models; CAPACITY={ATTACK_CAPACITY}, "
        f"MAX_QUEUE={ATTACK_MAX_QUEUE}, AUTH_TOKEN set, {args.open_files} open files, "
        f"{args.attack_seconds:g} s per attack\n"
    )
    print(attacks.table(results))
    print(f"\nthe runners' logs: {runner_log}")
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--poll-health"]:
        poll_health(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(main())
