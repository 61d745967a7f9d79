"""The served OpenAPI document matches the reference runner's, field by field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.registry import REGISTRY
from runner.app import create_app

# The published document of ai-runner v0.14.1, kept in the repository so any clone can check it.
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "ai-runner-openapi.yaml"


def _reference() -> dict:
    return yaml.safe_load(REFERENCE.read_text())


def _resolve(doc: dict, schema: dict) -> tuple[str | None, dict]:
    """The component name (if a $ref) and the schema it points to."""
    ref = schema.get("$ref")
    if ref is None:
        return None, schema
    name = ref.rsplit("/", 1)[-1]
    return name, doc["components"]["schemas"][name]


def _type(doc: dict, prop: dict) -> object:
    """A comparable description of a property's type, references followed by name."""
    if "$ref" in prop:
        return ("ref", _resolve(doc, prop)[0])
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(doc, prop["allOf"][0])
    if "anyOf" in prop:
        return ("anyOf", tuple(sorted(str(_type(doc, p)) for p in prop["anyOf"])))
    kind = prop.get("type")
    if kind == "array":
        return ("array", _type(doc, prop.get("items", {})))
    if kind == "object" and "additionalProperties" in prop:
        extra = prop["additionalProperties"]
        return ("map", _type(doc, extra) if isinstance(extra, dict) else extra)
    return (kind, prop.get("format"), tuple(prop.get("enum", ())))


def _shape(doc: dict, schema: dict) -> dict:
    name, body = _resolve(doc, schema)
    properties = body.get("properties", {})
    return {
        "name": name,
        "required": sorted(body.get("required", [])),
        "fields": {
            field: (_type(doc, prop), prop.get("default", "<none>"))
            for field, prop in properties.items()
        },
    }


def _operation(doc: dict, operation: dict) -> dict:
    body = operation.get("requestBody")
    request = None
    if body is not None:
        request = {
            "required": body.get("required", False),
            "content": {
                content_type: _shape(doc, media["schema"])
                for content_type, media in body["content"].items()
            },
        }
    responses = {}
    for code, answer in operation["responses"].items():
        responses[str(code)] = {
            content_type: _shape(doc, media["schema"])
            for content_type, media in answer.get("content", {}).items()
        }
    return {
        "operationId": operation.get("operationId"),
        "request": request,
        "responses": responses,
        "security": operation.get("security"),
    }


@pytest.mark.parametrize("pipeline", sorted(REGISTRY))
def test_served_routes_match_the_reference(make_settings, pipeline):
    reference = _reference()
    served = create_app(make_settings(pipeline=pipeline)).openapi()
    assert set(served["paths"]) <= set(reference["paths"]), "paths the reference does not have"
    expected_paths = {"/health", "/version", "/hardware/info", "/hardware/stats", f"/{pipeline}"}
    assert set(served["paths"]) == expected_paths
    for path, methods in served["paths"].items():
        assert set(methods) == set(reference["paths"][path]), path
        for method, operation in methods.items():
            ours = _operation(served, operation)
            theirs = _operation(reference, reference["paths"][path][method])
            assert ours == theirs, f"{method.upper()} {path} differs from the reference"
