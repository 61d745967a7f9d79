"""The ASGI gate in front of the app: request ids, auth, admission, body limits, logs, metrics.

Every request's metrics are recorded here, once, when it ends (``Metrics.record_request``).

It runs before FastAPI reads a body, so a request refused for its token or because the
runner is full costs nothing: no body is read, no model is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from runner.admission import AtCapacity
from runner.auth import check_bearer
from runner.cancellation import CancelScope
from runner.error_answers import error_answer
from runner.errors import (
    InferenceFailed,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    RunnerError,
)
from runner.json_bodies import JSON_BODIES_PATH, BodyLimits
from runner.logs import printable
from runner.memory import Trimmer
from runner.metrics import Metrics, RequestRecord
from runner.runtime import Runtime, Timings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/ready",
        "/version",
        "/hardware/info",
        "/hardware/stats",
        "/metrics",
        "/docs",
        "/openapi.json",
        JSON_BODIES_PATH,
    }
)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
SHUTDOWN_CUT_OFF = (
    "The runner shut down (SHUTDOWN_GRACE ended) before this request finished; send it elsewhere."
)
# Seconds a request body may take before its average rate is checked against MIN_BODY_RATE.
BODY_RATE_GRACE = 5.0
log = logging.getLogger("runner.requests")


CLIENT_CLOSED = 499  # logged and counted for requests whose client went away; never sent


class ClientGone(Exception):
    """The client disconnected before its answer: there is nobody to answer."""


def normalise(path: str) -> str:
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        runtime: Runtime,
        metrics: Metrics,
        route_path: str,
        declared: frozenset[int],
        body_limits: BodyLimits,
    ) -> None:
        self.app = app
        self.runtime = runtime
        self.metrics = metrics
        self.route_path = route_path
        self.declared = declared
        self.body_limits = body_limits
        self.trimmer = Trimmer(
            runtime.settings.memory_trim_bytes,
            metrics.memory_trims.inc,
            busy=lambda: not runtime.admission.idle,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given_id = headers.get("x-request-id", "")
        request_id = given_id if REQUEST_ID.fullmatch(given_id) else uuid.uuid4().hex[:16]
        # A live-runner orchestrator names the session it proxies for; its token is never logged.
        session = headers.get("livepeer-session-id", "")
        timings = Timings()
        scope.setdefault("state", {}).update(request_id=request_id, timings=timings)
        path = normalise(scope["path"])
        logged_path = printable(path)
        started = time.perf_counter()
        status = {"code": 500, "started": False, "answer_bytes": 0, "at_capacity": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.update(code=message["status"], started=True)
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                status["answer_bytes"] += len(message.get("body", b""))
            await send(message)

        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send_with_id)
            log.debug(
                "request id=%s %s %s status=%d",
                request_id,
                scope["method"],
                logged_path,
                status["code"],
            )
            return

        is_pipeline = path == self.route_path and scope["method"] == "POST"
        if is_pipeline:
            self.trimmer.activity()
        try:
            if self.runtime.settings.token is not None:
                check_bearer(headers.get("authorization"), self.runtime.settings.token)
            if not is_pipeline:
                await self.app(scope, receive, send_with_id)
                return
            await self._serve_pipeline(scope, receive, send_with_id, headers)
        except ClientGone:
            status["code"] = CLIENT_CLOSED
        except RunnerError as error:
            status["at_capacity"] = isinstance(error, AtCapacity)
            await self._refuse(error, send_with_id)
        except Exception:
            log.exception("request id=%s failed", request_id)
            if not status["started"]:
                await self._refuse(InferenceFailed("Internal server error."), send_with_id)
        finally:
            self._record(
                request_id,
                printable(scope["method"], 16),
                logged_path,
                status["code"],
                started,
                timings,
                is_pipeline,
                scope["state"].get("cancel"),
                printable(session, 64),
                status["at_capacity"],
            )
            if is_pipeline:
                moved = max(scope["state"].get("body_bytes", 0), status["answer_bytes"])
                self.trimmer.after_request(moved)

    async def _serve_pipeline(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        """Refuse at once when full; read the body without holding a place (a body trickling
        in must not keep legitimate requests out), bounded by ``MAX_BODIES_IN_TRANSIT``,
        ``MIN_BODY_RATE`` and ``BODY_TIMEOUT``; then take a place and run."""
        admission = self.runtime.admission
        admission.check_room()
        with admission.receiving_body():
            body = await self._read_body(receive, headers)
        if body is None:  # the client went away before sending its whole body
            raise ClientGone()
        with admission.place():
            scope["state"]["body_bytes"] = len(body)
            await self._run_until_disconnect(scope, body, receive, send)

    async def _run_until_disconnect(
        self, scope: Scope, body: bytes, receive: Receive, send: Send
    ) -> None:
        """Run the app; if the client goes away first, cancel the request: dropped from the
        queue if it waits there, stopped at the next step if its inference runs."""
        cancel = CancelScope()
        scope["state"]["cancel"] = cancel
        answered = asyncio.Event()
        gone = asyncio.Event()

        async def send_until_answered(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answered.is_set():
                gone.set()

        app = asyncio.ensure_future(self.app(scope, _replay(body, gone), send_until_answered))
        watcher = asyncio.ensure_future(watch())
        try:
            with self.runtime.admission.in_flight(cancel, app):
                await asyncio.wait({app, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if cancel.stopped_by == "shutdown" and not answered.is_set():
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await app
                    raise Overloaded(SHUTDOWN_CUT_OFF)
                if gone.is_set() and not app.done():
                    cancel.cancel()
                    app.cancel()
                    log.info(
                        "request id=%s cancelled: the client disconnected",
                        scope["state"]["request_id"],
                    )
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await app
                    raise ClientGone()
                await app
        finally:
            watcher.cancel()

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes | None:
        limit = self.body_limits.for_content_type(headers.get("content-type"))
        declared_length = headers.get("content-length", "")
        if declared_length.isdigit() and int(declared_length) > limit:
            raise PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        settings = self.runtime.settings
        clock = asyncio.get_running_loop().time
        started = clock()
        deadline = started + settings.body_timeout
        while True:
            now = clock()
            # A body trickling in holds a place: past a short grace it must keep a minimum
            # average rate, checked at least once a second.
            wait = deadline - now
            if settings.min_body_rate:
                wait = min(wait, max(started + BODY_RATE_GRACE - now, 1.0))
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
            except TimeoutError:
                self._check_body_progress(size, started, clock())
                continue
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            self._check_body_progress(size, started, clock())

    def _check_body_progress(self, size: int, started: float, now: float) -> None:
        settings = self.runtime.settings
        elapsed = now - started
        if elapsed >= settings.body_timeout:
            raise InvalidInput(
                f"Request body not received within {settings.body_timeout:g} seconds."
            )
        rate = settings.min_body_rate
        if rate and elapsed > BODY_RATE_GRACE and size < rate * elapsed:
            raise InvalidInput(
                f"Request body arriving too slowly: {size} bytes in {elapsed:.0f} seconds; "
                f"the minimum is {rate} bytes a second after the first {BODY_RATE_GRACE:g}."
            )

    async def _refuse(self, error: RunnerError, send: Send) -> None:
        if isinstance(error, InvalidInput | PayloadTooLarge):
            log.info("refused: %s", error.message)
        answer = error_answer(error, self.declared, self.runtime.settings)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer.body)).encode()),
                    *((k.encode(), v.encode()) for k, v in answer.headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    def _record(
        self,
        request_id: str,
        method: str,
        path: str,
        code: int,
        started: float,
        timings: Timings,
        is_pipeline: bool,
        cancel: CancelScope | None,
        session: str,
        at_capacity: bool,
    ) -> None:
        total = time.perf_counter() - started
        # A request whose client left is dropped whatever stage it had reached.
        stopped_by = "disconnect" if code == CLIENT_CLOSED else cancel and cancel.stopped_by
        self.metrics.record_request(
            RequestRecord(
                route=path if is_pipeline else None,
                status=code,
                seconds=total,
                queue_seconds=timings.queue,
                inference_seconds=timings.inference,
                stopped_by=stopped_by or None,
                at_capacity=at_capacity,
            )
        )
        log.info(
            "request id=%s%s %s %s status=%d total_ms=%.1f queue_ms=%.1f inference_ms=%.1f "
            "encode_ms=%.1f",
            request_id,
            f" session={session}" if session else "",
            method,
            path,
            code,
            total * 1000,
            timings.queue * 1000,
            timings.inference * 1000,
            timings.encode * 1000,
        )


def _replay(body: bytes, gone: asyncio.Event) -> Receive:
    """A ``receive`` that hands the app the already-read body, then waits for the client to
    go away (the gate's watcher is the one reader of the real channel)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    return replay
