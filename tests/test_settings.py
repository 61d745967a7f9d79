"""Settings from the environment: defaults, and one clear line for each bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.registry import REGISTRY
from runner import __version__
from runner.app import create_app, registered_pipelines
from runner.cli import main
from runner.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (
        "PIPELINE",
        "MODEL_ID",
        "MODEL_DIR",
        "CAPACITY",
        "VERSION",
        "AUTH_TOKEN",
        "PORT",
        "WARMUP_SIZES",
        "COMPILE_CACHE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE", "text-to-image")


def test_defaults_work_with_only_the_pipeline_set():
    settings = load_settings(registered_pipelines())
    assert settings.model_id == "SG161222/RealVisXL_V4.0_Lightning"
    assert settings.model_dir == Path("/models")
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.version == __version__
    assert (settings.capacity, settings.max_queue) == (1, 16)
    assert settings.token is None and settings.overload_status == 500
    assert settings.max_image_bytes == 10 * 1024 * 1024
    assert settings.max_audio_bytes == 50 * 1024 * 1024


def test_values_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "org/model")
    monkeypatch.setenv("VERBOSE_LOGGING", "1")
    monkeypatch.setenv("SFAST", "true")
    monkeypatch.setenv("CAPACITY", "4")
    monkeypatch.setenv("AUTH_TOKEN", "s3cret-token")
    settings = load_settings(registered_pipelines())
    assert settings.model_id == "org/model" and settings.verbose_logging and settings.sfast
    assert settings.capacity == 4 and settings.token == "s3cret-token"
    assert "s3cret" not in repr(settings)


def test_acceleration_settings(monkeypatch):
    monkeypatch.setenv("MODEL_DIR", "/data/models")
    settings = load_settings(registered_pipelines())
    assert settings.compile_cache_dir == Path("/data/models/compile-cache")
    assert settings.warmup_sizes == () and settings.compiler == "auto"
    assert settings.loading_budget == 120  # well inside go-livepeer's 3 minutes of LOADING
    monkeypatch.setenv("WARMUP_SIZES", "1024x1024, 768X512")
    monkeypatch.setenv("COMPILE_CACHE_DIR", "/cache")
    monkeypatch.setenv("LOADING_BUDGET", "90.5")
    settings = load_settings(registered_pipelines())
    assert settings.warmup_sizes == ((1024, 1024), (768, 512))
    assert settings.compile_cache_dir == Path("/cache")
    assert settings.loading_budget == 90.5
    monkeypatch.setenv("LOADING_BUDGET", "-1")
    with pytest.raises(SettingsError, match="invalid setting LOADING_BUDGET='-1'"):
        load_settings(registered_pipelines())


def test_an_empty_variable_means_the_default(monkeypatch):
    monkeypatch.setenv("AUTH_TOKEN", "")
    monkeypatch.setenv("CAPACITY", "")
    settings = load_settings(registered_pipelines())
    assert settings.token is None and settings.capacity == 1


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "CAPACITY",
            "0",
            "invalid setting CAPACITY='0': Input should be greater than or equal to 1",
        ),
        ("PORT", "http", "invalid setting PORT='http': Input should be a valid integer"),
        (
            "OVERLOAD_STATUS",
            "429",
            "invalid setting OVERLOAD_STATUS='429': Input should be 500 or 503",
        ),
        (
            "VERSION",
            "latest",
            "invalid setting VERSION='latest': must be a semantic version such as 0.3.1 "
            "(the worker ignores others)",
        ),
        (
            "MODEL_ID",
            "not an id",
            "invalid setting MODEL_ID='not an id': must be a Hugging Face id of the form org/name",
        ),
        ("SFAST", "maybe", "invalid setting SFAST='maybe': Input should be a valid boolean"),
        (
            "WARMUP_SIZES",
            "1024x576,1024x500",
            "invalid setting WARMUP_SIZES='1024x576,1024x500': '1024x500' is not "
            "WIDTHxHEIGHT with sides multiples of 8, such as 1024x576",
        ),
        (
            "COMPILER",
            "tensorrt",
            "invalid setting COMPILER='tensorrt': Input should be 'auto', 'stable-fast' or 'torch'",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    monkeypatch, name, value, expected
):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(registered_pipelines())
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_a_missing_pipeline_is_named(monkeypatch):
    monkeypatch.delenv("PIPELINE")
    with pytest.raises(SettingsError) as caught:
        load_settings(registered_pipelines())
    names = ", ".join(sorted(REGISTRY))
    assert str(caught.value) == f"PIPELINE is not set: it is required (one of {names})"


def test_settings_import_nothing_of_the_pipelines():
    """Settings is a leaf: the pipelines PIPELINE may name are passed in by whoever reads
    the registry (create_app, ``ai-runner serve``)."""
    code = "import sys, runner.settings; print(sorted(m for m in sys.modules if 'pipelines' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_app_checks_the_pipeline_against_the_registry():
    with pytest.raises(SettingsError) as caught:
        create_app(Settings(pipeline="text-to-everything"))
    names = ", ".join(sorted(REGISTRY))
    assert str(caught.value) == (
        f"invalid setting PIPELINE='text-to-everything': must be one of {names}"
    )


def test_healthcheck_reads_the_port_through_settings(monkeypatch, capsys):
    monkeypatch.setenv("PORT", "9")  # discard: nothing answers
    assert main(["healthcheck"]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: http://127.0.0.1:9/health did not")
    monkeypatch.setenv("PORT", "http")
    assert main(["healthcheck"]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: invalid setting PORT='http'")
