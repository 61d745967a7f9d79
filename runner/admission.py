"""Who may come in: the one interface to the executor's places for everything outside the
runtime (the gate, the upload decoders, the server's drain, the metrics).

A pipeline request is refused at once while draining or when every place is taken; its body
is read before it takes a place, bounded by ``MAX_BODIES_IN_TRANSIT``; then it holds a place
until its answer is sent. Requests past the gate are registered, so a shutdown can cut them
off when its grace ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from runner.cancellation import CancelScope
from runner.errors import Overloaded
from runner.executor import InferenceExecutor
from runner.lifecycle import Lifecycle
from runner.settings import ServerSettings

T = TypeVar("T")
DRAINING = "The runner is shutting down; send the request elsewhere."


class AtCapacity(Overloaded):
    """Refused because every place (or every body slot) is taken: counted as an overload."""


class Admission:
    def __init__(self, settings: ServerSettings, lifecycle: Lifecycle) -> None:
        self._executor = InferenceExecutor(settings.capacity, settings.max_queue)
        self._lifecycle = lifecycle
        self._max_bodies = settings.max_bodies_in_transit
        self.bodies_in_transit = 0  # pipeline request bodies being read, before a place
        # Pipeline requests past the gate: (their cancel scope, their task), for the shutdown.
        self._in_flight: set[tuple[CancelScope, asyncio.Future]] = set()

    # -- what the gate asks ---------------------------------------------------------------

    def check_room(self) -> None:
        """The overload answer when draining or when every place is taken."""
        self._refuse_if_draining()
        if not self._executor.has_room():
            raise self._full()

    @contextmanager
    def place(self) -> Iterator[None]:
        """Hold a place for the request within; refused as ``check_room`` refuses."""
        self._refuse_if_draining()
        if not self._executor.try_admit():
            raise self._full()
        try:
            yield
        finally:
            self._executor.release()

    @contextmanager
    def receiving_body(self) -> Iterator[None]:
        """Count a request body being read (before its place) while within."""
        if self.bodies_in_transit >= self._max_bodies:
            raise AtCapacity(
                f"The runner is receiving {self.bodies_in_transit} request bodies already "
                "(MAX_BODIES_IN_TRANSIT); retry later."
            )
        self.bodies_in_transit += 1
        try:
            yield
        finally:
            self.bodies_in_transit -= 1

    @contextmanager
    def in_flight(self, cancel: CancelScope, task: asyncio.Future) -> Iterator[None]:
        """Register a request past the gate, so ``cut_off_in_flight`` can stop it."""
        entry = (cancel, task)
        self._in_flight.add(entry)
        try:
            yield
        finally:
            self._in_flight.discard(entry)

    def _refuse_if_draining(self) -> None:
        if self._lifecycle.draining:
            raise Overloaded(DRAINING)

    def _full(self) -> AtCapacity:
        return AtCapacity(
            f"The runner is at capacity ({self._executor.capacity} running, "
            f"{self._executor.max_queue} queued); retry later."
        )

    # -- the shutdown ---------------------------------------------------------------------

    def cut_off_in_flight(self) -> int:
        """The shutdown grace is over: stop every request still queued or running (running
        ones at their next step); each is answered with the overload answer. How many."""
        cut = list(self._in_flight)
        for cancel, task in cut:
            cancel.cancel("shutdown")
            task.cancel()
        return len(cut)

    @property
    def answering(self) -> int:
        """Requests past the gate still to be answered (cut-off answers included)."""
        return len(self._in_flight)

    def close(self) -> None:
        self._executor.shutdown()

    # -- counts ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._executor.capacity

    @property
    def places(self) -> int:
        return self._executor.capacity + self._executor.max_queue

    @property
    def admitted(self) -> int:
        """Requests holding a place and not yet answered (waiting or running)."""
        return self._executor.admitted

    @property
    def busy(self) -> int:
        """Places held: admitted requests, and inferences still running for clients that left."""
        return self._executor.busy

    @property
    def running(self) -> int:
        return self._executor.running

    @property
    def waiting(self) -> int:
        return self._executor.waiting

    @property
    def idle(self) -> bool:
        """Nothing is being read, queued or run."""
        return not (self._in_flight or self.bodies_in_transit or self._executor.busy)

    # -- running work ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on an inference thread once a slot is free."""
        return await self._executor.run(fn, *args)

    async def run_beside(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` for an admitted request outside the inference slots (decoding an
        upload, preparing), holding its place until it ends."""
        return await self._executor.run_beside(fn, *args)
