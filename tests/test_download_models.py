"""scripts/download_models.sh, run against a stand-in ``hf`` that records what it was asked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipelines.registry import REGISTRY, SAFETY_CHECKER, SDXL_BASE

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "download_models.sh"

# The stand-in: records its arguments (one JSON list per call) and lays out the hub cache
# as `hf download` would, writing each file an --include names exactly (wildcard patterns
# become one sample file). Repositories in STUB_BIN_ONLY publish no safetensors; those in
# STUB_DENY answer as a gated repository does without a token.
STUB = r"""#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
repo = args[1]
if repo in os.environ.get("STUB_DENY", "").split():
    print(f"401 Client Error: Unauthorized. Access to {repo} is restricted.", file=sys.stderr)
    sys.exit(1)
cache = args[args.index("--cache-dir") + 1]
patterns = [args[i + 1] for i, a in enumerate(args) if a == "--include"]
root = os.path.join(cache, "models--" + repo.replace("/", "--"))
snapshot = os.path.join(root, "snapshots", "0" * 40)
os.makedirs(os.path.join(root, "refs"), exist_ok=True)
with open(os.path.join(root, "refs", "main"), "w") as ref:
    ref.write("0" * 40)
for pattern in patterns:
    if pattern.endswith(".safetensors") and repo in os.environ.get("STUB_BIN_ONLY", "").split():
        continue
    name = pattern.replace("*/", "unet/").replace("*", "sample")
    path = os.path.join(snapshot, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()
"""


@pytest.fixture
def run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "hf"
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    models = tmp_path / "models"

    def run_script(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        before = len(log.read_text().splitlines()) if log.exists() else 0
        full_env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "STUB_LOG": str(log),
            "MODEL_DIR": str(models),
            **env,
        }
        full_env.pop("HF_TOKEN", None)
        done = subprocess.run(
            ["bash", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=60
        )
        lines = log.read_text().splitlines() if log.exists() else []
        return done, [json.loads(line) for line in lines[before:]]

    run_script.models = models
    return run_script


def repos(calls):
    return [call[1] for call in calls]


def includes(call):
    return [call[i + 1] for i, arg in enumerate(call) if arg == "--include"]


def test_a_pipeline_fetches_its_default_model_in_fp16_and_the_safety_checker(run):
    default = REGISTRY["text-to-image"].default_model
    done, calls = run("text-to-image")
    assert done.returncode == 0, done.stderr
    assert repos(calls) == [default, SAFETY_CHECKER]
    model = calls[0]
    assert model[:4] == ["download", default, "--cache-dir", str(run.models)]
    assert "*/*.fp16*.safetensors" in includes(model)
    assert not any(p.endswith("*.safetensors") and "fp16" not in p for p in includes(model))
    assert "done: 2 downloaded, 0 already there, 0 failed" in done.stdout


def test_lightning_takes_one_unet_and_the_sdxl_base(run):
    done, calls = run("ByteDance/SDXL-Lightning-4step")
    assert done.returncode == 0, done.stderr
    assert repos(calls) == ["ByteDance/SDXL-Lightning", SDXL_BASE, SAFETY_CHECKER]
    assert includes(calls[0]) == ["sdxl_lightning_4step_unet.safetensors"]
    assert "*/*.fp16*.safetensors" in includes(calls[1])


def test_sam2_is_metas_checkpoint_as_ai_runner_fetches_it(run):
    """ai-runner's runner/dl_checkpoints.sh: `hf download facebook/sam2-hiera-large
    --include "*.pt" --include "*.yaml"`; the runner converts it at its first start."""
    done, calls = run("segment-anything-2")
    assert done.returncode == 0, done.stderr
    sam2 = REGISTRY["segment-anything-2"].default_model
    assert [(call[1], includes(call)) for call in calls] == [(sam2, ["*.pt", "*.yaml"])]
    done, calls = run(f"{sam2}-hf")
    assert done.returncode == 0, done.stderr
    assert repos(calls) == [f"{sam2}-hf"]
    assert "*.safetensors" in includes(calls[0]) and "*.pt" not in includes(calls[0])


def test_a_second_run_downloads_nothing(run):
    first, calls = run("openai/whisper-large-v3")
    assert first.returncode == 0 and repos(calls) == ["openai/whisper-large-v3"]
    second, calls = run("openai/whisper-large-v3")
    assert second.returncode == 0 and calls == []
    assert "skip openai/whisper-large-v3" in second.stdout
    forced, calls = run("--force", "openai/whisper-large-v3")
    assert repos(calls) == ["openai/whisper-large-v3"]


def test_transformers_models_fall_back_to_bin_weights_only_without_safetensors(run):
    done, calls = run("suno/bark", STUB_BIN_ONLY="suno/bark")
    assert done.returncode == 0, done.stderr
    assert [includes(call)[-1] for call in calls] == ["*.safetensors", "*.bin"]
    done, calls = run("Salesforce/blip-image-captioning-large")
    assert len(calls) == 1 and "*.bin" not in includes(calls[0])


def test_dry_run_prints_and_fetches_nothing(run):
    done, calls = run("--dry-run", "--all")
    assert done.returncode == 0 and calls == []
    assert not run.models.exists()
    printed = [
        line for line in done.stdout.splitlines() if line.startswith("would run: hf download")
    ]
    fetched = {line.split()[4] for line in printed}
    defaults = {entry.default_model for entry in REGISTRY.values()}
    # ByteDance/SDXL-Lightning (image-to-image's default) loads into the SDXL base.
    assert defaults | {SDXL_BASE, SAFETY_CHECKER} == fetched
    assert sum(SAFETY_CHECKER in line for line in printed) == 1


def test_config_mode_fetches_what_an_ai_models_json_lists(run, tmp_path):
    config = tmp_path / "aiModels.json"
    config.write_text(
        json.dumps(
            [
                {"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "warm": True},
                {"pipeline": "upscale", "model_id": "acme/custom-upscaler"},
                {"pipeline": "llm", "model_id": "meta/llama", "url": "http://byoc:8000"},
            ]
        )
    )
    done, calls = run("--config", str(config))
    assert done.returncode == 0, done.stderr
    assert repos(calls) == ["stabilityai/sd-turbo", SAFETY_CHECKER, "acme/custom-upscaler"]
    assert "*/*.safetensors" in includes(calls[2])  # an unknown diffusion model: diffusers files


def test_a_gated_model_without_access_fails_naming_the_model_and_the_token(run):
    done, calls = run(
        "stabilityai/stable-video-diffusion-img2vid-xt-1-1",
        STUB_DENY="stabilityai/stable-video-diffusion-img2vid-xt-1-1",
    )
    assert done.returncode == 1
    assert "is gated" in done.stdout and "HF_TOKEN" in done.stdout
    assert (
        "error: downloading stabilityai/stable-video-diffusion-img2vid-xt-1-1 failed" in done.stderr
    )
    assert "HF_TOKEN" in done.stderr
    assert SAFETY_CHECKER in repos(calls)  # the rest still came
    assert "1 failed" in done.stdout


def test_bad_arguments_are_refused(run, tmp_path):
    assert run()[0].returncode == 2
    done, _ = run("not-a-pipeline")
    assert done.returncode == 2 and "neither a pipeline" in done.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    done, calls = run("--config", str(broken))
    assert done.returncode == 2 and "not valid JSON" in done.stderr and calls == []
