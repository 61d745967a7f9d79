"""SFAST and DEEPCACHE for the diffusion pipelines.

SFAST compiles the pipeline (stable-fast, or ``torch.compile`` of the denoiser where
stable-fast cannot be used) and the warm-up runs the compiles while ``/health`` says
``LOADING``. A warm-up still compiling when the LOADING budget runs out goes on in the
background while requests run on the plain modules: every attribute a compiler patched
becomes a switch that each call resolves for the thread making it, so the warm-up's calls
compile while a request's run uncompiled on the same modules, and the compiled pipeline
takes over for the requests that start once the warm-up is done. DEEPCACHE reuses the
UNet's deep features between steps; it is switched on for one request at a time, so no
cached feature outlives the request that computed it. Whatever fails here, the model is
still served, without the acceleration that failed.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipelines.registry import ACCELERATED_PIPELINES
from runner.errors import RunnerError
from runner.settings import Settings

if TYPE_CHECKING:
    from pipelines.diffusion_families import Family

log = logging.getLogger("pipelines.acceleration")
T = TypeVar("T")

# Instance attributes the compilers set on modules (and stable-fast on the image processor).
PATCHED = (
    "forward",
    "_call_impl",
    "_compiled_call_impl",
    "postprocess",
    "pt_to_numpy",
    "pt_to_pil",
)
# Whether the calls of this thread take the compiled path, and whether it is the warm-up's.
_compiled_here: contextvars.ContextVar[bool] = contextvars.ContextVar("compiled", default=False)
_warming_here: contextvars.ContextVar[bool] = contextvars.ContextVar("warming", default=False)


@dataclass
class AccelerationReport:
    """What ``/metrics`` and the start-up log say about acceleration."""

    compiler: str = "none"  # "stable-fast", "torch.compile" or "none"
    compile_failed: bool = False
    compiled_active: bool = False  # requests run on the compiled pipeline
    deepcache: bool = False
    recompiles: int = 0  # compiles after the warm-up, for shapes it did not cover
    warmup_seconds: float | None = None


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


class ModuleAttributes:
    """The compiler-set attributes of every module of a pipeline, to switch between the
    compiled and the plain pipeline."""

    def __init__(self, pipe: Any) -> None:
        import torch

        components = [value for value in vars(pipe).values() if isinstance(value, torch.nn.Module)]
        self.owners: list[Any] = [m for component in components for m in component.modules()]
        if getattr(pipe, "image_processor", None) is not None:
            self.owners.append(pipe.image_processor)

    def capture(self) -> list[dict[str, Any]]:
        return [{k: vars(o)[k] for k in PATCHED if k in vars(o)} for o in self.owners]

    def restore(self, state: list[dict[str, Any]]) -> None:
        for owner, saved in zip(self.owners, state, strict=True):
            for name in PATCHED:
                if name in saved:
                    setattr(owner, name, saved[name])
                elif name in vars(owner):
                    delattr(owner, name)

    def install_switches(self, plain: list[dict[str, Any]]) -> None:
        """Replace each attribute the compiler set with a switch between the compiled value
        and the plain one (``plain``: the attributes before compiling)."""
        for owner, saved in zip(self.owners, plain, strict=True):
            for name in PATCHED:
                compiled = vars(owner).get(name)
                if compiled is None or compiled is saved.get(name):
                    continue
                plain_call = _plain_callable(owner, name, saved)
                if plain_call is not None:  # else an addition only compiled code calls
                    setattr(owner, name, _switch(compiled, plain_call))


def _plain_callable(owner: Any, name: str, saved: dict[str, Any]) -> Callable[..., Any] | None:
    """What calling attribute ``name`` of ``owner`` did before the compiler set it."""
    if saved.get(name) is not None:
        return saved[name]
    if name == "_compiled_call_impl":  # torch.nn.Module calls _call_impl when it is None
        return lambda *args, **kwargs: owner._call_impl(*args, **kwargs)
    compiled = vars(owner).pop(name)
    try:
        return getattr(owner, name, None)  # the class's method (or staticmethod), bound
    finally:
        setattr(owner, name, compiled)


def _switch(compiled: Callable[..., Any], plain: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(compiled)  # keeps ``__wrapped__`` (signatures, stable-fast's caches)
    def call(*args: Any, **kwargs: Any) -> Any:
        return (compiled if _compiled_here.get() else plain)(*args, **kwargs)

    return call


class WarmUpGate:
    """Keeps requests and the warm-up's runs apart, for a compiler that needs the device to
    itself while it compiles: a warm-up run waits for the requests running to end, and
    requests arriving meanwhile wait for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._requests = 0
        self._warming = False
        self.waiting = 0  # requests waiting for a warm-up run

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        with self._cond:
            if self._warming:
                log.info("a request waits for the warm-up: compiling needs the device alone")
                self.waiting += 1
                self._cond.wait_for(lambda: not self._warming)
                self.waiting -= 1
            self._requests += 1
        try:
            yield
        finally:
            with self._cond:
                self._requests -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def warm_up(self) -> Iterator[None]:
        with self._cond:
            self._warming = True
            self._cond.wait_for(lambda: self._requests == 0)
        try:
            yield
        finally:
            with self._cond:
                self._warming = False
                self._cond.notify_all()


class Acceleration:
    """SFAST and DEEPCACHE as applied to one loaded pipeline (nothing, when neither is set)."""

    def __init__(self, pipe: Any, settings: Settings) -> None:
        self.pipe = pipe
        self.settings = settings
        self.report = AccelerationReport()
        self.compiler: Compiler | None = None
        self.deepcache: Any = None  # DeepCache's helper, when it applies
        # Requests run compiled: from the end of the warm-up (at once with WARMUP=false).
        self.active = False
        self._exclusive = threading.Lock()
        self.warm_up_gate = WarmUpGate()
        self._modules: ModuleAttributes | None = None
        self._plain: list[dict[str, Any]] = []

    @classmethod
    def setup(
        cls, settings: Settings, pipe: Any, family: Family | None, device: str
    ) -> Acceleration:
        """Decide what applies, say so in the log, and prepare it (compiling is lazy: the
        warm-up or the first request of each shape does it)."""
        acceleration = cls(pipe, settings)
        if settings.pipeline not in ACCELERATED_PIPELINES:
            return acceleration  # the runtime has warned that the flags are ignored
        deepcache = settings.deepcache
        if settings.sfast and deepcache:
            log.error(
                "error: SFAST and DEEPCACHE cannot be combined (see the operator "
                "documentation); applying SFAST only"
            )
            deepcache = False
        if deepcache:
            acceleration._setup_deepcache(family)
        if settings.sfast:
            acceleration._setup_compiler(device)
            if not settings.warmup:
                log.warning("WARMUP=false: SFAST compiles on the first request of each shape")
        return acceleration

    def _setup_deepcache(self, family: Family | None) -> None:
        s = self.settings
        unet = getattr(self.pipe, "unet", None)
        if unet is None:
            log.warning(
                "DEEPCACHE skipped: DeepCache works on UNet denoisers and %s's is a %s",
                type(self.pipe).__name__,
                type(denoiser(self.pipe)).__name__,
            )
            return
        if family is not None and family.steps is not None and family.steps < s.deepcache_min_steps:
            log.warning(
                "DEEPCACHE skipped: %s is a %s model (%d steps by default, below "
                "DEEPCACHE_MIN_STEPS=%d); DeepCache only degrades few-step models",
                s.model_id,
                family.name,
                family.steps,
                s.deepcache_min_steps,
            )
            return
        branches = 3 * len(unet.down_blocks)
        if s.deepcache_branch >= branches:
            log.warning(
                "DEEPCACHE skipped: DEEPCACHE_BRANCH=%d but this UNet has branches 0 to %d",
                s.deepcache_branch,
                branches - 1,
            )
            return
        try:
            from DeepCache import DeepCacheSDHelper
        except ImportError as exc:
            log.error(
                "error: DEEPCACHE: DeepCache cannot be imported (%s); serving without it", exc
            )
            return
        helper = DeepCacheSDHelper(pipe=self.pipe)
        helper.set_params(cache_interval=s.deepcache_interval, cache_branch_id=s.deepcache_branch)
        self.deepcache = helper
        self.report.deepcache = True
        if s.capacity > 1:
            log.warning(
                "DEEPCACHE: requests run one at a time although CAPACITY=%d: DeepCache patches "
                "the UNet they share",
                s.capacity,
            )
        log.info(
            "DEEPCACHE: on for requests of %d denoising steps or more (interval %d, branch %d)",
            s.deepcache_min_steps,
            s.deepcache_interval,
            s.deepcache_branch,
        )

    def _setup_compiler(self, device: str) -> None:
        compiler, why = choose_compiler(self.settings, self.pipe, device)
        if compiler is None:
            log.error("error: SFAST: %s; serving uncompiled", why)
            self.report.compile_failed = True
            return
        log.info("SFAST: compiling with %s (%s; %s)", compiler.name, why, compiler.options())
        assert self.settings.compile_cache_dir is not None  # filled in by Settings
        use_compile_cache(self.settings.compile_cache_dir)
        modules = ModuleAttributes(self.pipe)
        plain = modules.capture()
        started = time.perf_counter()
        try:
            compiler.apply(self.pipe)
        except Exception as exc:
            modules.restore(plain)
            log.error(
                "error: SFAST: %s failed (%s: %s); serving uncompiled",
                compiler.name,
                type(exc).__name__,
                exc,
            )
            self.report.compile_failed = True
            return
        modules.install_switches(plain)
        self.compiler, self._modules, self._plain = compiler, modules, plain
        self.report.compiler = compiler.name
        if not self.settings.warmup:
            self._activate()
        log.info(
            "SFAST: %s set up in %.1fs; %s",
            compiler.name,
            time.perf_counter() - started,
            "the warm-up compiles" if self.settings.warmup else "requests compile",
        )

    def _activate(self) -> None:
        self.active = self.report.compiled_active = True

    def describe(self) -> str | None:
        """For the start-up log: what is on, or that compiling failed."""
        if self.compiler is not None:
            state = "compiled" if self.active else "compiling"
            return f"{state} with {self.compiler.name}"
        if self.report.compile_failed:
            return "uncompiled: SFAST failed"
        return "DeepCache on" if self.deepcache is not None else None

    @contextlib.contextmanager
    def warming_up(self) -> Iterator[None]:
        """The warm-up of this thread: its runs compile (requests running meanwhile do not),
        and the compiled pipeline serves the requests that start after it ends well."""
        token = _warming_here.set(True)
        started = time.perf_counter()
        try:
            yield
        finally:
            _warming_here.reset(token)
            self.report.warmup_seconds = time.perf_counter() - started
        if self.compiler is not None and not self.active:
            self._activate()
            log.info(
                "SFAST: the %s-compiled pipeline serves from now on (compiled and warmed up "
                "in %.1fs)",
                self.compiler.name,
                self.report.warmup_seconds,
            )

    def compiled_graphs(self) -> int:
        return self.compiler.compiled(self.pipe) if self.compiler is not None else 0

    def run(self, call: Callable[[], T], steps: int, shape: str, view: Any) -> T:
        """``call()`` (``view``, the request's view of the pipeline, for one request of
        ``steps`` denoising steps on ``shape``), accelerated as the request allows.

        DeepCache patches the shared UNet while it is on, so with DeepCache set up requests
        run one at a time (also those too short for it, which must see the plain UNet). The
        compiled pipeline runs the warm-up, and the requests once it is active."""
        with (
            self._exclusive if self.deepcache is not None else contextlib.nullcontext(),
            self._warm_up_turn(),
        ):
            compiled = self.compiler is not None and (self.active or _warming_here.get())
            token = _compiled_here.set(compiled)
            try:
                return self._run(call, steps, shape, view, compiled)
            finally:
                _compiled_here.reset(token)

    def request_turn(self) -> contextlib.AbstractContextManager[None]:
        """Held around a whole request (its safety check and out-of-memory clean-up too):
        where compiling needs the device alone, the requests arriving before the compiled
        pipeline serves and the warm-up's runs take turns. (A request that would switch LoRA
        adapters here could wait on a warm-up run waiting on it; stable-fast, the compiler
        that needs the device alone, takes no LoRAs.)"""
        exclusive = self.compiler is not None and self.compiler.exclusive
        if not exclusive or self.active or _warming_here.get():
            return contextlib.nullcontext()
        return self.warm_up_gate.request()

    def _warm_up_turn(self) -> contextlib.AbstractContextManager[None]:
        if self.compiler is None or not self.compiler.exclusive or not _warming_here.get():
            return contextlib.nullcontext()
        return self.warm_up_gate.warm_up()

    def _run(self, call: Callable[[], T], steps: int, shape: str, view: Any, compiled: bool) -> T:
        deepcache = self.deepcache is not None and self._deepcache_for(steps)
        if not deepcache and not compiled:
            return call()
        before = self.compiled_graphs()
        started = time.perf_counter()
        try:
            with self._deepcache_on(view) if deepcache else contextlib.nullcontext():
                result = call()
        except RunnerError:
            raise
        except Exception as exc:
            if _not_the_acceleration(exc):
                raise
            return self._without_acceleration(call, exc, deepcache)
        if compiled:
            self._note_compiles(self.compiled_graphs() - before, shape, started)
        return result

    def _deepcache_for(self, steps: int) -> bool:
        if steps >= self.settings.deepcache_min_steps:
            return True
        if not _warming_here.get():
            log.info(
                "DEEPCACHE off for this request: %d denoising steps, below DEEPCACHE_MIN_STEPS=%d",
                steps,
                self.settings.deepcache_min_steps,
            )
        return False

    @contextlib.contextmanager
    def _deepcache_on(self, view: Any) -> Iterator[None]:
        """DeepCache for one request: enabling starts from empty caches, disabling drops them.
        It reads the step from the scheduler of the pipeline it helps: the request's view."""
        self.deepcache.pipe = view
        self.deepcache.enable()
        try:
            yield
        finally:
            self.deepcache.disable()

    def _note_compiles(self, graphs: int, shape: str, started: float) -> None:
        if graphs <= 0 or _warming_here.get() or self.compiler is None:
            return
        self.report.recompiles += graphs
        log.warning(
            "SFAST: %s compiled for %s, a shape the warm-up did not cover, in %.1fs; add it "
            "to WARMUP_SIZES",
            self.compiler.name,
            shape,
            time.perf_counter() - started,
        )

    def _without_acceleration(self, call: Callable[[], T], exc: Exception, deepcache: bool) -> T:
        """Run ``call`` plain after the accelerated run failed with ``exc``. When the plain run
        works, the acceleration was at fault and stays off; otherwise the request was."""
        token = _compiled_here.set(False)
        try:
            result = call()
        finally:
            _compiled_here.reset(token)
        cause = f"{type(exc).__name__}: {exc}"
        if deepcache:
            log.error("error: DEEPCACHE failed (%s); serving without it", cause)
            self.deepcache, self.report.deepcache = None, False
        elif self.compiler is not None:
            log.error("error: SFAST: %s failed (%s); serving uncompiled", self.compiler.name, cause)
            self.compiler, self.report.compiler = None, "none"
            self.active = self.report.compiled_active = False
            self.report.compile_failed = True
            if self._modules is not None:
                self._modules.restore(self._plain)  # the switches go: nothing compiled is left
        return result


def _not_the_acceleration(exc: Exception) -> bool:
    """Failures a plain run would not avoid: out of memory, a device that is gone."""
    from runner.device import is_out_of_memory, is_unrecoverable

    return is_out_of_memory(exc) or is_unrecoverable(exc)


def request_shape(kwargs: dict[str, Any]) -> str:
    """``WIDTHxHEIGHT`` of the request's images (the input image's where there is one)."""
    image = kwargs.get("image")
    width, height = image.size if image is not None else (kwargs["width"], kwargs["height"])
    count = kwargs.get("num_images_per_prompt", 1)
    return f"{width}x{height}" + (f", {count} images" if count > 1 else "")
