"""Bounded admission and the inference thread pool.

A request is *admitted* (it holds a place) from the moment its headers arrive until its
answer is sent; at most ``capacity + max_queue`` hold a place, the rest are refused at once.
An inference whose client left keeps its place until its thread ends (an *orphan*): the
thread cannot be killed, so the device stays busy and /health must say so.
Admitted requests then wait, in order, for one of ``capacity`` slots, and the inference runs
on a worker thread so the event loop keeps answering ``/health``. Work a request does before
it waits for a slot (decoding its uploads) runs on threads of its own, one per place at most,
and holds the request's place in the same way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class InferenceExecutor:
    def __init__(self, capacity: int, max_queue: int) -> None:
        self.capacity = capacity
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(capacity, thread_name_prefix="inference")
        # A thread for every place: each place is a request decoding at most one upload or
        # preparing (a hub fetch) at a time, or an orphan; so work submitted here never waits.
        self._beside = ThreadPoolExecutor(capacity + max_queue, thread_name_prefix="beside")
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._orphans = 0
        self._slots: asyncio.Semaphore | None = None

    @property
    def admitted(self) -> int:
        """Requests accepted and not yet answered (waiting or running)."""
        return self._admitted

    @property
    def busy(self) -> int:
        """Places held: admitted requests, and inferences still running for clients that left."""
        return self._admitted + self._orphans

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return max(0, self._admitted - self._running)

    def has_room(self) -> bool:
        """Whether a request would be admitted now (nothing is taken)."""
        return self._admitted + self._orphans < self.capacity + self.max_queue

    def try_admit(self) -> bool:
        with self._lock:
            if self._admitted + self._orphans >= self.capacity + self.max_queue:
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on an inference thread once a slot is free.

        The slot is given back when the thread finishes, not when the awaiting task does:
        a cancelled request never lets more than ``capacity`` inferences run at once.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.capacity)
        loop = asyncio.get_running_loop()
        await self._slots.acquire()
        with self._lock:
            self._running += 1
        try:
            future: Future[T] = self._pool.submit(fn, *args)
        except BaseException:
            self._finish(self._slots)
            raise

        slots = self._slots
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finish, slots))
        return await self._await_holding_place(future, loop)

    async def run_beside(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` for an admitted request on a thread outside the inference slots
        (decoding an upload, preparing): at once, and holding the request's place until it ends."""
        loop = asyncio.get_running_loop()
        return await self._await_holding_place(self._beside.submit(fn, *args), loop)

    async def _await_holding_place(self, future: Future[T], loop: asyncio.AbstractEventLoop) -> T:
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():  # the thread runs on: it keeps a place until it ends
                with self._lock:
                    self._orphans += 1
                future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._orphan_done))
            raise

    def _orphan_done(self) -> None:
        with self._lock:
            self._orphans -= 1

    def _finish(self, slots: asyncio.Semaphore) -> None:
        with self._lock:
            self._running -= 1
        slots.release()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._beside.shutdown(wait=False, cancel_futures=True)
