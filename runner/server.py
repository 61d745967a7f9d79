"""Serving with uvicorn, and the SIGTERM contract.

First SIGTERM (or SIGINT): new pipeline requests get the overload answer (500, or 503, with
Retry-After) while the listener stays open, so ``/health`` keeps answering with the true
state; requests in flight get ``SHUTDOWN_GRACE`` seconds to finish. When the grace ends, those
still queued or running are answered with the same overload answer (JSON, Retry-After), then
the server stops and the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from runner.app import create_app
from runner.connections import (
    LISTEN_BACKLOG,
    ConnectionLimits,
    connection_cap,
    guarded_protocol,
    raise_fd_limit,
)
from runner.live_runner import LiveRunner
from runner.runtime import Runtime
from runner.settings import Settings
from runner.warmup import process_started

log = logging.getLogger("runner")

# Seconds the cut-off answers get to reach their clients before the server stops.
CUT_OFF_FLUSH = 5.0
# Past the grace and the flush, the process leaves even if something still holds it.
BACKSTOP = 15.0


class Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        runtime: Runtime,
        grace: float,
        live_runner: LiveRunner | None = None,
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.live_runner = live_runner
        self.grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        name = signal.Signals(sig).name
        if self.runtime.lifecycle.draining or self.should_exit:
            log.warning("second %s: exiting now", name)
            _exit_now()
        self.runtime.drain()
        log.info("%s: no new requests; waiting up to %.0fs for those in flight", name, self.grace)
        timer = threading.Timer(self.grace + CUT_OFF_FLUSH + BACKSTOP, _backstop)
        timer.daemon = True
        timer.start()
        if self._loop is None:  # not serving yet: nothing can be in flight
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain()))

    async def _drain(self) -> None:
        if self.live_runner is not None:  # out of the orchestrator's discovery first
            await self.live_runner.leave()
        loop = asyncio.get_running_loop()
        admission = self.runtime.admission
        deadline = loop.time() + self.grace
        while admission.busy and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if admission.busy:
            cut = admission.cut_off_in_flight()
            log.warning(
                "shutdown grace period over: %d request(s) still in flight answered 500 "
                "with Retry-After",
                cut,
            )
            flushed = loop.time() + CUT_OFF_FLUSH
            while admission.answering and loop.time() < flushed:
                await asyncio.sleep(0.02)
        self.should_exit = True


def _backstop() -> None:
    log.warning("shutdown took past its grace period: exiting now")
    _exit_now()


def _exit_now() -> None:
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn as the runner runs it: its h11 protocol with the runner's connection limits."""
    raise_fd_limit()
    limits = ConnectionLimits(settings.header_timeout, connection_cap(settings.max_connections))
    values: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace,
        "timeout_keep_alive": 30,
        "http": guarded_protocol(limits),
        "backlog": LISTEN_BACKLOG,
    }
    values.update(overrides)
    return uvicorn.Config(app, **values)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    app.state.runtime.started = process_started()  # go-livepeer's clock starts with the container
    config = uvicorn_config(app, settings, timeout_graceful_shutdown=CUT_OFF_FLUSH)
    server = Server(config, app.state.runtime, settings.shutdown_grace, app.state.live_runner)
    log.info(
        "serving %s on http://%s:%d (model %s)",
        settings.pipeline,
        settings.host,
        settings.port,
        settings.model_id,
    )
    server.run()
    cut_off = app.state.runtime.admission.running
    if cut_off:
        log.warning("shutdown grace period over: exiting with %d inference(s) unfinished", cut_off)
    log.info("stopped")
    # Inference threads cannot be interrupted; nothing is in flight any more, so leave now.
    _exit_now()
