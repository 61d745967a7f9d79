"""LoRA adapters for the diffusion pipelines: the request's ``loras`` field, fetching the
adapters ``MODEL_DIR`` lacks (as ai-runner, unless HF_HUB_OFFLINE=1), the adapters kept
loaded on the pipe (least recently used dropped first), and the gate that keeps a request
from ever running with another request's adapters.

Adapter state is global to the pipe while ``CAPACITY`` inferences share it, so requests
whose adapters (and weights) are the active ones run together; one that wants others waits
until those running finish, then switches. Waiters are let in in arrival order, so a steady
stream wanting the active adapters cannot starve one that wants different ones.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from pipelines.checks import json_field
from runner.errors import InvalidInput
from runner.hub import Downloads, FetchFailed, ModelNotFound, cached_snapshot, locate_model
from runner.settings import Settings

log = logging.getLogger("pipelines.lora")

Weights = dict[str, float]  # adapter repo id -> weight; {} runs without adapters
# diffusers' choice of a LoRA repo's weights file (loaders/lora_base.py _best_guess_weight_name)
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
NOT_WEIGHTS = ("scheduler", "optimizer", "checkpoint")


def parse_loras(text: str, limit: int) -> Weights:
    """The ``loras`` field as ``{repo id: weight}``; ``""`` and ``{}`` mean none."""
    if not text.strip():
        return {}
    value = json_field("loras", text)
    if not isinstance(value, dict):
        raise InvalidInput(
            f'loras must be a JSON object such as {{"org/lora": 1.0}}, got {_json_kind(value)}.'
        )
    if len(value) > limit:
        raise InvalidInput(f"loras: at most {limit} adapters per request, got {len(value)}.")
    weights: Weights = {}
    for repo, weight in value.items():
        if not _is_hub_id(repo):
            raise InvalidInput(f"loras: adapter {repo!r} is not a Hugging Face id (org/name).")
        weights[repo] = _finite(repo, weight)
    return weights


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    return kinds.get(type(value), "an array")


def _is_hub_id(repo: str) -> bool:
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return False
    return repo.count("/") == 1


def _finite(repo: str, weight: Any) -> float:
    number = None
    if isinstance(weight, int | float) and not isinstance(weight, bool):
        try:
            number = float(weight)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number):
        raise InvalidInput(
            f"loras: the weight of {repo} must be a finite number, got {json.dumps(weight)}."
        )
    return number


def check_loras(text: str, settings: Settings) -> Weights:
    """Parse the field; offline, check that each adapter is in ``MODEL_DIR`` (online, the
    missing ones are fetched before the request waits for a slot). Loading is later."""
    weights = parse_loras(text, settings.max_loras)
    if settings.hf_hub_offline:
        for repo in weights:
            _locate(settings.model_dir, repo)
    return weights


def weights_file(names: Iterable[str]) -> str | None:
    """The ``.safetensors`` file of a LoRA repo that diffusers would load; pickled weights
    are never chosen."""
    candidates = sorted(
        name
        for name in names
        if name.endswith(".safetensors") and not any(word in name for word in NOT_WEIGHTS)
    )
    preferred = [name for name in candidates if name.endswith(WEIGHTS_NAME)]
    return (preferred or candidates or [None])[0]


def _choose_weights(listing: dict[str, int]) -> str:
    name = weights_file(listing)
    if name is None:
        raise FetchFailed("it has no .safetensors weights file (pickled weights are not fetched)")
    return name


def _has_weights(snapshot: Path | None) -> bool:
    """Whether an adapter's snapshot holds weights (a failed download leaves it empty)."""
    return snapshot is not None and any(
        file.suffix in (".safetensors", ".bin") for file in snapshot.rglob("*")
    )


def _locate(model_dir: Path, repo: str) -> Path:
    try:
        return locate_model(model_dir, repo)
    except ModelNotFound:
        raise InvalidInput(f"loras: adapter {repo} is not in MODEL_DIR.") from None


def describe(weights: Weights | None) -> str:
    if not weights:
        return "none"
    return ", ".join(f"{repo} ({weight:g})" for repo, weight in weights.items())


class AdapterGate:
    """Lets in together requests that want the same adapters; switches between sets only
    when no request is running."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[tuple[object, Weights]] = []  # in arrival order
        self._running = 0
        self._active: Weights | None = {}  # None: unknown, after a failed switch

    @property
    def active(self) -> Weights | None:
        return self._active

    @contextmanager
    def entered(self, wanted: Weights, switch: Callable[[Weights], None]) -> Iterator[None]:
        """Run the body with ``wanted`` active; ``switch`` makes it active, alone."""
        ticket = object()
        with self._cond:
            self._waiting.append((ticket, wanted))
            try:
                self._cond.wait_for(lambda: self._may_enter(ticket, wanted))
                if self._active != wanted:
                    self._active = None
                    switch(wanted)
                    self._active = wanted
            finally:
                self._waiting.remove((ticket, wanted))
                self._cond.notify_all()
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _may_enter(self, ticket: object, wanted: Weights) -> bool:
        for earlier, their in self._waiting:
            if earlier is ticket:
                break
            if their != wanted:
                return False
        return self._running == 0 or self._active == wanted


class LoraAdapters:
    """The adapters loaded on one diffusers pipe, at most ``MAX_LORAS`` of them kept."""

    def __init__(self, pipe: Any, settings: Settings) -> None:
        self.pipe = pipe
        self.model_dir = settings.model_dir
        self.limit = settings.max_loras
        self.downloads = None if settings.hf_hub_offline else Downloads(settings)
        self.gate = AdapterGate()
        # repo id -> the pipe's adapter name, least recently used first
        self.loaded: OrderedDict[str, str] = OrderedDict()
        self._loads = 0

    def fetch_missing(self, loras: str) -> None:
        """Download the adapters the ``loras`` field names that ``MODEL_DIR`` lacks.

        Called before the request waits for an inference slot: a download holds neither a
        slot nor the event loop, and other requests are served meanwhile."""
        wanted = self._wanted(loras)
        for repo in wanted:
            snapshot = cached_snapshot(self.model_dir, repo)
            if self.downloads is None:  # HF_HUB_OFFLINE=1: only what MODEL_DIR holds
                if snapshot is None:
                    _locate(self.model_dir, repo)
                continue
            if _has_weights(snapshot):
                continue
            try:
                self.downloads.fetch(repo, "LoRA adapter", _choose_weights)
            except FetchFailed as exc:
                log.warning("LoRA adapter %s could not be fetched: %s", repo, exc.reason)
                raise InvalidInput(
                    f"loras: adapter {repo} could not be fetched: {exc.reason}."
                ) from None

    def _wanted(self, loras: str) -> Weights:
        wanted = parse_loras(loras, self.limit)
        if wanted and not hasattr(self.pipe, "load_lora_weights"):
            raise InvalidInput(f"loras: this model ({type(self.pipe).__name__}) takes no LoRAs.")
        return wanted

    @contextmanager
    def applied(self, loras: str) -> Iterator[None]:
        """Run the body with exactly the adapters the ``loras`` field names active."""
        wanted = self._wanted(loras)
        with self.gate.entered(wanted, self._switch):
            yield

    def _switch(self, wanted: Weights) -> None:
        if not wanted:
            if self.loaded:
                self.pipe.disable_lora()
            log.info("LoRA adapters active: none")
            return
        for repo in wanted:
            if repo in self.loaded:
                self.loaded.move_to_end(repo)
        missing = [repo for repo in wanted if repo not in self.loaded]
        self._make_room(len(missing), keep=wanted)
        for repo in missing:
            self._load(repo)
        self.pipe.set_adapters(
            [self.loaded[repo] for repo in wanted], adapter_weights=list(wanted.values())
        )
        self.pipe.enable_lora()
        log.info("LoRA adapters active: %s", describe(wanted))

    def _make_room(self, count: int, keep: Weights) -> None:
        """Drop the least recently used adapters (not in ``keep``) so ``count`` more fit."""
        for repo in [repo for repo in self.loaded if repo not in keep]:
            if len(self.loaded) + count <= self.limit:
                break
            name = self.loaded.pop(repo)
            self.pipe.delete_adapters([name])
            log.info(
                "dropped LoRA adapter %s (least recently used; MAX_LORAS=%d)", repo, self.limit
            )

    def _load(self, repo: str) -> None:
        import torch

        device_errors = (torch.AcceleratorError,) if hasattr(torch, "AcceleratorError") else ()
        path = _locate(self.model_dir, repo)
        found = weights_file(str(file.relative_to(path)) for file in path.rglob("*.safetensors"))
        chosen = {"weight_name": found} if found else {}  # else diffusers looks for itself
        self._loads += 1
        name = f"lora_{self._loads}"
        started = time.perf_counter()
        try:
            self.pipe.load_lora_weights(str(path), adapter_name=name, **chosen)
            if not any(name in names for names in self.pipe.get_list_adapters().values()):
                raise ValueError("no weights for this model's layers")
        except Exception as exc:
            self._discard(name)
            if isinstance(exc, (torch.OutOfMemoryError, *device_errors)):
                raise
            log.warning("LoRA adapter %s failed to load: %s", repo, exc)
            raise InvalidInput(
                f"loras: adapter {repo} could not be loaded into this model ({type(exc).__name__})."
            ) from exc
        self.loaded[repo] = name
        log.info("loaded LoRA adapter %s as %s in %.2fs", repo, name, time.perf_counter() - started)

    def _discard(self, name: str) -> None:
        """Remove whatever a failed load left of adapter ``name``."""
        try:
            self.pipe.delete_adapters([name])
        except Exception:
            log.exception("could not remove the partly loaded LoRA adapter %s", name)
