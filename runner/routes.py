"""The routes: the status endpoints every runner has, and the one generic pipeline route."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from pipelines.base import Pipeline
from pipelines.checks import well_formed
from runner import hardware
from runner.json_bodies import (
    JSON_BODIES_PATH,
    dispatching_route,
    json_endpoint,
    json_forms_document,
)
from runner.media.uploads import Upload, decode_data, size_limit, upload_fields
from runner.metrics import Metrics
from runner.runtime import Runtime
from runner.schemas import HardwareInformation, HardwareStats, HealthCheck, HTTPError, Version

ERROR_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
}
log = logging.getLogger("runner.requests")
BINARY = {"format": "binary"}  # how the reference publishes file fields
# Published in OpenAPI so clients send the token; enforced by the gate before the body is read.
bearer_scheme = HTTPBearer(auto_error=False)


def declared_error_codes(pipeline: type[Pipeline]) -> frozenset[int]:
    return frozenset({400, 401, 500, *pipeline.route.extra_error_codes})


def system_router(runtime: Runtime, metrics: Metrics) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings

    @router.get("/health", operation_id="health", summary="Health", response_model=HealthCheck)
    async def health() -> HealthCheck:
        return HealthCheck(status=runtime.health())

    @router.get("/ready", include_in_schema=False)
    async def ready() -> Response:
        """200 when a request would be taken now; 503 while loading, failed, draining or full.
        Not in the AI worker's contract (its document stays the reference's)."""
        reason = runtime.readiness()
        if reason is None:
            return JSONResponse({"ready": True, "status": runtime.health().value})
        return JSONResponse({"ready": False, "status": reason}, status_code=503)

    @router.get("/version", operation_id="version", summary="Version", response_model=Version)
    async def version() -> Version:
        return Version(
            pipeline=settings.pipeline, model_id=settings.model_id, version=settings.version
        )

    @router.get(
        "/hardware/info",
        operation_id="hardware_info",
        summary="Hardware Info",
        response_model=HardwareInformation,
    )
    async def hardware_info() -> HardwareInformation:
        gpus = await run_in_threadpool(hardware.gpu_info)
        return HardwareInformation(
            pipeline=settings.pipeline, model_id=settings.model_id, gpu_info=gpus
        )

    @router.get(
        "/hardware/stats",
        operation_id="hardware_stats",
        summary="Hardware Stats",
        response_model=HardwareStats,
    )
    async def hardware_stats() -> HardwareStats:
        gpus = await run_in_threadpool(hardware.gpu_stats)
        return HardwareStats(pipeline=settings.pipeline, model_id=settings.model_id, gpu_stats=gpus)

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def pipeline_router(runtime: Runtime) -> APIRouter:
    """One POST route (and its trailing-slash alias) built from the pipeline's declared types."""
    pipeline = runtime.pipeline
    route = pipeline.route
    router = APIRouter()

    async def serve(request: Request, params: BaseModel) -> Response:
        if runtime.settings.verbose_logging:
            log.debug("request id=%s params %s", request.state.request_id, describe(params))
        well_formed(params)
        runtime.check_model_id(params.model_id)
        parsed = pipeline.check(params)
        timings = request.state.timings
        body = await runtime.infer(parsed, timings, request.state.cancel)
        return Response(
            body, media_type="application/json", headers={"server-timing": timings.header()}
        )

    uploads = upload_fields(route.params)
    responses = {
        code: {"model": HTTPError, "description": ERROR_DESCRIPTIONS[code]}
        for code in sorted(declared_error_codes(type(pipeline)))
    }
    details = {
        "methods": ["POST"],
        "summary": route.summary,
        "description": route.description,
        "tags": ["generate"],
        "response_model": route.response,
        "responses": responses,
        "dependencies": [Depends(bearer_scheme)],
        "openapi_extra": {"x-speakeasy-name-override": route.sdk_name},
    }
    route_class: type[APIRoute] = APIRoute
    if uploads:
        endpoint = _multipart_endpoint(runtime, route.params, uploads, serve)
        json_served = json_endpoint(runtime, route.params, uploads, serve)
        route_class = dispatching_route(APIRoute(route.path, json_served, methods=["POST"]))
        json_body: type[BaseModel] = json_served.body_model
    else:

        async def endpoint(request: Request, params) -> Response:  # noqa: ANN001 - see below
            return await serve(request, params)

        endpoint.__signature__ = inspect.Signature(
            [_parameter("request", Request), _parameter("params", route.params)]
        )
        json_body = route.params
    for path, in_schema in ((route.path, True), (route.path + "/", False)):
        router.add_api_route(
            path,
            endpoint,
            operation_id=route.operation_id if in_schema else None,
            include_in_schema=in_schema,
            route_class_override=route_class,
            **details,
        )
    router.add_api_route(
        JSON_BODIES_PATH,
        json_forms_document(route.path, json_body, operation_id=route.operation_id, **details),
        methods=["GET"],
        include_in_schema=False,
    )
    return router


def describe(params: BaseModel) -> str:
    """A request's parameters for the verbose log: values as given, uploads by their size
    (media never goes to the log)."""
    parts = []
    for name, value in params:
        if hasattr(value, "size") and hasattr(value, "mode"):  # a decoded image
            shown = f"<image {value.size[0]}x{value.size[1]}>"
        elif hasattr(value, "samples"):  # decoded audio
            shown = f"<audio {value.duration:.1f} s>"
        else:
            shown = repr(value)
        parts.append(f"{name}={shown}")
    return " ".join(parts)


def _parameter(name: str, annotation: object, default: object = inspect.Parameter.empty):
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _multipart_endpoint(
    runtime: Runtime,
    params_model: type[BaseModel],
    uploads: dict[str, Upload],
    serve: Callable[[Request, BaseModel], Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """An endpoint taking the request model's fields as form fields and files.

    Declaring them one by one (rather than as one form model) is what makes FastAPI publish
    the body as ``Body_<operationId>``, as the reference does.
    """
    parameters = [_parameter("request", Request)]
    for name, field in params_model.model_fields.items():
        if name in uploads:
            spec = File(description=uploads[name].description, json_schema_extra=BINARY)
            parameters.append(_parameter(name, UploadFile, spec))
        else:
            spec = Form(
                field.default if not field.is_required() else ...,
                description=field.description,
                json_schema_extra=field.json_schema_extra,
            )
            parameters.append(_parameter(name, field.annotation, spec))

    async def endpoint(request: Request, **values: object) -> Response:
        cancel = getattr(request.state, "cancel", None)
        for name, upload in uploads.items():
            file = values[name]
            data = await file.read(size_limit(runtime.settings, upload.kind) + 1)
            values[name] = await decode_data(
                runtime.settings, runtime.admission, cancel, name, upload, data
            )
        return await serve(request, params_model(**values))

    endpoint.__signature__ = inspect.Signature(parameters)
    return endpoint
