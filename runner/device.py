"""Where the model runs, in which precision, and how torch failures become typed errors.

torch is imported inside the functions: the HTTP layer must not pay for it at import time.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from runner.errors import InferenceFailed, OutOfMemory, RunnerError
from runner.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger("runner.device")
T = TypeVar("T")


class DeviceUnusable(RunnerError):
    """The accelerator is in a state no request can recover from: the runner must restart."""


@dataclass(frozen=True)
class Placement:
    device: str  # "cuda" or "cpu"
    dtype: torch.dtype
    variant: str | None  # "fp16" when the model ships fp16 weights and they are used

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.device}/{dtype}" + (f" ({self.variant} weights)" if self.variant else "")


def configure_torch(settings: Settings) -> None:
    """Size torch's CPU thread pool so the event loop still gets a core."""
    import torch

    torch.set_num_threads(settings.torch_threads)
    with contextlib.suppress(RuntimeError):  # it may be set only once per process
        torch.set_num_interop_threads(1)


def choose_device(settings: Settings) -> str:
    import torch

    if settings.device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if settings.device == "cuda":
        raise DeviceUnusable("DEVICE=cuda but no CUDA device is usable in this container")
    return "cpu"


def has_fp16_variant(model_path: Path) -> bool:
    """Whether the snapshot ships ``*.fp16.safetensors`` weights (diffusers' ``variant``)."""
    return any(model_path.rglob("*.fp16.safetensors"))


def choose_placement(
    settings: Settings, device: str, model_path: Path, fp16_without_variant: bool = False
) -> Placement:
    """fp32 on the CPU; on CUDA bf16 when ``BFLOAT16`` is set, fp16 when the model ships
    fp16 weights, else fp32 (as the reference runner: diffusion models published without
    fp16 weights are not known to be safe in fp16). Models known to run well in fp16
    (``fp16_without_variant``) get fp16 on CUDA either way."""
    import torch

    if device == "cpu":
        return Placement("cpu", torch.float32, None)
    if settings.bfloat16:
        return Placement(device, torch.bfloat16, None)
    if has_fp16_variant(model_path):
        return Placement(device, torch.float16, "fp16")
    return Placement(device, torch.float16 if fp16_without_variant else torch.float32, None)


@dataclass(frozen=True)
class ModelFiles:
    """A model found in ``MODEL_DIR``, and where and in which precision it will run."""

    repo: str
    path: Path
    device: str
    placement: Placement
    cache_dir: Path

    def with_dtype(self, dtype: str) -> ModelFiles:
        """The same files in the precision a model family was published for (no variant)."""
        import torch

        placement = Placement(self.device, getattr(torch, dtype), None)
        return replace(self, placement=placement)

    @property
    def source(self) -> dict:
        """Keyword arguments for ``from_pretrained``: the hub cache, never the network."""
        return {"cache_dir": self.cache_dir, "local_files_only": True}


def prepare_model(
    settings: Settings,
    repo: str | None = None,
    path: Path | None = None,
    fp16_without_variant: bool = True,
) -> ModelFiles:
    """Find ``repo`` (the configured model by default) and choose its device and precision."""
    from runner.hub import locate_model
    from runner.logs import quiet_progress_bars

    quiet_progress_bars()
    repo = repo or settings.model_id
    path = path or locate_model(settings.model_dir, repo)
    device = choose_device(settings)
    placement = choose_placement(settings, device, path, fp16_without_variant)
    return ModelFiles(repo, path, device, placement, settings.model_dir)


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# How CUDA and cuBLAS word a failed allocation when it does not come from torch's caching
# allocator (which raises torch.OutOfMemoryError): cudaErrorMemoryAllocation is not sticky,
# the context survives it.
OUT_OF_MEMORY_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed GPU allocation: the request was too large for the memory free at the time."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in OUT_OF_MEMORY_MARKERS)


def is_unrecoverable(exc: BaseException) -> bool:
    """CUDA errors after which the context is unusable ("device-side assert", "illegal ...");
    out of memory is not one of them."""
    import torch

    accelerator_error = getattr(torch, "AcceleratorError", ())
    if not accelerator_error or not isinstance(exc, accelerator_error):
        return False
    return not is_out_of_memory(exc)


def guarded[T](fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a pipeline call so torch failures surface as the runner's typed errors."""

    def call(*args: object) -> T:
        try:
            return fn(*args)
        except RunnerError:
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):  # out of memory is handled below, where no
                # traceback holds the failed call's tensors
                if is_unrecoverable(exc):
                    raise DeviceUnusable(f"unrecoverable device error: {exc}") from exc
                log.exception("inference failed")
                raise InferenceFailed(f"Inference failed: {type(exc).__name__}.") from exc
        log.warning("out of memory during inference; freeing the cache")
        free_memory()
        raise OutOfMemory()

    return call
