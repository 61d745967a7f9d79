"""Shared fixtures: the tiny models (each built the first time a test needs it) and runners
serving them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from runner.app import create_app
from runner.server import uvicorn_config
from runner.settings import Settings
from tiny_models import (
    RECIPES,
    TINY_PIX2PIX,
    TINY_SAFETY_CHECKER,
    TINY_SD,
    TINY_SD_LORA,
    TINY_SDXL,
    TINY_SDXL_LIGHTNING,
    TINY_SDXL_LORA,
    build,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# What a model brings along: the LoRAs a request to it may name, the base a Lightning UNet
# runs in.
COMPANIONS: dict[str, tuple[str, ...]] = {
    TINY_SD: (TINY_SD_LORA,),
    TINY_PIX2PIX: (TINY_SD_LORA,),
    TINY_SDXL: (TINY_SDXL_LORA,),
    TINY_SDXL_LIGHTNING: (TINY_SDXL, TINY_SDXL_LORA),
}


class TinyModels:
    """One hub-cache folder for the session; each tiny model is built into it the first time
    a test asks for it, then reused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: set[str] = set()
        self._lock = threading.Lock()

    def need(self, *model_ids: str) -> Path:
        """The folder, holding ``model_ids`` and their companions (ids that are not tiny
        models are left out: a test may name a model that is absent on purpose)."""
        wanted = [i for m in model_ids for i in (m, *COMPANIONS.get(m, ())) if i in RECIPES]
        with self._lock:
            missing = [i for i in dict.fromkeys(wanted) if i not in self._built]
            if missing:
                build(self.folder, only=missing)
                self._built.update(missing)
        return self.folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def model_dir(tiny: TinyModels) -> Path:
    """The session's models folder; a test names the models it reads with ``tiny.need``."""
    return tiny.folder


@pytest.fixture(scope="session")
def make_settings(tiny: TinyModels):
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "pipeline": "text-to-image",
            "model_id": TINY_SD,
            "model_dir": tiny.folder,
            "safety_checker_id": TINY_SAFETY_CHECKER,
            "warmup": False,
        }
        values.update(overrides)
        if values["model_dir"] == tiny.folder:
            named = ("model_id", "safety_checker_id", "sdxl_base_id")
            tiny.need(*(str(values[key]) for key in named if key in values))
        return Settings(**values)

    return make


def wait_for_status(client, wanted: set[str], timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/health").json()["status"]
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"/health never reached {wanted}")


@contextmanager
def serving(settings: Settings, wait: bool = True) -> Iterator[TestClient]:
    """The app in-process (lifespan included), ready to answer when ``wait``."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        if wait:
            wait_for_status(client, {"IDLE", "ERROR"})
        yield client


@pytest.fixture(scope="module")
def sd_client(make_settings) -> Iterator[TestClient]:
    with serving(make_settings()) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served_over_tcp(settings: Settings) -> Iterator[tuple[str, object]]:
    """The app under uvicorn on a thread of this process: a real socket (for disconnects),
    and the app at hand to watch its state. Yields its URL and the app once it is IDLE."""
    app = create_app(settings)
    port = free_port()
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health").json()["status"] == "IDLE":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        yield url, app
    finally:
        server.should_exit = True
        thread.join(30)


class RunnerProcess:
    """``ai-runner serve`` in a child process, as the container runs it."""

    def __init__(self, env: dict[str, str], log_path: Path, python: str = sys.executable) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log_file = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [python, "-m", "runner.cli", "serve"],
            env=full_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited early:\n{self.log()}")
            try:
                httpx.get(self.url + "/health", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"runner never listened:\n{self.log()}")

    def wait_status(self, wanted: set[str], timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = httpx.get(self.url + "/health", timeout=5.0).json()["status"]
            if status in wanted:
                return status
            time.sleep(0.1)
        raise AssertionError(f"/health never reached {wanted}:\n{self.log()}")

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log_file.close()


@pytest.fixture
def runner_process(tiny: TinyModels, tmp_path: Path):
    started: list[RunnerProcess] = []

    def start(**env: str) -> RunnerProcess:
        values = {
            "PIPELINE": "text-to-image",
            "MODEL_ID": TINY_SD,
            "MODEL_DIR": str(tiny.folder),
            "SAFETY_CHECKER_ID": TINY_SAFETY_CHECKER,
            "WARMUP": "false",
        }
        values.update(env)
        if values["MODEL_DIR"] == str(tiny.folder):
            named = ("MODEL_ID", "SAFETY_CHECKER_ID", "SDXL_BASE_ID")
            tiny.need(*(values[key] for key in named if key in values))
        runner = RunnerProcess(values, tmp_path / f"runner{len(started)}.log")
        started.append(runner)
        runner.wait_listening()
        return runner

    yield start
    for runner in started:
        runner.stop()
