"""What the benchmarks share: timing, percentiles, and a runner served in a child process."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def server_timing(header: str) -> dict[str, float]:
    """The runner's ``Server-Timing`` header, in seconds by part."""
    parts = {}
    for item in header.split(","):
        name, _, duration = item.strip().partition(";dur=")
        parts[name] = float(duration) / 1000
    return parts


class Runner:
    """``ai-runner serve`` in a child process, waited on until it says IDLE."""

    def __init__(
        self, port: int, log: Path | None = None, open_files: int | None = None, **env: str
    ) -> None:
        """``log``: a file the runner's output is appended to (by default it is dropped);
        ``open_files``: the runner's file-descriptor limit (by default this process's)."""
        self.url = f"http://127.0.0.1:{port}"
        output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", "serve"],
            env={**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: _limit_open_files(open_files)) if open_files else None,
        )
        if log:
            output.close()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=2).json()["status"] == "IDLE":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the runner for {env.get('PIPELINE')} did not become IDLE")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _limit_open_files(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def measure_over_http(url: str, path: str, request: dict, runs: int) -> tuple[float, float]:
    """Median end-to-end and model (``Server-Timing`` inference) ms of ``runs`` requests,
    after one unmeasured request."""
    with httpx.Client(base_url=url, timeout=600) as client:
        client.post(path, **request).raise_for_status()
        e2e, model = [], []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.post(path, **request)
            e2e.append(time.perf_counter() - started)
            response.raise_for_status()
            model.append(server_timing(response.headers["server-timing"])["inference"])
    return median_ms(e2e), median_ms(model)


def arguments(doc: str, runs: int, port: int) -> argparse.ArgumentParser:
    """The options every benchmark takes: repetitions, a models folder, the first port."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument(
        "--model-dir", type=Path, help="tiny models built here (a temporary folder)"
    )
    parser.add_argument("--port", type=int, default=port)
    return parser


def tiny_models(model_dir: Path | None, ids: list[str]) -> Path:
    """A folder holding the tiny models ``ids``, building those it lacks."""
    from tiny_models import ensure

    folder = model_dir or Path(tempfile.mkdtemp(prefix="bench-models-"))
    ensure(folder, ids)
    return folder
