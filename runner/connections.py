"""Connection discipline uvicorn lacks, as a subclass of its h11 protocol.

uvicorn closes idle keep-alive connections but has no deadline for a request's line and
headers, no cap on open connections (each one a file descriptor), reads and discards the rest
of a refused request's body for as long as the client sends it, and drops a client that
half-closes after sending its request. This protocol adds:

- a header deadline: a connection that has not sent a whole request head within
  ``HEADER_TIMEOUT`` seconds of opening (or of its first byte after a keep-alive pause) is
  closed;
- a connection cap below the file-descriptor limit: past it, a connection waiting for a
  request head is closed to make room: one that never completed a request first (silent and
  slow ones), then the keep-alive one idle longest, so ``/health`` always gets in and a
  client's pooled connections outlive an attacker's; a new connection is refused only when
  every open one is serving a request;
- no draining: when an answer is sent before its request's body was read (a 401, a 413, an
  overload), the runner stops reading and closes, after a short bounded linger so the client
  still reads the answer;
- half-close: a client that shuts down its sending side after its request still gets the
  answer, and one that closed entirely is still noticed (see ``eof_received``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("runner.connections")

# What a refused request's client may still send while its answer drains, before the close.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 2.0
# When a client's end closes mid-request, interim answers probe whether it can still read:
# at most three, below the five Go's HTTP client accepts before a final answer.
PROBE_DELAYS = (0.0, 0.1, 1.0)
# File descriptors kept for the runner itself (models, logs, sockets to NVML, threads).
RESERVED_FDS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int


# Connections the kernel queues and asyncio accepts in one go, before the cap can close any:
# kept below RESERVED_FDS so a burst never runs the process out of file descriptors.
LISTEN_BACKLOG = 32


def raise_fd_limit() -> None:
    """The soft file-descriptor limit raised to the hard one (Docker's soft 1024 against a
    hard 524288 or more), so the connection cap, not the kernel, decides who is refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warning("could not raise the file-descriptor limit from %d to %d", soft, hard)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to leave ``RESERVED_FDS`` of the process's file-descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - RESERVED_FDS))


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``limits``; pass it as uvicorn's ``http``."""

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self._idle_since = 0.0
            self._served = False  # it has had an answer to a whole request
            self._header_timer: asyncio.TimerHandle | None = None
            self._client_eof = False
            self._lingering = False
            self._lingered = 0

        # -- the connection cap ------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._idle_since = self.loop.time()
            self._arm_header_timer()
            if len(self.connections) > limits.max_connections and not self._evict_one():
                log.warning(
                    "connection refused: %d open, every one serving a request (cap %d)",
                    len(self.connections) - 1,
                    limits.max_connections,
                )
                self._close()

        def _evict_one(self) -> bool:
            waiting = [
                c
                for c in self.connections
                if c is not self and isinstance(c, GuardedH11Protocol) and c._awaiting_head()
            ]
            if not waiting:
                return False
            oldest = min(waiting, key=lambda c: (c._served, c._idle_since))
            log.info(
                "closed a connection %s after %.1fs: %d open (cap %d)",
                "idle" if oldest._served else "without a request",
                self.loop.time() - oldest._idle_since,
                len(self.connections),
                limits.max_connections,
            )
            oldest._close()
            return True

        def _awaiting_head(self) -> bool:
            """No request in progress: idle, or still sending its request line and headers."""
            serving = self.cycle is not None and not self.cycle.response_complete
            return not serving and self.conn.their_state is h11.IDLE

        # -- the header deadline -----------------------------------------------------

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    limits.header_timeout, self._header_timeout
                )

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._awaiting_head() and not self.transport.is_closing():
                log.debug("closed a connection: no request head within %gs", limits.header_timeout)
                self._close()

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                self._lingered += len(data)
                if self._lingered > LINGER_BYTES:
                    self.transport.abort()
                return
            super().data_received(data)
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._arm_header_timer()  # a head in progress (or a pipelined one)
            else:
                self._disarm_header_timer()

        # -- refused bodies and half-closed clients ----------------------------------

        def on_response_complete(self) -> None:
            unread_body = self.conn.their_state is h11.SEND_BODY
            self._served, self._idle_since = True, self.loop.time()
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if unread_body:
                self._linger_then_close()
            elif self._client_eof:
                self._close()

        def _linger_then_close(self) -> None:
            """Stop reading the rest of the body: let the answer reach the client (closing at
            once would reset the connection under it), discard a bounded amount, close."""
            self._unset_keepalive_if_required()
            self._lingering = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self._close)

        def eof_received(self) -> bool | None:
            """The client shut down its sending side, or closed entirely: the two look alike.
            While its request runs, keep the socket open for the answer and probe with
            ``102 Processing`` (interim answers every HTTP/1.1 client skips): to a client
            that closed, the writes fail and the request is cancelled as before."""
            self._client_eof = True
            if self.cycle is None or self.cycle.response_complete:
                return None
            for delay in PROBE_DELAYS:
                self.loop.call_later(delay, self._probe)
            return True

        def _probe(self) -> None:
            cycle = self.cycle
            if cycle is None or cycle.response_started or self.transport.is_closing():
                return
            try:
                data = self.conn.send(h11.InformationalResponse(status_code=102, headers=[]))
            except h11.LocalProtocolError:
                return
            self.transport.write(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _close(self) -> None:
            self._disarm_header_timer()
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol
