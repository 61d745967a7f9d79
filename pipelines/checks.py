"""Input checks that name the field and say why, raised as ``InvalidInput`` (400)."""

from __future__ import annotations

import json
import math
from typing import Any

from runner.errors import InvalidInput

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# JSON sent in a form field (loras, metadata, SAM 2's prompts) is at most this deep (SAM 2's
# mask_input, the deepest, is 3) and its integers at most this long: a deeper value costs a
# recursion per level (a RecursionError past about 1,000), and a longer integer overflows
# the float it becomes (OverflowError) and costs quadratic time to parse.
MAX_JSON_DEPTH = 8
MAX_JSON_INT_DIGITS = 20


def non_empty(field: str, value: str) -> None:
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty.")


def max_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidInput(f"{field} must be at most {limit} characters, got {len(value)}.")


def in_range(field: str, value: float, low: float, high: float) -> None:
    if not (isinstance(value, int) or math.isfinite(value)) or not low <= value <= high:
        raise InvalidInput(f"{field} must be between {low} and {high}, got {value}.")


def multiple_of(field: str, value: int, step: int) -> None:
    if value % step:
        raise InvalidInput(f"{field} must be a multiple of {step}, got {value}.")


def image_side(field: str, value: int, low: int, high: int) -> None:
    in_range(field, value, low, high)
    multiple_of(field, value, 8)


def min_image_side(field: str, size: tuple[int, int], minimum: int) -> None:
    width, height = size
    if min(width, height) < minimum:
        raise InvalidInput(
            f"{field} is {width}x{height} pixels; each side must be at least {minimum} pixels."
        )


def seed(value: int | None) -> None:
    if value is not None:
        in_range("seed", value, INT64_MIN, INT64_MAX)


def well_formed(params: object) -> None:
    """Every text field encodable as UTF-8 and every number finite, whatever the pipeline:
    a lone surrogate (``"\\ud800"`` in JSON) or a NaN/Infinity reached the models as a 500."""
    for field, value in params:  # a pydantic model iterates over (name, value)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(f"{field} is not valid Unicode text.") from None
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{field} must be a finite number, got {value}.")


def json_field(field: str, text: str) -> Any:
    """A form field's JSON value, parsed with its nesting and integer length bounded, so no
    value can make the parse or what reads it fail: a 400 naming the field instead."""

    def integer(digits: str) -> int:
        length = len(digits.lstrip("-"))
        if length > MAX_JSON_INT_DIGITS:
            raise InvalidInput(
                f"{field} holds an integer of {length} digits; at most {MAX_JSON_INT_DIGITS} "
                "are taken."
            )
        return int(digits)

    too_deep = InvalidInput(f"{field} is nested too deeply: at most {MAX_JSON_DEPTH} levels.")
    try:
        value = json.loads(text, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{field} is not valid JSON: {exc.msg} at character {exc.pos}."
        ) from None
    except RecursionError:  # far deeper than the bound
        raise too_deep from None
    if json_depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests arrays and objects (a scalar is 0), counted without
    recursion and only up to ``limit + 1``."""
    level, deepest = [value], 0
    while level:
        containers = [item for item in level if isinstance(item, list | dict)]
        if not containers:
            break
        deepest += 1
        if deepest > limit:
            break
        level = [
            child
            for item in containers
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return deepest
