"""Every setting the runner reads, from the environment, validated once at start-up.

Pipelines receive this object; nothing else in the project reads ``os.environ``. The
settings come in groups (the server's, the hub's, one per pipeline family, the live runner's),
each a class of its own; ``Settings`` holds them all under their environment names. This module
is a leaf: the pipelines PIPELINE may name are passed in by whoever reads the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runner import __version__

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
MiB = 1024 * 1024
GiB = 1024 * MiB
HF_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub counts as set
# An absolute http(s) URL with a host, as go-livepeer's normalizeHeartbeat wants runner_url.
HTTP_URL = re.compile(r"^https?://[^/\s?#]+[^\s]*$")
SAFETY_CHECKER_ID = "CompVis/stable-diffusion-safety-checker"
SDXL_BASE_ID = "stabilityai/stable-diffusion-xl-base-1.0"


def _default_torch_threads() -> int:
    """Leave one core to the event loop, so /health answers while torch computes."""
    return max(1, (os.cpu_count() or 2) - 1)


ENVIRONMENT = SettingsConfigDict(
    env_prefix="", case_sensitive=False, extra="ignore", env_ignore_empty=True, frozen=True
)


class FromEnvironment(BaseSettings):
    """A group of settings, each read from the environment variable of its name in capitals."""

    model_config = ENVIRONMENT


class ModelSettings(FromEnvironment):
    """What the container serves and how the model is loaded."""

    pipeline: str = Field(description="The pipeline this container serves.")
    model_id: str = Field("", description="Hugging Face id of the model; the pipeline's default.")
    version: str = Field(__version__, description="Semver reported by /version.")
    verbose_logging: bool = False
    bfloat16: bool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    torch_threads: int = Field(default_factory=_default_torch_threads, ge=1)
    warmup: bool = Field(True, description="Run the model once while /health says LOADING.")
    loading_budget: float = Field(
        120.0,
        ge=0,
        description="Seconds from the start of the process by which /health leaves LOADING; "
        "a warm-up (compiling) still running then goes on while requests run.",
    )

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not SEMVER.match(value):
            raise ValueError("must be a semantic version such as 0.3.1 (the worker ignores others)")
        return value

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        return _hub_id(value)


class ServerSettings(FromEnvironment):
    """The HTTP server: where it listens, who may call, admission, and the limits on requests."""

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    auth_token: SecretStr | None = Field(None, description="Bearer token required when set.")

    capacity: int = Field(1, ge=1, description="Inferences that run at once.")
    max_queue: int = Field(16, ge=0, description="Requests allowed to wait for a slot.")
    overload_status: Literal[500, 503] = 500
    retry_after: int = Field(5, ge=1, description="Seconds in Retry-After on overload.")
    request_deadline: float = Field(
        0.0, ge=0, description="Seconds an inference may run before it is stopped; 0: no limit."
    )
    max_consecutive_oom: int | None = Field(
        None, ge=0, description="Deprecated and ignored: out of memory never means ERROR."
    )
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds in-flight work gets on SIGTERM.")

    max_json_bytes: int = Field(1 * MiB, ge=1024)
    body_timeout: float = Field(
        60.0, gt=0, description="Seconds a client has to send its whole request body."
    )
    min_body_rate: int = Field(
        16 * 1024,
        ge=0,
        description="Bytes a second a request body must average after its first 5 s; 0: off.",
    )
    max_bodies_in_transit: int = Field(
        16, ge=1, description="Request bodies read at once, before they take a place."
    )
    header_timeout: float = Field(
        10.0, gt=0, description="Seconds a connection has to send a whole request head."
    )
    max_connections: int = Field(
        1000, ge=8, description="Open connections; lowered below the file-descriptor limit."
    )
    memory_trim_bytes: int = Field(
        MiB,
        ge=0,
        description="After a request whose body or answer is this large, freed memory is "
        "returned to the system (glibc malloc_trim); 0: never.",
    )
    max_image_bytes: int = Field(10 * MiB, ge=1024)
    max_audio_bytes: int = Field(50 * MiB, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=64 * 64, description="Largest upload, in pixels.")

    @property
    def token(self) -> str | None:
        return self.auth_token.get_secret_value() if self.auth_token else None


class HubSettings(FromEnvironment):
    """The models folder (a Hugging Face hub cache) and fetching what it lacks."""

    model_dir: Path = Field(Path("/models"), description="Hugging Face hub cache holding models.")
    hf_hub_offline: bool = Field(
        False,
        validation_alias=AliasChoices("hf_hub_offline", "transformers_offline"),
        description="1: never fetch from the hub; what MODEL_DIR lacks is an error.",
    )
    hf_endpoint: str = Field("https://huggingface.co", description="The hub fetched from.")
    hf_token: SecretStr | None = Field(None, description="Token for gated or private repos.")
    hub_min_free_bytes: int = Field(
        5 * GiB, ge=0, description="Free space a fetch must leave on MODEL_DIR's disk."
    )

    @field_validator("hf_hub_offline", mode="before")
    @classmethod
    def _hf_flag(cls, value: object) -> object:
        """Read as huggingface_hub reads it: set when 1, ON, YES or TRUE; else unset."""
        if isinstance(value, str):
            return value.strip().upper() in HF_TRUE_VALUES
        return value

    @field_validator("hf_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://huggingface.co")
        return value.rstrip("/")

    @property
    def hub_token(self) -> str | bool:
        """``token`` for huggingface_hub calls: HF_TOKEN, or False (it then reads nothing)."""
        return self.hf_token.get_secret_value() if self.hf_token else False


class DiffusionSettings(FromEnvironment):
    """text-to-image, image-to-image, image-to-video and upscale: acceleration, request
    limits, the safety checker, the SDXL base and LoRAs."""

    sfast: bool = Field(False, description="Compile the diffusion pipeline (stable-fast).")
    deepcache: bool = Field(False, description="Cache UNet features across denoising steps.")
    compiler: Literal["auto", "stable-fast", "torch"] = Field(
        "auto", description="What SFAST compiles with; auto: stable-fast where it applies."
    )
    torch_compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"
    compile_cache_dir: Path | None = Field(
        None, description="Compiled kernels kept across restarts; MODEL_DIR/compile-cache."
    )
    warmup_sizes: Annotated[tuple[tuple[int, int], ...], NoDecode] = Field(
        (), description="Extra WIDTHxHEIGHT sizes warmed up at start-up, comma-separated."
    )
    deepcache_interval: int = Field(3, ge=1, description="Full UNet passes every N steps.")
    deepcache_branch: int = Field(0, ge=0, description="The UNet skip branch DeepCache keeps.")
    deepcache_min_steps: int = Field(
        10, ge=1, description="Fewer denoising steps than this run without DeepCache."
    )

    image_size_min: int = Field(64, ge=8)
    image_size_max: int = Field(2048, ge=8)
    max_inference_steps: int = Field(150, ge=1)
    max_images_per_request: int = Field(8, ge=1)
    max_guidance_scale: float = Field(50.0, ge=0)
    image_pixel_budget: int = Field(
        1024 * 1024, ge=64 * 64, description="Larger image-to-image inputs are scaled down."
    )

    safety_checker: bool = Field(True, description="Load the safety checker at start-up.")
    safety_checker_id: str = SAFETY_CHECKER_ID
    sdxl_base_id: str = Field(
        SDXL_BASE_ID,
        description="The SDXL base that ByteDance/SDXL-Lightning UNets are loaded into.",
    )

    max_loras: int = Field(
        4, ge=1, description="LoRA adapters kept loaded; the least recently used is dropped."
    )
    lora_max_bytes: int = Field(
        2 * GiB, ge=1, description="Largest LoRA weights file fetched for a request."
    )
    lora_download_timeout: float = Field(
        120.0, gt=0, description="Seconds a request waits for its LoRA to be fetched."
    )
    hub_max_downloads: int = Field(2, ge=1, description="LoRA downloads that run at once.")

    @field_validator("warmup_sizes", mode="before")
    @classmethod
    def _sizes(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        sizes = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            found = re.fullmatch(r"(\d+)x(\d+)", item.lower())
            size = (int(found[1]), int(found[2])) if found else (0, 0)
            if min(size) == 0 or size[0] % 8 or size[1] % 8:
                raise ValueError(
                    f"{item!r} is not WIDTHxHEIGHT with sides multiples of 8, such as 1024x576"
                )
            sizes.append(size)
        return tuple(sizes)

    @field_validator("safety_checker_id", "sdxl_base_id")
    @classmethod
    def _repositories(cls, value: str) -> str:
        return _hub_id(value)


class UpscaleSettings(FromEnvironment):
    upscale_max_input_pixels: int = Field(
        512 * 512, ge=64 * 64, description="Largest image upscale takes, in pixels."
    )
    upscale_max_aspect_ratio: float = Field(
        16.0, ge=1.0, description="Thinnest image upscale takes: its long side over its short."
    )


class SegmentAnything2Settings(FromEnvironment):
    max_mask_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        description="Largest image segment-anything-2 segments: its masks are the image's size.",
    )
    max_prompt_points: int = Field(
        256, ge=1, description="Most point prompts in one segment-anything-2 request."
    )


class ImageToTextSettings(FromEnvironment):
    max_new_tokens: int = Field(64, ge=1, le=1024, description="Longest generated caption.")


class AudioToTextSettings(FromEnvironment):
    max_audio_seconds: float = Field(3600.0, gt=0, description="Longest audio transcribed.")


class TextToSpeechSettings(FromEnvironment):
    max_text_chars: int = Field(2000, ge=1, description="Longest text spoken (text-to-speech).")


class LiveRunnerSettings(FromEnvironment):
    """Registering with a go-livepeer orchestrator as a live runner (runner/live_runner.py)."""

    live_runner_orchestrator: str | None = Field(
        None,
        description="The orchestrator's runner-facing URL; set: the runner registers itself "
        "as a go-livepeer live runner.",
    )
    live_runner_secret: SecretStr | None = Field(
        None, description="The orchestrator's -orchSecret, for the first registration."
    )
    live_runner_url: str | None = Field(
        None, description="This runner's URL as the orchestrator reaches it."
    )
    live_runner_app: str = Field("", description="The app registered; PIPELINE/MODEL_ID.")
    live_runner_price: Decimal = Field(
        Decimal(0), ge=0, description="Price in USD per LIVE_RUNNER_UNIT."
    )
    live_runner_unit: Literal["hour", "720p", "fixed"] = "fixed"

    @field_validator("live_runner_orchestrator", "live_runner_url")
    @classmethod
    def _live_runner_url(cls, value: str | None) -> str | None:
        if value is not None and not HTTP_URL.match(value):
            raise ValueError("must be an absolute http(s) URL such as http://orchestrator:8935")
        return value.rstrip("/") if value else value

    @field_validator("live_runner_app")
    @classmethod
    def _trimmed_app(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with spaces (go-livepeer refuses it)")
        return value

    @model_validator(mode="after")
    def _registration_needs(self) -> LiveRunnerSettings:
        if self.live_runner_orchestrator:
            missing = [
                name
                for name, value in (
                    ("LIVE_RUNNER_SECRET", self.live_runner_secret),
                    ("LIVE_RUNNER_URL", self.live_runner_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "LIVE_RUNNER_ORCHESTRATOR is set, so the runner registers itself; it "
                    f"needs {' and '.join(missing)} too"
                )
        return self


# Listed last to first: pydantic orders the fields from the last base to the first, and the
# first invalid field in that order is the one reported.
class Settings(
    LiveRunnerSettings,
    TextToSpeechSettings,
    AudioToTextSettings,
    ImageToTextSettings,
    SegmentAnything2Settings,
    UpscaleSettings,
    DiffusionSettings,
    HubSettings,
    ServerSettings,
    ModelSettings,
):
    """Every setting, in one frozen object handed to the app and the pipeline.

    PIPELINE is checked, and MODEL_ID defaulted, against the pipelines the caller passes to
    ``load_settings`` or ``for_pipelines``: the registry is read there, not here."""

    model_config = ENVIRONMENT

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.compile_cache_dir is None:
            object.__setattr__(self, "compile_cache_dir", self.model_dir / "compile-cache")
        if self.image_size_min > self.image_size_max:
            raise ValueError("IMAGE_SIZE_MIN must not exceed IMAGE_SIZE_MAX")
        if not self.live_runner_app and self.model_id:
            object.__setattr__(self, "live_runner_app", f"{self.pipeline}/{self.model_id}")
        return self

    def for_pipelines(self, pipelines: Mapping[str, str]) -> Settings:
        """These settings checked against ``pipelines`` (each pipeline served, with its
        default model), MODEL_ID filled in from it when unset."""
        if self.pipeline not in pipelines:
            raise SettingsError(
                f"invalid setting PIPELINE={self.pipeline!r}: must be {_one_of(pipelines)}"
            )
        if self.model_id:
            return self
        model_id = pipelines[self.pipeline]
        app = self.live_runner_app or f"{self.pipeline}/{model_id}"
        return self.model_copy(update={"model_id": model_id, "live_runner_app": app})


def _hub_id(value: str) -> str:
    if value and not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
        raise ValueError("must be a Hugging Face id of the form org/name")
    return value


class SettingsError(Exception):
    """A setting with a bad value; the message is one line meant for the operator."""


def load_settings(pipelines: Mapping[str, str]) -> Settings:
    """Read and validate the settings from the process environment, against ``pipelines``:
    each pipeline served with its default model, read from the registry by the caller."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, pipelines)) from None
    return settings.for_pipelines(pipelines)


def load_group[G: FromEnvironment](group: type[G]) -> G:
    """One group of settings from the environment, for a command that needs no more
    (``healthcheck``, ``check-config``): the others' values are not read."""
    try:
        return group()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, {})) from None


def _describe(exc: ValidationError, pipelines: Mapping[str, str]) -> str:
    error = exc.errors()[0]
    if not error["loc"]:
        return f"invalid settings: {error['msg'].removeprefix('Value error, ')}"
    name = str(error["loc"][0])
    env_name = name.upper()
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        allowed = _one_of(pipelines) if name == "pipeline" else _described(name)
        return f"{env_name} is not set: it is required ({allowed})"
    value = error.get("input")
    return f"invalid setting {env_name}={value!r}: {message}"


def _one_of(pipelines: Mapping[str, str]) -> str:
    return f"one of {', '.join(sorted(pipelines))}"


def _described(name: str) -> str:
    field = Settings.model_fields[name]
    return field.description or "see the README"
