"""GPU facts through NVML; empty answers on a machine without an NVIDIA GPU."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from runner.schemas import GPUComputeInfo, GPUUtilizationInfo

log = logging.getLogger("runner.hardware")
T = TypeVar("T")
_lock = threading.Lock()
_nvml_ready: bool | None = None


def _nvml():
    """The NVML module once initialised, or None where there is no driver."""
    global _nvml_ready
    with _lock:
        import pynvml

        if _nvml_ready is None:
            try:
                pynvml.nvmlInit()
                _nvml_ready = True
            except Exception as exc:  # no driver, no GPU, or a container without NVML
                log.info("no GPU facts: NVML is not available (%s)", type(exc).__name__)
                _nvml_ready = False
        return pynvml if _nvml_ready else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _per_gpu[T](read: Callable[[Any, Any, Any], T]) -> dict[int, T]:
    """``read(nvml, handle, memory)`` for each GPU, by index."""
    nvml = _nvml()
    if nvml is None:
        return {}
    facts: dict[int, T] = {}
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            facts[index] = read(nvml, handle, nvml.nvmlDeviceGetMemoryInfo(handle))
    except Exception:
        log.exception("reading GPU facts failed")
    return facts


def _compute_info(nvml: Any, handle: Any, memory: Any) -> GPUComputeInfo:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return GPUComputeInfo(
        id=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=memory.total,
        memory_free=memory.free,
        major=major,
        minor=minor,
    )


def _utilization(nvml: Any, handle: Any, memory: Any) -> GPUUtilizationInfo:
    rates = nvml.nvmlDeviceGetUtilizationRates(handle)
    return GPUUtilizationInfo(
        id=_text(nvml.nvmlDeviceGetUUID(handle)),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        memory_total=memory.total,
        memory_free=memory.free,
        utilization_compute=rates.gpu,
        utilization_memory=rates.memory,
    )


def gpu_info() -> dict[int, GPUComputeInfo]:
    return _per_gpu(_compute_info)


def gpu_stats() -> dict[int, GPUUtilizationInfo]:
    return _per_gpu(_utilization)
