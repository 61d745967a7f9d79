"""Giving freed memory back to the system after large requests (glibc's ``malloc_trim``).

glibc keeps what a large request freed in its heaps for later allocations, so the process's
resident memory stays near its peak, and a container's memory limit counts it.
``malloc_trim(0)`` returns the free pages. Where the C library has no ``malloc_trim``
(musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("runner")


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        found = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return None
    found.argtypes = [ctypes.c_size_t]
    found.restype = ctypes.c_int
    return found


_MALLOC_TRIM = _find_malloc_trim()


def can_trim() -> bool:
    return _MALLOC_TRIM is not None


def trim() -> bool:
    """Return the heaps' free memory to the system (ctypes releases the GIL meanwhile);
    False where the platform cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class Trimmer:
    """Trims after a request that sent or received at least ``threshold`` bytes (0: never),
    on a thread of its own, one trim at a time, once the runner has been quiet for
    ``quiet`` seconds.

    ``malloc_trim`` holds each heap's lock while it walks that heap (hundreds of
    milliseconds for a large one), and the event loop's own allocations wait for the main
    heap's: a trim while requests arrive stalled ``/health`` for 260 ms under the attack
    benchmark's refused large bodies. So the trim waits until no pipeline request is in
    flight or being read and none has come or gone for ``quiet`` seconds."""

    def __init__(
        self,
        threshold: int,
        on_trim: Callable[[], None] = lambda: None,
        busy: Callable[[], bool] = lambda: False,
        quiet: float = 1.0,
    ) -> None:
        self.threshold = threshold
        self.on_trim = on_trim
        self.busy = busy
        self.quiet = quiet
        self._lock = threading.Lock()
        self._running = False
        self._last_activity = time.monotonic()

    def activity(self) -> None:
        """A pipeline request came or went."""
        self._last_activity = time.monotonic()

    def after_request(self, size: int) -> None:
        self.activity()
        if not self.threshold or size < self.threshold or not can_trim():
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._trim, name="malloc-trim", daemon=True).start()

    def _wait_for_quiet(self) -> None:
        while True:
            quiet_for = time.monotonic() - self._last_activity
            if quiet_for >= self.quiet and not self.busy():
                return
            time.sleep(max(0.05, self.quiet - quiet_for))

    def _trim(self) -> None:
        try:
            self._wait_for_quiet()
            trim()
            self.on_trim()
        except Exception:  # never a request's concern
            log.exception("returning freed memory to the system failed")
        finally:
            with self._lock:
                self._running = False
