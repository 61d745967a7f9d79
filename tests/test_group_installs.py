"""Each image installs only its own group's extra: here each group is installed alone in an
environment of its own (uv, so torch is linked from uv's cache rather than copied) and every
pipeline it serves is brought to IDLE on its tiny model and answers one request.

The environments live in ``.venv-groups/`` and are reused while pyproject.toml is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import RunnerProcess
from examples import TINY, VALID

from pipelines.registry import REGISTRY
from tiny_models import TINY_SAFETY_CHECKER

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / ".venv-groups"
TORCH = ("torch==2.9.1", "torchvision==0.24.1")
GROUPS = sorted({entry.group for entry in REGISTRY.values()})
# A library each group must not carry: its presence would mean the extras leak into each other.
FOREIGN = {"audio": "diffusers", "vision": "diffusers", "speech": "av", "diffusion": "av"}


def _uv() -> str:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    assert found, "uv is missing: install the test extra"
    return found


def group_python(group: str, extras: str | None = None) -> Path:
    """The interpreter of an environment holding the runner with only ``group``'s extra
    (or ``extras``)."""
    env = ENVS / group
    python = env / "bin" / "python"
    stamp = env / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    uv = _uv()
    quiet = {**os.environ, "UV_LINK_MODE": "hardlink"}

    def run(*args: str) -> None:
        done = subprocess.run([uv, *args], env=quiet, capture_output=True, text=True)
        assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stdout}{done.stderr}"

    shutil.rmtree(env, ignore_errors=True)
    run("venv", "-q", "-p", "python3.12", str(env))
    run("pip", "install", "-q", "-p", str(python), *TORCH)
    run("pip", "install", "-q", "-p", str(python), "-e", f"{ROOT}[{extras or group}]")
    stamp.write_text(wanted)
    return python


def _request(client: httpx.Client, pipeline: str) -> httpx.Response:
    body = VALID[pipeline]
    files = {k: (k, v, "application/octet-stream") for k, v in body.items() if isinstance(v, bytes)}
    if not files:
        return client.post(f"/{pipeline}", json=body)
    fields = {k: str(v) for k, v in body.items() if not isinstance(v, bytes)}
    return client.post(f"/{pipeline}", data=fields, files=files)


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS)
def test_each_group_installed_alone_serves_its_pipelines(group, tiny, tmp_path):
    python = group_python(group)
    foreign = FOREIGN[group]
    probe = subprocess.run([str(python), "-c", f"import {foreign}"], capture_output=True)
    assert probe.returncode != 0, f"the {group} extra pulled in {foreign}"
    for pipeline in sorted(p for p, entry in REGISTRY.items() if entry.group == group):
        env = {
            "PIPELINE": pipeline,
            "MODEL_ID": TINY[pipeline],
            "MODEL_DIR": str(tiny.need(TINY[pipeline], TINY_SAFETY_CHECKER)),
            "SAFETY_CHECKER_ID": TINY_SAFETY_CHECKER,
            "WARMUP": "false",
        }
        runner = RunnerProcess(env, tmp_path / f"{pipeline}.log", python=str(python))
        try:
            runner.wait_listening(timeout=120)
            assert runner.wait_status({"IDLE", "ERROR"}, timeout=300) == "IDLE", runner.log()
            with httpx.Client(base_url=runner.url, timeout=120) as client:
                answer = _request(client, pipeline)
            assert answer.status_code == 200, f"{pipeline}: {answer.text}\n{runner.log()}"
        finally:
            runner.stop()


@pytest.mark.slow
def test_the_parler_image_installed_alone_passes_its_tests():
    """Parler-TTS has an image of its own (parler-tts pins transformers 4.46.1): its extra,
    installed alone with the test tools, runs the Parler tests, which skip elsewhere."""
    python = group_python("parler", "parler,test")
    probe = subprocess.run([str(python), "-c", "import diffusers"], capture_output=True)
    assert probe.returncode != 0, "the parler extra pulled in diffusers"
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/test_text_to_speech_parler.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in summary and "skipped" not in summary, summary
