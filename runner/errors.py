"""Typed errors, and the one place that turns them into the contract's answers.

Each error type carries its status code. A route answers only with the codes it declares
in its OpenAPI ``responses`` (the reference's list), so a code a route does not declare is
mapped to 400 (a client error) or 500 (a server error), keeping the message.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("runner.errors")


class RunnerError(Exception):
    """An error with a message safe to show to the client."""

    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RunnerError):
    """The request is wrong: a parameter value, the model id, an inference it cannot run."""

    status = 400


class Unauthorized(RunnerError):
    status = 401


class PayloadTooLarge(RunnerError):
    status = 413


class UnsupportedMedia(RunnerError):
    status = 415


class OutOfMemory(RunnerError):
    def __init__(self, message: str = "GPU out of memory.") -> None:
        super().__init__(message)


class ModelUnavailable(RunnerError):
    """The model failed to load, so no request can be served."""


class InferenceFailed(RunnerError):
    """The pipeline failed for a reason that is not the request's fault."""


class Overloaded(RunnerError):
    """More requests in flight or queued than the runner accepts."""


ALWAYS_DECLARED = frozenset({200, 422})


def error_body(message: str) -> dict:
    return {"detail": {"msg": message}}


def validation_body(exc: RequestValidationError) -> dict:
    """FastAPI's 422 list shape with only the fields the contract declares (``loc``, ``msg``,
    ``type``): never the submitted ``input`` (a caller's value echoed back, and not always
    JSON: NaN), nor ``ctx``."""
    return {
        "detail": [
            {"type": str(e.get("type", "")), "loc": list(e.get("loc", ())), "msg": str(e["msg"])}
            for e in exc.errors()
        ]
    }


def declared_status(status: int, declared: frozenset[int] | None) -> int:
    """``status`` if the route declares it, else the generic code of its class."""
    if declared is None or status in declared:
        return status
    return 400 if 400 <= status < 500 else 500


def route_declared_codes(request: Request) -> frozenset[int] | None:
    route = request.scope.get("route")
    responses = getattr(route, "responses", None)
    if not responses:
        return None
    return ALWAYS_DECLARED | {int(code) for code in responses}


def error_response(
    error: RunnerError, declared: frozenset[int] | None, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = declared_status(error.status, declared)
    return JSONResponse(error_body(error.message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register, once, the handlers that give every error the contract's body."""

    @app.exception_handler(RunnerError)
    async def _runner_error(request: Request, exc: RunnerError) -> JSONResponse:
        response = error_response(exc, route_declared_codes(request))
        if response.status_code >= 500:
            log.warning("answered %d: %s", response.status_code, exc.message)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
