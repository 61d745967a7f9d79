"""Serving with uvicorn, and the SIGTERM contract.

First SIGTERM (or SIGINT): stop taking requests, let those in flight finish within
``SHUTDOWN_GRACE`` seconds, exit 0. A second signal, or the end of the grace period, exits
at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from runner.app import create_app
from runner.connections import ConnectionLimits, connection_cap, guarded_protocol
from runner.settings import Settings
from runner.warmup import process_started

log = logging.getLogger("runner")


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace: float) -> None:
        super().__init__(config)
        self.grace = grace
        self.on_shutdown_started = lambda: None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            log.warning("second %s: exiting now", signal.Signals(sig).name)
            _exit_now()
        log.info(
            "%s: no new requests; waiting up to %.0fs for those in flight",
            signal.Signals(sig).name,
            self.grace,
        )
        self.should_exit = True
        self.on_shutdown_started()
        timer = threading.Timer(self.grace + 1.0, _grace_over)
        timer.daemon = True
        timer.start()


def _grace_over() -> None:
    log.warning("shutdown grace period over: exiting with requests still in flight")
    _exit_now()


def _exit_now() -> None:
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn as the runner runs it: its h11 protocol with the runner's connection limits."""
    limits = ConnectionLimits(settings.header_timeout, connection_cap(settings.max_connections))
    values: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace,
        "timeout_keep_alive": 30,
        "http": guarded_protocol(limits),
    }
    values.update(overrides)
    return uvicorn.Config(app, **values)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    app.state.runtime.started = process_started()  # go-livepeer's clock starts with the container
    server = Server(uvicorn_config(app, settings), settings.shutdown_grace)

    def stop_admitting() -> None:
        app.state.runtime.shutting_down = True

    server.on_shutdown_started = stop_admitting
    log.info(
        "serving %s on http://%s:%d (model %s)",
        settings.pipeline,
        settings.host,
        settings.port,
        settings.model_id,
    )
    server.run()
    cut_off = app.state.runtime.executor.running
    if cut_off:
        log.warning("shutdown grace period over: exiting with %d inference(s) unfinished", cut_off)
    log.info("stopped")
    # Inference threads cannot be interrupted; nothing is in flight any more, so leave now.
    _exit_now()
