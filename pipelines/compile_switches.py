"""Compiled and plain on the same modules: every attribute a compiler patched becomes a
switch that each call resolves for the thread making it, so a warm-up still compiling in
the background runs compiled while requests run the plain modules; and the gate that keeps
the warm-up's runs and requests apart for a compiler that needs the device alone."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("pipelines.acceleration")

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
compiled_here: contextvars.ContextVar[bool] = contextvars.ContextVar("compiled", default=False)
warming_here: contextvars.ContextVar[bool] = contextvars.ContextVar("warming", default=False)


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
        return (compiled if compiled_here.get() else plain)(*args, **kwargs)

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
