"""Stopping an inference between steps: when its client goes away, or past its deadline.

Each request gets a ``CancelScope``. The runtime makes it current on the inference thread,
and pipelines call ``checkpoint()`` between steps (diffusers' step-end callback, a
``StoppingCriteria`` in ``generate``): it raises once the scope is cancelled or its
deadline has passed, so the model stops within one step and the slot is freed.

Raising from the step callback, rather than setting a pipeline's interrupt flag, keeps
concurrent requests on one pipeline independent: diffusers keeps that flag on the shared
pipeline object, and a raise also skips the final VAE decode nobody will read.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Any

from runner.errors import RunnerError


class Cancelled(RunnerError):
    """The client went away; nobody reads the answer."""

    def __init__(self, message: str = "Request cancelled: the client disconnected.") -> None:
        super().__init__(message)


class DeadlineExceeded(RunnerError):
    """The inference ran past the per-request deadline (a 500: not the request's fault)."""


class CancelScope:
    def __init__(self) -> None:
        self._cancelled = threading.Event()
        self.deadline: float | None = None  # time.monotonic() value; set when inference starts
        self.deadline_seconds: float = 0.0
        self.stopped_by: str | None = None  # "disconnect", "deadline" or "shutdown", once stopped

    def cancel(self, reason: str = "disconnect") -> None:
        """Stop the request at its next checkpoint; ``reason``: "disconnect" or "shutdown"."""
        self.stopped_by = reason
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def start_deadline(self, seconds: float) -> None:
        """Start the inference's clock; 0 means no deadline."""
        if seconds > 0:
            self.deadline_seconds = seconds
            self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stopped_by = "deadline"
            raise DeadlineExceeded(
                f"Inference stopped: it ran past the {self.deadline_seconds:g} s deadline "
                "(REQUEST_DEADLINE)."
            )


_current: contextvars.ContextVar[CancelScope | None] = contextvars.ContextVar(
    "cancel_scope", default=None
)


def current_scope() -> CancelScope | None:
    return _current.get()


def use_scope(scope: CancelScope) -> contextvars.Token:
    return _current.set(scope)


def reset_scope(token: contextvars.Token) -> None:
    _current.reset(token)


def checkpoint() -> None:
    """Raise if the current request was cancelled or ran past its deadline."""
    scope = _current.get()
    if scope is not None:
        scope.check()


def diffusers_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
    """diffusers' ``callback_on_step_end``: a checkpoint after every denoising step."""
    checkpoint()
    return callback_kwargs


def legacy_step_callback(step: int, timestep: Any, latents: Any) -> None:
    """The older ``callback`` (with ``callback_steps=1``) of pipelines such as the upscaler."""
    checkpoint()


def stopping_criteria() -> Any:
    """A ``StoppingCriteriaList`` for ``generate``: a checkpoint after every token."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class AtCheckpoint(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            checkpoint()
            import torch

            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([AtCheckpoint()])
