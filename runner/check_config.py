"""``ai-runner check-config aiModels.json``: an operator's model list, checked before a deploy.

One line per finding; errors make the command exit non-zero, so it can guard a deploy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipelines.diffusion_families import lightning_unet
from pipelines.registry import (
    ACCELERATED_PIPELINES,
    REGISTRY,
    SAFETY_CHECKED_PIPELINES,
    SAFETY_CHECKER,
    SDXL_BASE,
    network_pipelines,
)
from pipelines.segment_anything_2 import locate_sam2
from pipelines.text_to_speech import PARLER_IMAGE, TRANSFORMERS_IMAGE, image_serving
from runner.errors import RunnerError
from runner.hub import ModelNotFound, locate_model

GiB = 1024**3
KNOWN_FIELDS = {
    "pipeline",
    "model_id",
    "url",
    "token",
    "warm",
    "capacity",
    "optimization_flags",
    "price_per_unit",
    "pixels_per_unit",
    "currency",
}
FEW_STEP = re.compile(r"lightning|turbo", re.IGNORECASE)
# Weights loaded on the GPU, plus activations, CUDA context and the allocator's slack.
VRAM_OVERHEAD_FACTOR = 1.25
VRAM_OVERHEAD_BYTES = 1.5 * GiB


@dataclass(frozen=True)
class Finding:
    level: str  # "error", "warning" or "info"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_total: int | None  # bytes; None when only the count is known


Probe = Callable[[str, str | None], str | None]


def probe_health(url: str, token: str | None) -> str | None:
    """Why ``url``'s /health is not usable, or None when it answers a known status."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url.rstrip("/") + "/health", headers=headers, timeout=5.0)
    except httpx.HTTPError as exc:
        return f"does not answer ({type(exc).__name__})"
    if response.status_code != 200:
        return f"answers {response.status_code}"
    try:
        status = response.json()["status"]
    except (ValueError, KeyError, TypeError):
        return "answers something that is not the runner's /health body"
    if status not in {"LOADING", "IDLE", "OK"}:
        return f"says {status}"
    return None


def repositories(model_id: str, model_dir: Path) -> list[str]:
    """The hub repositories a model needs (Lightning UNets load into the SDXL base; SAM 2 is
    Meta's checkpoint, as ai-runner's download script leaves it, or its -hf conversion)."""
    swap = lightning_unet(model_id)
    if swap is not None:
        return [swap.repo, SDXL_BASE]
    if model_id.startswith("facebook/sam2"):
        try:
            return [locate_sam2(model_dir, model_id).repo]
        except RunnerError:  # neither is there: report the id asked for
            return [model_id]
    return [model_id]


def weight_bytes(snapshot: Path) -> int:
    """Bytes of the weights the runner loads: fp16 files where the model ships them, and
    Meta's ``.pt`` checkpoints where there is nothing else."""
    files = [p for p in snapshot.rglob("*") if p.suffix in {".safetensors", ".bin"}]
    files = files or [p for p in snapshot.rglob("*.pt")]
    fp16 = [p for p in files if ".fp16" in p.name]
    return sum(p.stat().st_size for p in (fp16 or files))


def check(
    entries: object,
    model_dir: Path,
    gpus: list[Gpu] | None,
    probe: Probe = probe_health,
) -> list[Finding]:
    findings: list[Finding] = []
    if not isinstance(entries, list):
        return [Finding("error", "aiModels.json", "must be a JSON list of model entries")]
    warm_local = []
    speech_images: dict[str, list[str]] = {}  # image tag -> the entries it must serve
    for number, entry in enumerate(entries, start=1):
        where = f"entry {number}"
        if not isinstance(entry, dict):
            findings.append(Finding("error", where, "must be a JSON object"))
            continue
        pipeline, model_id = entry.get("pipeline"), entry.get("model_id")
        where = f"entry {number} ({pipeline or '?'} {model_id or '?'})"
        findings += _check_entry(entry, where, model_dir, probe)
        if entry.get("warm") and not entry.get("url") and pipeline and model_id:
            warm_local.append((where, pipeline, model_id))
        if pipeline == "text-to-speech" and model_id and not entry.get("url"):
            image = _speech_image(model_dir, model_id)
            if image:
                speech_images.setdefault(image, []).append(where)
    findings += _check_gpus(warm_local, model_dir, gpus)
    findings += _check_speech_images(speech_images)
    return findings


def _speech_image(model_dir: Path, model_id: str) -> str | None:
    try:
        config = locate_model(model_dir, model_id) / "config.json"
    except ModelNotFound:
        return None  # already reported
    model_type = json.loads(config.read_text()).get("model_type", "") if config.exists() else ""
    return image_serving(model_type)


def _check_speech_images(images: dict[str, list[str]]) -> list[Finding]:
    """go-livepeer starts one image per pipeline, ``:text-to-speech`` (Parler-TTS) unless
    overridden; Bark and MMS-TTS need the other image (ai/worker/docker.go)."""
    if TRANSFORMERS_IMAGE not in images:
        return []
    if PARLER_IMAGE in images:
        parler, others = "; ".join(images[PARLER_IMAGE]), "; ".join(images[TRANSFORMERS_IMAGE])
        message = (
            f"Parler-TTS ({parler}) and Bark/MMS-TTS ({others}) need different images, and the "
            "worker starts one image per pipeline: serve one of them as an external runner (url)"
        )
        return [Finding("error", "text-to-speech", message)]
    override = {"batch": {"text-to-speech": f"livepeer/ai-runner:{TRANSFORMERS_IMAGE}"}}
    message = (
        f"Bark and MMS-TTS are served by the image tagged {TRANSFORMERS_IMAGE}; the worker "
        f"starts livepeer/ai-runner:{PARLER_IMAGE} (Parler-TTS) unless told otherwise: "
        f"-aiRunnerImageOverrides '{json.dumps(override)}'"
    )
    return [Finding("warning", "text-to-speech", message)]


def _check_entry(entry: dict, where: str, model_dir: Path, probe: Probe) -> list[Finding]:
    found: list[Finding] = []
    pipeline, model_id, url = entry.get("pipeline"), entry.get("model_id"), entry.get("url")
    for field in sorted(set(entry) - KNOWN_FIELDS):
        found.append(Finding("warning", where, f"unknown field {field!r} is ignored"))
    if not pipeline or not model_id:
        found.append(Finding("error", where, "needs both 'pipeline' and 'model_id'"))
        return found
    if pipeline not in network_pipelines():
        allowed = ", ".join(network_pipelines())
        found.append(Finding("error", where, f"unknown pipeline {pipeline!r} (known: {allowed})"))
    elif pipeline not in REGISTRY and not url:
        found.append(Finding("warning", where, f"this runner does not serve {pipeline} yet"))
    if url:
        reason = probe(url, entry.get("token"))
        if reason:
            found.append(Finding("error", where, f"external runner {url}/health {reason}"))
    else:
        for repo in repositories(model_id, model_dir):
            try:
                locate_model(model_dir, repo)
            except ModelNotFound as exc:
                if repo == SDXL_BASE:  # fetched at load, as ai-runner does (runner/hub.py)
                    message = (
                        f"{exc.message}; the runner fetches it at load unless HF_HUB_OFFLINE=1"
                    )
                    found.append(Finding("warning", where, message))
                else:
                    found.append(Finding("error", where, exc.message))
    found += _check_flags(entry, where, pipeline, model_id)
    return found


def _check_flags(entry: dict, where: str, pipeline: str, model_id: str) -> list[Finding]:
    flags = entry.get("optimization_flags") or {}
    if not isinstance(flags, dict):
        return [Finding("error", where, "optimization_flags must be an object")]
    on = {name.upper() for name, value in flags.items() if value in (True, "true", "True", 1)}
    found = []
    for name in sorted(set(flags) - {"SFAST", "DEEPCACHE"}):
        found.append(Finding("warning", where, f"unknown optimization flag {name!r}"))
    if not on:
        return found
    if not entry.get("warm"):
        found.append(Finding("warning", where, "optimization flags apply to warm models only"))
    if pipeline not in ACCELERATED_PIPELINES:
        found.append(
            Finding("warning", where, f"{', '.join(sorted(on))} does nothing for {pipeline}")
        )
    if {"SFAST", "DEEPCACHE"} <= on:
        found.append(Finding("error", where, "SFAST and DEEPCACHE cannot be combined"))
    elif "DEEPCACHE" in on and FEW_STEP.search(model_id):
        found.append(
            Finding("warning", where, "DEEPCACHE degrades few-step Lightning/Turbo models")
        )
    return found


def _check_gpus(
    warm: list[tuple[str, str, str]], model_dir: Path, gpus: list[Gpu] | None
) -> list[Finding]:
    found: list[Finding] = []
    if not warm:
        return found
    if not gpus:
        found.append(Finding("warning", "GPUs", "none found here: GPU fit is not checked"))
        return found
    if len(warm) > len(gpus):
        found.append(
            Finding("error", "GPUs", f"{len(warm)} warm models but only {len(gpus)} GPU(s)")
        )
    for where, pipeline, model_id in warm:
        estimate = _vram_estimate(model_dir, pipeline, model_id)
        if estimate is None:
            continue
        sizes = [g for g in gpus if g.memory_total]
        fits = [g for g in sizes if g.memory_total >= estimate]
        summary = f"needs about {estimate / GiB:.1f} GiB of GPU memory"
        if sizes and not fits:
            largest = max(g.memory_total for g in sizes) / GiB
            found.append(Finding("error", where, f"{summary}; the largest GPU has {largest:.0f}"))
        elif len(fits) < len(sizes):
            names = ", ".join(f"GPU {g.index}" for g in sizes if g not in fits)
            found.append(Finding("warning", where, f"{summary}; too much for {names}"))
        else:
            found.append(Finding("info", where, summary))
    return found


def _vram_estimate(model_dir: Path, pipeline: str, model_id: str) -> float | None:
    repos = repositories(model_id, model_dir)
    if pipeline in SAFETY_CHECKED_PIPELINES:
        repos.append(SAFETY_CHECKER)
    total = 0
    for repo in repos:
        try:
            total += weight_bytes(locate_model(model_dir, repo))
        except ModelNotFound:
            if repo != SAFETY_CHECKER:
                return None
    return total * VRAM_OVERHEAD_FACTOR + VRAM_OVERHEAD_BYTES


def run(path: Path, model_dir: Path, gpu_count: int | None) -> int:
    """Print the findings for ``path``; the exit status (1 when there are errors)."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {path}: cannot be read as JSON ({exc})")
        return 1
    if gpu_count is not None:
        gpus = [Gpu(i, "GPU", None) for i in range(gpu_count)]
    else:
        from runner.hardware import gpu_info

        gpus = [Gpu(i, g.name, g.memory_total) for i, g in sorted(gpu_info().items())]
    findings = check(entries, model_dir, gpus)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(f"{path}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0
