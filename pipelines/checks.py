"""Input checks that name the field and say why, raised as ``InvalidInput`` (400)."""

from __future__ import annotations

import math

from runner.errors import InvalidInput

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
