"""The interface every pipeline implements; the HTTP layer serves it generically.

A pipeline declares its route (path, operation id, request and answer types) and implements
``load``, ``predict`` and ``encode``. It never reads the environment: it gets ``Settings``.
Call order: ``load`` and ``warmup`` once on a worker thread; then, per request, ``check``
on the event loop (cheap, before queueing), ``prepare`` on a worker thread (fetching what
the request needs, before it waits for a slot), ``predict`` on an inference thread holding
a slot, and ``encode`` on a worker thread after the slot is given back.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from pydantic import BaseModel

from runner.settings import Settings

ParamsT = TypeVar("ParamsT", bound=BaseModel)


@dataclass(frozen=True)
class Route:
    """How a pipeline appears on the wire, as in the reference OpenAPI."""

    path: str
    operation_id: str
    summary: str
    description: str
    params: type[BaseModel]
    response: type[BaseModel]
    sdk_name: str  # the reference's x-speakeasy-name-override
    example: dict = field(default_factory=dict)  # a small request, for docs and the log
    extra_error_codes: tuple[int, ...] = ()  # 413/415 where the reference declares them


class Pipeline[ParamsT: BaseModel, RequestT, OutputT](ABC):
    """``ParamsT`` is the request model the route declares; ``RequestT`` what ``check`` makes
    of it (parsed once) and ``prepare`` and ``predict`` take; ``OutputT`` what ``predict``
    returns and ``encode`` turns into the answer."""

    route: ClassVar[Route]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id = settings.model_id

    @abstractmethod
    def load(self) -> None:
        """Load the model from ``settings.model_dir``; raise ``ModelNotFound`` when absent."""

    def warmup(self) -> None:  # noqa: B027 - optional hook
        """Run the model once so the first paid request is not the slow one."""

    def describe(self) -> str:
        """What was loaded, for the start-up log."""
        return self.model_id

    def turn(self) -> contextlib.AbstractContextManager[None]:
        """Held around each request's ``predict``: where a warm-up going on in the background
        needs the device alone, requests wait for it here."""
        return contextlib.nullcontext()

    def check(self, params: ParamsT) -> RequestT:
        """Validate values the schema cannot (raise ``InvalidInput`` naming the field) and
        return the request as ``predict`` takes it, parsed once; by default ``params``."""
        return params  # type: ignore[return-value] - RequestT is ParamsT unless overridden

    def prepare(self, request: RequestT) -> None:  # noqa: B027 - optional hook
        """Fetch from the hub what the request needs and ``MODEL_DIR`` lacks (a LoRA).

        Runs after the model is loaded and before the request waits for an inference slot,
        on a thread of its own: a download blocks neither the event loop nor a slot."""

    @abstractmethod
    def predict(self, request: RequestT) -> OutputT:
        """Run the model."""

    @abstractmethod
    def encode(self, output: OutputT) -> BaseModel:
        """Turn the model's output into the route's answer body."""
