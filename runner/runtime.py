"""The live state of one runner: its pipeline, the model's life, admission, and health.

The runtime owns the model's ``Lifecycle`` (it loads and warms the model, fails it on an
unrecoverable device error, drains it on shutdown) and the ``Admission`` in front of the
executor. Health and readiness are derived from them whenever asked for, never stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass

import orjson
from pydantic import BaseModel

from pipelines.base import Pipeline
from pipelines.registry import ACCELERATED_PIPELINES
from runner.admission import Admission
from runner.cancellation import CancelScope, reset_scope, use_scope
from runner.device import DeviceUnusable, configure_torch, free_memory, guarded, is_unrecoverable
from runner.errors import (
    InferenceFailed,
    InvalidInput,
    ModelUnavailable,
    RunnerError,
)
from runner.lifecycle import Lifecycle, ModelState
from runner.media.uploads import upload_fields
from runner.schemas import HealthStatus
from runner.settings import Settings
from runner.warmup import WarmUp

log = logging.getLogger("runner")
# go-livepeer destroys a container that says LOADING longer (ai/worker/docker.go containerTimeout).
WORKER_LOADING_LIMIT = 180.0


@dataclass
class Timings:
    """Where one request's time went, in seconds; filled in as it moves along."""

    queue: float = 0.0
    inference: float = 0.0
    encode: float = 0.0

    def header(self) -> str:
        """The W3C ``Server-Timing`` header value, in milliseconds."""
        parts = {"queue": self.queue, "inference": self.inference, "encode": self.encode}
        return ", ".join(f"{name};dur={seconds * 1000:.1f}" for name, seconds in parts.items())


@dataclass(frozen=True)
class Reading:
    """The runner's state at one moment, as ``/metrics`` shows it."""

    health: HealthStatus
    waiting: int  # requests waiting for a slot
    running: int  # inferences running
    warmup_running: bool
    load_seconds: float | None


class Runtime:
    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.lifecycle = Lifecycle()
        self.admission = Admission(settings, self.lifecycle)
        self.load_seconds: float | None = None
        # The LOADING budget counts from here; the server sets it to the process's start.
        self.started = time.monotonic()
        self._warmup: WarmUp | None = None

    # -- health ---------------------------------------------------------------------------

    def health(self) -> HealthStatus:
        return self.lifecycle.health(busy=self.admission.busy > 0)

    def readiness(self) -> str | None:
        """Why a new request could not be taken now, or None when it could: for ``/ready``,
        which a live-runner orchestrator polls to decide where to send traffic."""
        health = self.health()
        if health in (HealthStatus.LOADING, HealthStatus.ERROR):
            return health.value
        if self.lifecycle.state is ModelState.DRAINING:
            return "DRAINING"
        if self.admission.busy >= self.admission.places:
            return "FULL"
        return None

    def reading(self) -> Reading:
        return Reading(
            health=self.health(),
            waiting=self.admission.waiting,
            running=self.admission.running,
            warmup_running=self.warmup_running,
            load_seconds=self.load_seconds,
        )

    @property
    def warmup_running(self) -> bool:
        return self._warmup is not None and self._warmup.running

    def drain(self) -> None:
        """SIGTERM, or the app stopping: no new requests from now on."""
        self.lifecycle.drain()

    def close(self) -> None:
        """The app stopped: the executor's threads are let go."""
        self.admission.close()

    # -- loading --------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the model on a background thread; the server answers meanwhile."""
        self.lifecycle.watch_load()
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        settings = self.settings
        started = time.perf_counter()
        log.info(
            "loading %s model %s from MODEL_DIR=%s",
            settings.pipeline,
            settings.model_id,
            settings.model_dir,
        )
        for flag in ("sfast", "deepcache"):
            if getattr(settings, flag) and settings.pipeline not in ACCELERATED_PIPELINES:
                log.warning(
                    "%s=true: it applies to %s only; ignored for %s",
                    flag.upper(),
                    ", ".join(sorted(ACCELERATED_PIPELINES)),
                    settings.pipeline,
                )
        if settings.max_consecutive_oom is not None:
            log.warning(
                "MAX_CONSECUTIVE_OOM=%d is deprecated and ignored: out of memory never turns "
                "/health to ERROR (the request is retried smaller, then answered 500)",
                settings.max_consecutive_oom,
            )
        try:
            configure_torch(settings)
            self.pipeline.load()
            loaded = time.perf_counter() - started
            warmed = self._warm_up() if settings.warmup else True
        except RunnerError as exc:
            self._load_failed(exc.message)
        except Exception as exc:  # the cause goes to the log, with its traceback
            log.exception("model load crashed")
            self._load_failed(f"{type(exc).__name__}: {exc}")
        else:
            self.load_seconds = time.perf_counter() - started
            warm_up = (
                f"warm-up {self.load_seconds - loaded:.1f}s"
                if warmed
                else f"warm-up going on in the background after {self.load_seconds - loaded:.1f}s"
            )
            log.info(
                "loaded %s in %.1fs (load %.1fs, %s); ready",
                self.pipeline.describe(),
                self.load_seconds,
                loaded,
                warm_up,
            )
            self.lifecycle.ready()
            log.info("try it: %s", self.example_curl())

    def _warm_up(self) -> bool:
        """Warm up until the end of the LOADING budget; False when the warm-up still runs
        then and goes on in the background."""
        budget = self.settings.loading_budget
        if budget >= WORKER_LOADING_LIMIT:
            log.warning(
                "LOADING_BUDGET=%gs is not inside go-livepeer's %.0f-second limit on LOADING: "
                "its worker may destroy this container while it warms up",
                budget,
                WORKER_LOADING_LIMIT,
            )
        log.info("warming up %s", self.pipeline.describe())
        self.lifecycle.warming()
        self._warmup = WarmUp(self.pipeline.warmup, self._warmup_failed)
        self._warmup.start()
        if self._warmup.wait(self.started + budget):
            return True
        log.warning(
            "LOADING_BUDGET=%gs reached %.0fs after the start with the warm-up still running: "
            "serving now, on the uncompiled model where it compiles; the warm-up goes on in "
            "the background",
            budget,
            time.monotonic() - self.started,
        )
        return False

    def _warmup_failed(self, exc: Exception) -> None:
        """A warm-up that failed after the runner went ready: the device may be unusable;
        otherwise requests show what the warm-up ran into."""
        if isinstance(exc, DeviceUnusable) or is_unrecoverable(exc):
            self.lifecycle.unusable(f"unrecoverable device error in the warm-up: {exc}")
        else:
            free_memory()

    def _load_failed(self, failure: str) -> None:
        log.error("error: loading %s failed: %s", self.settings.model_id, failure)
        self.lifecycle.load_failed(failure)

    def example_curl(self) -> str:
        route = self.pipeline.route
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        auth = ' -H "Authorization: Bearer $AUTH_TOKEN"' if self.settings.token else ""
        url = f"http://{host}:{self.settings.port}{route.path}"
        uploads = upload_fields(route.params)
        if not uploads:
            body = f"-H 'Content-Type: application/json' -d '{json.dumps(route.example)}'"
        else:
            fields = [f"-F {name}=@your-{upload.kind}-file" for name, upload in uploads.items()]
            fields += [f"-F '{name}={value}'" for name, value in route.example.items()]
            body = " ".join(fields)
        return f"curl -s -X POST {url}{auth} {body}"

    async def wait_ready(self) -> None:
        """Wait for the load to end; a request that arrived while loading then runs."""
        if not await self.lifecycle.wait_loaded():
            raise ModelUnavailable(
                f"Model {self.settings.model_id} failed to load: {self.lifecycle.load_error}"
            )

    # -- requests -------------------------------------------------------------------------

    def check_model_id(self, requested: str) -> None:
        if requested and requested != self.settings.model_id:
            raise InvalidInput(
                f"pipeline configured with {self.settings.model_id} but called with {requested}."
            )

    async def infer(
        self, params: object, timings: Timings, cancel: CancelScope | None = None
    ) -> bytes:
        """Run one request (as the pipeline's ``check`` returned it) through the pipeline;
        the answer body as JSON bytes.

        ``cancel`` is current on the inference thread, so the pipeline's checkpoints stop it
        when the client goes away or the deadline passes."""
        predict = guarded(self.pipeline.predict)
        cancel = cancel or CancelScope()

        def timed_predict() -> object:
            started = time.perf_counter()
            token = use_scope(cancel)
            try:
                cancel.start_deadline(self.settings.request_deadline)
                cancel.check()
                with self.pipeline.turn():
                    return predict(params)
            finally:
                reset_scope(token)
                timings.inference = time.perf_counter() - started

        arrived = time.perf_counter()
        await self.wait_ready()
        await self._prepare(params)
        try:
            output = await self.admission.run(timed_predict)
        except DeviceUnusable as exc:
            self.lifecycle.unusable(exc.message)
            raise
        finished = time.perf_counter()
        timings.queue = finished - arrived - timings.inference
        body = await asyncio.to_thread(self._encode, output)
        timings.encode = time.perf_counter() - finished
        return body

    async def _prepare(self, params: object) -> None:
        """The pipeline's ``prepare`` (hub fetches) before the request waits for a slot, on a
        thread beside the slots that holds the request's place until it ends."""
        try:
            await self.admission.run_beside(self.pipeline.prepare, params)
        except RunnerError:
            raise
        except Exception as exc:
            log.exception("preparing the request failed")
            raise InferenceFailed(f"Inference failed: {type(exc).__name__}.") from exc

    def _encode(self, output: object) -> bytes:
        try:
            return answer_json(self.pipeline.encode(output))
        except Exception as exc:  # a pipeline that returned something it cannot encode
            log.exception("encoding the answer failed")
            raise InferenceFailed(
                f"Inference failed: its output could not be encoded ({type(exc).__name__})."
            ) from exc


def answer_json(answer: BaseModel) -> bytes:
    """The answer body: orjson writes the megabytes of base64 of an image or video answer
    about 5 times faster than pydantic (45 ms against 215 ms for 25 1024x576 frames);
    pydantic's writer is kept for whatever orjson refuses."""
    try:
        return orjson.dumps(answer.model_dump(mode="json"))
    except (TypeError, orjson.JSONEncodeError):
        return answer.model_dump_json().encode()
