"""Typed errors with a message safe to show to the client.

Each error type carries a ``kind`` (what went wrong), never an HTTP status: the one mapping
from kinds to each route's status codes is ``runner.error_answers``.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class ErrorKind(Enum):
    INVALID_INPUT = "invalid input"  # the request's fault
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too large"
    UNSUPPORTED_MEDIA = "unsupported media"
    OVERLOADED = "overloaded"  # full or draining: retry elsewhere or later
    FAILED = "failed"  # the runner's fault, not the request's


class RunnerError(Exception):
    """An error with a message safe to show to the client."""

    kind: ClassVar[ErrorKind] = ErrorKind.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RunnerError):
    """The request is wrong: a parameter value, the model id, an inference it cannot run."""

    kind = ErrorKind.INVALID_INPUT


class Unauthorized(RunnerError):
    kind = ErrorKind.UNAUTHORIZED


class PayloadTooLarge(RunnerError):
    kind = ErrorKind.TOO_LARGE


class UnsupportedMedia(RunnerError):
    kind = ErrorKind.UNSUPPORTED_MEDIA


class OutOfMemory(RunnerError):
    def __init__(self, message: str = "GPU out of memory.") -> None:
        super().__init__(message)


class ModelUnavailable(RunnerError):
    """The model failed to load, so no request can be served."""


class InferenceFailed(RunnerError):
    """The pipeline failed for a reason that is not the request's fault."""


class Overloaded(RunnerError):
    """More requests in flight or queued than the runner accepts."""

    kind = ErrorKind.OVERLOADED
