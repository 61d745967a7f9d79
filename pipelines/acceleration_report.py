"""What acceleration did, for ``/metrics`` and the start-up log: a diffusion-only fact that
the generic pipeline interface does not carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class AccelerationReport:
    """What ``/metrics`` and the start-up log say about acceleration."""

    compiler: str = "none"  # "stable-fast", "torch.compile" or "none"
    compile_failed: bool = False
    compiled_active: bool = False  # requests run on the compiled pipeline
    deepcache: bool = False
    recompiles: int = 0  # compiles after the warm-up, for shapes it did not cover
    warmup_seconds: float | None = None


@runtime_checkable
class Accelerated(Protocol):
    """A pipeline that SFAST and DEEPCACHE may apply to (the diffusion pipelines)."""

    def acceleration_report(self) -> AccelerationReport | None:
        """What SFAST/DEEPCACHE did; None before the model is loaded."""
        ...
