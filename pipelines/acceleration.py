"""SFAST and DEEPCACHE applied to one loaded diffusion pipeline, and the fall-back run.

What applies is decided at load (``Acceleration.setup``); the warm-up runs the compiles
while ``/health`` says ``LOADING``, and one still compiling when the LOADING budget runs out
goes on in the background while requests run the plain modules (``compile_switches``); the
compiled pipeline takes over for the requests that start once it is done. Whatever fails
here, the model is still served: a run that fails accelerated is run again plain, and the
acceleration at fault stays off. The compilers are in ``compilers``, DeepCache in
``deepcache``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pipelines.acceleration_report import AccelerationReport
from pipelines.compile_switches import ModuleAttributes, WarmUpGate, compiled_here, warming_here
from pipelines.compilers import Compiler, choose_compiler, use_compile_cache
from pipelines.deepcache import deepcache_helper, deepcache_on, deepcache_wanted
from pipelines.registry import ACCELERATED_PIPELINES
from runner.errors import RunnerError
from runner.settings import Settings

if TYPE_CHECKING:
    from pipelines.diffusion_families import Family

log = logging.getLogger("pipelines.acceleration")
T = TypeVar("T")


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
            acceleration.deepcache = deepcache_helper(settings, pipe, family)
            acceleration.report.deepcache = acceleration.deepcache is not None
        if settings.sfast:
            acceleration._setup_compiler(device)
            if not settings.warmup:
                log.warning("WARMUP=false: SFAST compiles on the first request of each shape")
        return acceleration

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
        token = warming_here.set(True)
        started = time.perf_counter()
        try:
            yield
        finally:
            warming_here.reset(token)
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
            compiled = self.compiler is not None and (self.active or warming_here.get())
            token = compiled_here.set(compiled)
            try:
                return self._run(call, steps, shape, view, compiled)
            finally:
                compiled_here.reset(token)

    def request_turn(self) -> contextlib.AbstractContextManager[None]:
        """Held around a whole request (its safety check and out-of-memory clean-up too):
        where compiling needs the device alone, the requests arriving before the compiled
        pipeline serves and the warm-up's runs take turns. (A request that would switch LoRA
        adapters here could wait on a warm-up run waiting on it; stable-fast, the compiler
        that needs the device alone, takes no LoRAs.)"""
        exclusive = self.compiler is not None and self.compiler.exclusive
        if not exclusive or self.active or warming_here.get():
            return contextlib.nullcontext()
        return self.warm_up_gate.request()

    def _warm_up_turn(self) -> contextlib.AbstractContextManager[None]:
        if self.compiler is None or not self.compiler.exclusive or not warming_here.get():
            return contextlib.nullcontext()
        return self.warm_up_gate.warm_up()

    def _run(self, call: Callable[[], T], steps: int, shape: str, view: Any, compiled: bool) -> T:
        deepcache = self.deepcache is not None and deepcache_wanted(
            self.settings, steps, warming_here.get()
        )
        if not deepcache and not compiled:
            return call()
        before = self.compiled_graphs()
        started = time.perf_counter()
        try:
            with deepcache_on(self.deepcache, view) if deepcache else contextlib.nullcontext():
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

    def _note_compiles(self, graphs: int, shape: str, started: float) -> None:
        if graphs <= 0 or warming_here.get() or self.compiler is None:
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
        token = compiled_here.set(False)
        try:
            result = call()
        finally:
            compiled_here.reset(token)
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
