"""JSON bodies for the routes that take uploads: the form's fields, each file as base64.

go-livepeer's live runner proxies whatever a client sends, and the network's SDK
(livepeer-gateway's ``call_runner``) sends JSON only, so a route whose request model declares
``Upload`` fields also takes ``application/json``: the same field names, each file as a base64
data URL (``data:image/png;base64,...``) or plain base64. The decoded bytes meet the same size
limit and the same decoding as an uploaded file (``runner.media.uploads``), so every answer is the
one the form would get. ``/openapi.json`` keeps the form only (the AI worker's client is
generated from it); the JSON forms are published at ``JSON_BODIES_PATH``.
"""

from __future__ import annotations

import binascii
import copy
import email.message
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pybase64
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from runner import __version__
from runner.errors import InvalidInput
from runner.media.uploads import Upload, check_size, decode_data, size_limit
from runner.runtime import Runtime
from runner.settings import Settings

JSON_BODIES_PATH = "/openapi-json-bodies.json"
# The longest ``data:<media type>;base64,`` prefix taken; the JSON body limit allows for it.
MAX_DATA_URL_PREFIX = 256
BASE64_NOTE = (
    " In a JSON body: the file as a base64 data URL (data:image/png;base64,...) or plain base64."
)
TEXT_NOTE = (
    "The fields of the multipart form, as a JSON object. Each file is a base64 data URL or "
    "plain base64. A field the form takes as text (loras, metadata, point_coords, ...) also "
    "takes a JSON value in its place, read as that value's JSON text. An empty string is a "
    "field left out, as in the form."
)
DOCUMENT_DESCRIPTION = (
    "This runner's route with a JSON body (Content-Type: application/json), as go-livepeer's "
    "live runner proxies it and the network's SDK (livepeer-gateway's call_runner) sends it. "
    "Where /openapi.json publishes a multipart form, the route also takes its fields as a JSON "
    "object, each file as a base64 data URL or plain base64, with the form's size limits, "
    "decoding and errors."
)


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``application/*+json``),
    as FastAPI reads it."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def base64_length(size: int) -> int:
    return 4 * -(-size // 3)


@dataclass(frozen=True)
class BodyLimits:
    """The most body bytes the gate reads: a JSON body's files come base64-encoded."""

    default: int
    json: int

    def for_content_type(self, content_type: str | None) -> int:
        return self.json if is_json(content_type) else self.default


def body_limits(settings: Settings, uploads: dict[str, Upload]) -> BodyLimits:
    """The form-field allowance (``MAX_JSON_BYTES``) plus each file at its limit: as sent
    in a form, and base64-encoded with a data URL's prefix in a JSON body."""
    limits = [size_limit(settings, upload.kind) for upload in uploads.values()]
    return BodyLimits(
        default=settings.max_json_bytes + sum(limits),
        json=settings.max_json_bytes
        + sum(base64_length(limit) + MAX_DATA_URL_PREFIX for limit in limits),
    )


def decoded_base64(name: str, text: str, limit: int) -> bytes:
    """The bytes of a base64 data URL or plain base64, refused as the form refuses a file
    over ``limit`` before any is decoded; a malformed value is a 400 naming the field."""
    payload = text
    if text[:5].lower() == "data:":
        comma = text.find(",", 0, MAX_DATA_URL_PREFIX)
        if comma < 0 or text[:comma].rsplit(";", 1)[-1].lower() != "base64":
            raise InvalidInput(
                f"{name} is not a base64 data URL: send data:<media type>;base64,<data> "
                "or plain base64."
            )
        payload = text[comma + 1 :]
    if len(payload) % 4:
        payload += "=" * (-len(payload) % 4)  # padding may be left out
    check_size(name, len(payload) // 4 * 3 - payload[-2:].count("="), limit)
    try:
        return pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name} is not valid base64.") from None


class JsonBody(BaseModel):
    """A JSON body's fields before its files are decoded."""

    form_fields: ClassVar[frozenset[str]] = frozenset()  # the fields that are not files
    text_fields: ClassVar[frozenset[str]] = frozenset()  # those the form takes as text

    @model_validator(mode="before")
    @classmethod
    def _as_the_form_reads(cls, data: Any) -> Any:
        """Read as the form's fields are: an empty string is a field left out (FastAPI reads
        an empty form value so), and a JSON value where the form takes text is that value's
        JSON text."""
        if not isinstance(data, dict):
            return data
        fields = {}
        for name, value in data.items():
            if name in cls.form_fields and isinstance(value, str) and not value:
                continue
            if name in cls.text_fields and value is not None and not isinstance(value, str):
                value = json.dumps(value)
            fields[name] = value
        return fields


def json_body_model(params: type[BaseModel], uploads: dict[str, Upload]) -> type[JsonBody]:
    """``params`` with each upload field as its base64 text."""
    fields: dict[str, Any] = {}
    text_fields = set()
    for name, field in params.model_fields.items():
        if name in uploads:
            fields[name] = (str, Field(description=uploads[name].description + BASE64_NOTE))
            continue
        fields[name] = (field.annotation, copy.copy(field))
        if field.annotation in (str, str | None):
            text_fields.add(name)
    model = create_model(
        params.__name__.removesuffix("Params") + "JsonBody",
        __base__=JsonBody,
        __doc__=TEXT_NOTE,
        **fields,
    )
    model.form_fields = frozenset(params.model_fields) - frozenset(uploads)
    model.text_fields = frozenset(text_fields)
    return model


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}]
        ) from None
    except (RecursionError, UnicodeDecodeError):
        raise InvalidInput("There was an error parsing the body") from None


def json_endpoint(
    runtime: Runtime,
    params: type[BaseModel],
    uploads: dict[str, Upload],
    serve: Callable[[Request, BaseModel], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint taking a JSON body: parsed and base64-decoded on the admission's threads
    beside the inference slots, holding the request's place as an upload's decode does (a
    body holds up to ``MAX_AUDIO_BYTES`` of base64), validated with the form's field types and
    answered with their 422, each file then decoded as an upload is (``decode_data``)."""
    body_model = json_body_model(params, uploads)
    settings = runtime.settings

    async def endpoint(request: Request) -> Response:
        data = await runtime.admission.run_beside(_parse, await request.body())
        try:
            fields = body_model.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"type": error["type"], "loc": ("body", *error["loc"]), "msg": error["msg"]}
                    for error in exc.errors()
                ]
            ) from None
        values = dict(fields)
        cancel = getattr(request.state, "cancel", None)
        for name, upload in uploads.items():
            limit = size_limit(settings, upload.kind)
            content = await runtime.admission.run_beside(decoded_base64, name, values[name], limit)
            values[name] = await decode_data(
                settings, runtime.admission, cancel, name, upload, content
            )
        return await serve(request, params(**values))

    endpoint.body_model = body_model  # type: ignore[attr-defined]
    return endpoint


def json_forms_document(
    path: str, body_model: type[BaseModel], **details: Any
) -> Callable[[], Awaitable[JSONResponse]]:
    """The endpoint serving the OpenAPI document of ``path`` taking ``body_model`` as JSON
    (``details`` as the served route's), built on first use."""

    async def declared(params) -> Response:  # noqa: ANN001 - declared below
        raise NotImplementedError("documents the JSON body; never served")

    declared.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("params", inspect.Parameter.KEYWORD_ONLY, annotation=body_model)]
    )
    route = APIRoute(path, declared, **details)
    document: dict = {}

    async def json_bodies_document() -> JSONResponse:
        if not document:
            document.update(
                get_openapi(
                    title="Livepeer AI Runner: JSON bodies",
                    version=__version__,
                    description=DOCUMENT_DESCRIPTION,
                    routes=[route],
                    separate_input_output_schemas=False,
                )
            )
        return JSONResponse(document)

    return json_bodies_document


def dispatching_route(json_route: APIRoute) -> type[APIRoute]:
    """A route class that hands JSON bodies to ``json_route`` and the rest (the form) to
    itself; the route, and so ``/openapi.json``, is otherwise the form's."""

    class FormOrJsonRoute(APIRoute):
        async def handle(self, scope: Any, receive: Any, send: Any) -> None:
            content_type = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), None
            )
            if is_json(content_type):
                await json_route.handle(scope, receive, send)
            else:
                await super().handle(scope, receive, send)

    return FormOrJsonRoute
