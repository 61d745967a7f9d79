"""Answer bodies shared by every pipeline, named and shaped as in the reference OpenAPI."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


def _published_as(json_type: str):
    def rewrite(schema: dict) -> None:
        schema.pop("anyOf", None)
        schema.pop("default", None)
        schema["type"] = json_type

    return rewrite


def optional_int(description: str) -> int | None:
    """An integer field that may be left out, published as a plain ``integer`` like the
    reference does (pydantic would publish ``anyOf: [integer, null]``)."""
    return Field(None, description=description, json_schema_extra=_published_as("integer"))


def optional_str(description: str) -> str | None:
    """A string field that may be left out, published as a plain ``string``."""
    return Field(None, description=description, json_schema_extra=_published_as("string"))


class APIError(BaseModel):
    """API error response model."""

    msg: str = Field(description="The error message.")


class HTTPError(BaseModel):
    """HTTP error response model."""

    detail: APIError = Field(description="Detailed error information.")


class Media(BaseModel):
    """A media object containing information about the generated media."""

    url: str = Field(description="The URL where the media can be accessed.")
    seed: int = Field(description="The seed used to generate the media.")
    nsfw: bool = Field(description="Whether the media was flagged as NSFW.")


class ImageResponse(BaseModel):
    """Response model for image generation."""

    images: list[Media] = Field(description="The generated images.")


class VideoResponse(BaseModel):
    """Response model for video generation."""

    frames: list[list[Media]] = Field(description="The generated video frames.")


class HealthStatus(StrEnum):
    LOADING = "LOADING"
    OK = "OK"
    ERROR = "ERROR"
    IDLE = "IDLE"


class HealthCheck(BaseModel):
    status: Literal["LOADING", "OK", "ERROR", "IDLE"] = Field(
        description="The health status of the pipeline"
    )


class Version(BaseModel):
    pipeline: str
    model_id: str
    version: str = Field(description="The version of the Runner")


class GPUComputeInfo(BaseModel):
    """Model for detailed GPU compute information."""

    id: str
    name: str
    memory_total: int
    memory_free: int
    major: int
    minor: int


class GPUUtilizationInfo(BaseModel):
    """Model for GPU utilization statistics."""

    id: str
    name: str
    memory_total: int
    memory_free: int
    utilization_compute: int
    utilization_memory: int


class HardwareInformation(BaseModel):
    """Response model for GPU information."""

    pipeline: str
    model_id: str
    gpu_info: dict[int, GPUComputeInfo]


class HardwareStats(BaseModel):
    """Response model for real-time GPU statistics."""

    pipeline: str
    model_id: str
    gpu_stats: dict[int, GPUUtilizationInfo]
