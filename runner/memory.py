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
    on a thread of its own, one trim at a time."""

    def __init__(self, threshold: int, on_trim: Callable[[], None] = lambda: None) -> None:
        self.threshold = threshold
        self.on_trim = on_trim
        self._lock = threading.Lock()
        self._running = False

    def after_request(self, size: int) -> None:
        if not self.threshold or size < self.threshold or not can_trim():
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._trim, name="malloc-trim", daemon=True).start()

    def _trim(self) -> None:
        try:
            trim()
            self.on_trim()
        except Exception:  # never a request's concern
            log.exception("returning freed memory to the system failed")
        finally:
            with self._lock:
                self._running = False
