"""The model's life, as one state machine: loading, warming, ready, draining, failed.

The runtime owns the one ``Lifecycle``; its loader thread moves it along, a SIGTERM drains
it, an unrecoverable device error fails it. ``/health``, ``/ready``, ``/metrics``, the gate and
the live-runner registration read it; none of them sets it.

Draining does not stop the model's own life: a load that ends during the drain still ends
(``/health`` keeps telling the model's true state while the listener stays open), and a
failure wins over draining.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from enum import Enum

from runner.schemas import HealthStatus

log = logging.getLogger("runner")


class ModelState(Enum):
    LOADING = "loading"  # the weights are being loaded
    WARMING = "warming"  # loaded; the warm-up (compiling) runs within the LOADING budget
    READY = "ready"  # requests run (a warm-up past the budget may go on beside them)
    DRAINING = "draining"  # SIGTERM: no new requests; those in flight finish
    FAILED = "failed"  # the load failed, or the device cannot serve again: a restart is needed


# The model's own moves; DRAINING is entered by ``drain`` from any of these but FAILED.
MOVES = {
    ModelState.LOADING: {ModelState.WARMING, ModelState.READY, ModelState.FAILED},
    ModelState.WARMING: {ModelState.READY, ModelState.FAILED},
    ModelState.READY: {ModelState.FAILED},
    ModelState.FAILED: set(),
}


class Lifecycle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model = ModelState.LOADING  # the model's own state, beneath a drain
        self._draining = False
        self.loaded = False  # the load ended well (requests may then run)
        self.load_error: str | None = None  # why the load failed
        self.failure: str | None = None  # why the runner cannot serve (load or device)
        self._loaded: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def state(self) -> ModelState:
        model = self._model
        if self._draining and model is not ModelState.FAILED:
            return ModelState.DRAINING
        return model

    @property
    def draining(self) -> bool:
        """New requests are refused: SIGTERM came (whatever the model's state)."""
        return self._draining

    def health(self, busy: bool) -> HealthStatus:
        """The ``/health`` status; ``busy``: whether any place is held."""
        state = self.state
        if state is ModelState.FAILED:
            return HealthStatus.ERROR
        if state is ModelState.DRAINING:
            state = self._model  # a drain leaves the model's own state to tell
        if state in (ModelState.LOADING, ModelState.WARMING):
            return HealthStatus.LOADING
        return HealthStatus.OK if busy else HealthStatus.IDLE

    # -- moves ----------------------------------------------------------------------------

    def watch_load(self) -> None:
        """On the event loop, before the load starts: ``wait_loaded`` then waits for it."""
        self._loop = asyncio.get_running_loop()
        self._loaded = asyncio.Event()

    def warming(self) -> None:
        self._move(ModelState.WARMING)

    def ready(self) -> None:
        self.loaded = True
        self._move(ModelState.READY)
        self._load_ended()

    def load_failed(self, reason: str) -> None:
        self.load_error = reason
        self._move(ModelState.FAILED, reason)
        self._load_ended()

    def unusable(self, reason: str) -> None:
        """The device cannot serve again without a restart: /health says ERROR from now on.

        Only for errors the next request cannot survive (``DeviceUnusable``); never for out
        of memory, which the next request survives: one caller must not be able to have the
        worker take the container down."""
        if self._move(ModelState.FAILED, reason):
            log.error("error: %s; the runner must be restarted", reason)

    def drain(self) -> None:
        self._draining = True

    def _move(self, to: ModelState, failure: str | None = None) -> bool:
        with self._lock:
            if to not in MOVES[self._model]:
                return False
            self._model = to
            if failure is not None:
                self.failure = failure
            return True

    def _load_ended(self) -> None:
        if self._loop is not None and self._loaded is not None:
            self._loop.call_soon_threadsafe(self._loaded.set)

    async def wait_loaded(self) -> bool:
        """Wait for the load to end; whether it ended well."""
        if self._loaded is not None:
            await self._loaded.wait()
        return self.loaded
