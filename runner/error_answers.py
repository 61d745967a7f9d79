"""The one place that turns errors into the contract's answers, for the app and the gate.

A domain error carries a kind; this module maps kinds to status codes. A route answers only
with the codes it declares in its OpenAPI ``responses`` (the reference's list), so a code a
route does not declare is mapped to 400 (a client error) or 500 (a server error), keeping
the message. An overload answers ``OVERLOAD_STATUS`` with ``Retry-After``; a 401 carries
the bearer challenge.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from runner.auth import CHALLENGE
from runner.errors import ErrorKind, RunnerError
from runner.settings import Settings

log = logging.getLogger("runner.errors")

KIND_STATUS = {
    ErrorKind.INVALID_INPUT: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.OVERLOADED: 500,  # OVERLOAD_STATUS replaces it
    ErrorKind.FAILED: 500,
}
ALWAYS_DECLARED = frozenset({200, 422})


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    headers: dict[str, str]
    body: bytes  # JSON, rendered as FastAPI renders its answers

    def response(self) -> Response:
        return Response(
            self.body, status_code=self.status, headers=self.headers, media_type="application/json"
        )


def error_body(message: str) -> dict:
    return {"detail": {"msg": message}}


def render(content: object) -> bytes:
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


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


def error_answer(
    error: RunnerError, declared: frozenset[int] | None, settings: Settings
) -> ErrorAnswer:
    """The answer to ``error`` on a route declaring ``declared`` (None: any code)."""
    headers: dict[str, str] = {}
    if error.kind is ErrorKind.OVERLOADED:
        status = settings.overload_status
        headers["retry-after"] = str(settings.retry_after)
    else:
        status = declared_status(KIND_STATUS[error.kind], declared)
        if error.kind is ErrorKind.UNAUTHORIZED:
            headers.update({k.lower(): v for k, v in CHALLENGE.items()})
    return ErrorAnswer(status, headers, render(error_body(error.message)))


def route_declared_codes(request: Request) -> frozenset[int] | None:
    route = request.scope.get("route")
    responses = getattr(route, "responses", None)
    if not responses:
        return None
    return ALWAYS_DECLARED | {int(code) for code in responses}


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Register, once, the handlers that give every error the contract's body."""

    @app.exception_handler(RunnerError)
    async def _runner_error(request: Request, exc: RunnerError) -> Response:
        answer = error_answer(exc, route_declared_codes(request), settings)
        if answer.status >= 500:
            log.warning("answered %d: %s", answer.status, exc.message)
        return answer.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
