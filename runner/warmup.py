"""The warm-up under the LOADING budget.

go-livepeer's worker (ai/worker/docker.go, watchContainer) counts a failure at each poll once
a container has said LOADING for more than 3 minutes and destroys it after two, whatever it
is doing. So the warm-up (with SFAST, the compiling) runs on a thread of its own: the loader
waits for it until the budget's end, and a warm-up still running then goes on in the
background while the runner serves (the pipeline runs requests uncompiled meanwhile).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("runner")


def process_started() -> float:
    """When this process started, on the ``time.monotonic`` clock; now where the system
    does not say (the budget then counts from the call)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, after comm
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic()
    return time.monotonic() - max(0.0, age)


class WarmUp:
    """``warmup`` run on its own thread; ``wait`` says whether it ended by a deadline."""

    def __init__(
        self, warmup: Callable[[], None], failed_in_background: Callable[[Exception], None]
    ) -> None:
        self._warmup = warmup
        self._failed_in_background = failed_in_background
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: Exception | None = None
        self._in_background = False
        self._started = 0.0

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def start(self) -> None:
        self._started = time.perf_counter()
        threading.Thread(target=self._run, name="warm-up", daemon=True).start()

    def wait(self, deadline: float) -> bool:
        """True when the warm-up ended by ``deadline`` (``time.monotonic``), raising what it
        raised; False when it goes on in the background."""
        self._done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if not self._done.is_set():
                self._in_background = True
                return False
        if self._error is not None:
            raise self._error
        return True

    def _run(self) -> None:
        error = None
        try:
            self._warmup()
        except Exception as exc:
            error = exc
        with self._lock:
            self._error = error
            self._done.set()
            if not self._in_background:
                return  # the loader reports it
        took = time.perf_counter() - self._started
        if error is None:
            log.info("warm-up finished in the background in %.1fs", took)
            return
        log.error(
            "error: the warm-up failed in the background after %.1fs (%s: %s); serving on",
            took,
            type(error).__name__,
            error,
            exc_info=error,
        )
        self._failed_in_background(error)
