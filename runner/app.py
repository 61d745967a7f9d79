"""Builds the FastAPI app for the configured pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pipelines.acceleration_report import Accelerated
from pipelines.registry import REGISTRY, pipeline_class
from runner import __version__
from runner.error_answers import ALWAYS_DECLARED, install_error_handlers
from runner.gate import Gate
from runner.json_bodies import body_limits
from runner.live_runner import LiveRunner
from runner.media.uploads import upload_fields
from runner.metrics import Metrics
from runner.routes import declared_error_codes, pipeline_router, system_router
from runner.runtime import Runtime
from runner.settings import Settings


def registered_pipelines() -> dict[str, str]:
    """Each pipeline the registry knows, with its default model: what PIPELINE is checked
    against and MODEL_ID defaults to."""
    return {name: entry.default_model for name, entry in REGISTRY.items()}


def create_app(settings: Settings) -> FastAPI:
    """The app serves at once; the model loads in the background when the app starts."""
    settings = settings.for_pipelines(registered_pipelines())
    pipeline = pipeline_class(settings.pipeline)(settings)
    runtime = Runtime(settings, pipeline)
    accelerated = isinstance(pipeline, Accelerated)  # SFAST/DEEPCACHE apply: diffusion
    metrics = Metrics(
        runtime.reading,
        acceleration=pipeline.acceleration_report if accelerated else lambda: None,
    )
    live_runner = LiveRunner(settings, runtime) if settings.live_runner_orchestrator else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start_loading()
        if live_runner is not None:
            live_runner.start()
        yield
        runtime.drain()
        if live_runner is not None:
            await live_runner.leave()
        runtime.close()

    app = FastAPI(
        title="Livepeer AI Runner",
        description="An application to run AI pipelines",
        version=__version__,
        lifespan=lifespan,
        separate_input_output_schemas=False,
        redirect_slashes=False,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.live_runner = live_runner
    install_error_handlers(app, settings)
    app.include_router(pipeline_router(runtime))
    app.include_router(system_router(runtime, metrics))
    app.add_middleware(
        Gate,
        runtime=runtime,
        metrics=metrics,
        route_path=pipeline.route.path,
        declared=declared_error_codes(type(pipeline)) | ALWAYS_DECLARED,
        body_limits=body_limits(settings, upload_fields(pipeline.route.params)),
    )
    return app
