"""The SFAST compilers: stable-fast, or ``torch.compile`` of the denoiser where stable-fast
cannot be used, chosen per pipeline; and the cache of their compiled kernels."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from runner.settings import Settings

log = logging.getLogger("pipelines.acceleration")


class Compiler(Protocol):
    name: str
    # Its compiling needs the device alone: requests wait while the warm-up runs.
    exclusive: bool

    def options(self) -> str: ...

    def apply(self, pipe: Any) -> None: ...

    def compiled(self, pipe: Any) -> int:
        """How many graphs it has compiled so far (it grows when a new shape compiles)."""
        ...


def denoiser(pipe: Any) -> Any:
    """The UNet, or the transformer of SD3/FLUX-style pipelines."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else getattr(pipe, "transformer", None)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class StableFast:
    """stable-fast's diffusion-pipeline compiler: TorchScript tracing of the UNet, VAE and
    text encoders, plus CUDA graphs, Triton kernels and xformers where the device has them."""

    name = "stable-fast"

    def __init__(self, device: str) -> None:
        from sfast.compilers.diffusion_pipeline_compiler import CompilationConfig

        config = CompilationConfig.Default()
        cuda = device == "cuda"
        config.enable_cuda_graph = cuda
        config.enable_triton = cuda and _installed("triton")
        config.enable_xformers = cuda and _installed("xformers")
        self.config = config
        # A CUDA graph capture fails (and fails the other thread) when another thread
        # allocates or copies on the device meanwhile.
        self.exclusive = config.enable_cuda_graph

    def options(self) -> str:
        c = self.config
        flags = {"CUDA graphs": c.enable_cuda_graph, "Triton": c.enable_triton}
        flags["xformers"] = c.enable_xformers
        return ", ".join(f"{name} {'on' if on else 'off'}" for name, on in flags.items())

    def apply(self, pipe: Any) -> None:
        import warnings

        import torch
        from sfast.compilers.diffusion_pipeline_compiler import compile as sfast_compile

        # Tracing warns about every Python branch it freezes; those are expected here.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        sfast_compile(pipe, self.config)

    def compiled(self, pipe: Any) -> int:
        """Traces (one per argument structure) and CUDA graphs (one per shape) of the UNet."""
        caches: dict[int, int] = {}
        forward = pipe.unet.forward
        while forward is not None:
            cache = getattr(forward, "_cached", None)
            if isinstance(cache, dict):
                caches[id(cache)] = len(cache)
            forward = getattr(forward, "__wrapped__", None)
        return sum(caches.values())


class TorchCompile:
    """``torch.compile`` of the denoiser, in place, counting the graphs it compiles."""

    name = "torch.compile"
    exclusive = False  # inductor's default mode captures no CUDA graphs

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.graphs = 0

    def options(self) -> str:
        return f"backend {self.backend}"

    def apply(self, pipe: Any) -> None:
        import torch

        backend = torch._dynamo.lookup_backend(self.backend)

        def counting_backend(graph: Any, example_inputs: Any) -> Any:
            self.graphs += 1
            return backend(graph, example_inputs)

        denoiser(pipe).compile(backend=counting_backend)

    def compiled(self, pipe: Any) -> int:
        return self.graphs


def choose_compiler(settings: Settings, pipe: Any, device: str) -> tuple[Compiler | None, str]:
    """The compiler for this pipeline, and why, in words for the log; None when none fits."""
    if settings.compiler == "torch":
        return TorchCompile(settings.torch_compile_backend), "COMPILER=torch"
    kind = type(denoiser(pipe)).__name__
    if getattr(pipe, "unet", None) is None:
        reason = f"stable-fast compiles UNet pipelines and this denoiser is a {kind}"
    else:
        try:
            return StableFast(device), f"{kind} denoiser"
        except Exception as exc:  # ImportError, or a build that does not match torch
            reason = f"stable-fast cannot be imported ({type(exc).__name__}: {exc})"
    if settings.compiler == "stable-fast":
        return None, f"COMPILER=stable-fast but {reason}"
    return TorchCompile(settings.torch_compile_backend), reason


def use_compile_cache(folder: Path) -> None:
    """Keep inductor's and Triton's compiled kernels in ``folder``, so that a restarted
    container on the same host warms up from them."""
    try:
        for sub in ("inductor", "triton"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        log.warning(
            "COMPILE_CACHE_DIR=%s cannot be used (%s): compiled kernels are not kept across "
            "restarts",
            folder,
            exc.strerror or exc,
        )
        return
    # torch and Triton read these when they compile; the runner sets them from its settings.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    state = f"{files} files from earlier runs" if files else "empty: compiling from scratch"
    log.info("compile cache: %s (%s)", folder, state)
