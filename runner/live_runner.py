"""Registration with a go-livepeer orchestrator as a dynamic live runner (LIVE_RUNNER_*).

The protocol, as go-livepeer 0.9 serves it (doc/live-runner.md "Dynamic runner protocol";
ai/runner/live_runner.go ``LiveRunnerRegistry.Heartbeat`` and ``Unregister``; the handlers in
server/ai_http.go): ``POST /runners/heartbeat`` with ``Authorization: <orchSecret>`` registers
and answers a ``heartbeat_secret`` that authorizes the heartbeats after it, at the returned
``heartbeat_interval`` (a Go duration); an orchestrator that no longer knows the runner (it
restarted) answers 401 "invalid registration authorization" and the runner registers again
with the orchSecret; an expired runner gets 404 until the orchestrator drops it;
``POST /runners/{id}/unregister`` with the heartbeat secret leaves. Only status "" or "ready"
is discoverable (``isReadyStatus``); go-livepeer's own other value is "unavailable".

The runner speaks the protocol itself rather than through the network's SDK
(livepeer-gateway): the SDK pulls protobuf>=6, which the Parler image's protobuf<5 excludes,
its first registration raises when the orchestrator is unreachable, and its status is fixed
when it is built. This client runs as a task on the server's loop: it never blocks a request,
never raises, and logs each failure once when it starts, not at every retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

import httpx

from runner import hardware
from runner.errors import ModelUnavailable
from runner.runtime import Runtime
from runner.settings import Settings

log = logging.getLogger("runner.live_runner")

READY = "ready"
UNAVAILABLE = "unavailable"
MODE = "single-shot"
DEFAULT_INTERVAL = 5.0  # go-livepeer's defaultLiveRunnerHeartbeatInterval
MIN_INTERVAL = 0.1
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
WATCH_EVERY = 0.1  # how often readiness is looked at between heartbeats
UNREGISTER_TIMEOUT = 3.0
TIMEOUT = httpx.Timeout(3.0, connect=2.0)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def go_duration(text: object) -> float | None:
    """Seconds in a Go ``time.Duration`` string ("5s", "1m30s", "500ms"), None if it is not one."""
    if not isinstance(text, str):
        return None
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    parts = _DURATION_PART.findall(body)
    if not parts or "".join(number + unit for number, unit in parts) != body:
        return None
    return sign * sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def status_for(readiness: str | None) -> str | None:
    """The live-runner status for the runtime's readiness: "ready" only when a request would
    be taken now (what ``/ready`` answers 200 for); None while draining (the runner leaves)."""
    if readiness is None:
        return READY
    if readiness == "DRAINING":
        return None
    return UNAVAILABLE


def process_gpu(settings: Settings) -> dict[str, Any] | None:
    """The GPU for the registration (NVML's first device: ai-runner containers are given one),
    or None on CPU and where NVML sees none."""
    if settings.device == "cpu":
        return None
    gpus = hardware.gpu_info()
    if not gpus:
        return None
    gpu = gpus[min(gpus)]
    return {"id": gpu.id, "name": gpu.name, "vram_mb": gpu.memory_total // (1024 * 1024)}


def _price(settings: Settings) -> int | float:
    price = settings.live_runner_price
    return int(price) if price == price.to_integral_value() else float(price)


def _transport_failure(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "the connection failed"
    return "the exchange broke off"


class LiveRunner:
    """The runner's registration with one orchestrator, for the life of the server."""

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        assert settings.live_runner_orchestrator and settings.live_runner_secret
        self.settings = settings
        self.runtime = runtime
        self.orchestrator = settings.live_runner_orchestrator
        self.runner_id = ""
        self.interval = DEFAULT_INTERVAL
        self.announced: str | None = None  # the status the orchestrator holds; None: unknown
        self._secret = settings.live_runner_secret.get_secret_value()
        self._heartbeat_secret: str | None = None
        self._backoff = BACKOFF_FIRST
        self._trouble: str | None = None  # the kind of the failure going on, logged once
        self._gpu: dict[str, Any] | None = None
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._left = False

    @property
    def registered(self) -> bool:
        return self._heartbeat_secret is not None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live-runner")

    async def leave(self, timeout: float = UNREGISTER_TIMEOUT) -> None:
        """Stop heartbeating and unregister (bounded by ``timeout``); safe to call twice."""
        if self._left:
            return
        self._left = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        try:
            if self.registered:
                await asyncio.wait_for(self._unregister(), timeout)
        except Exception as exc:  # the drain goes on whatever happens here
            if isinstance(exc, TimeoutError):
                failure = "it did not answer in time"
            elif isinstance(exc, httpx.HTTPError):
                failure = _transport_failure(exc)
            else:
                failure = f"unexpectedly: {type(exc).__name__}"
            log.warning(
                "live runner: could not unregister %s from %s (%s); it drops the runner "
                "when its heartbeat TTL passes",
                self.runner_id,
                self.orchestrator,
                failure,
            )
        finally:
            if self._client is not None:
                await self._client.aclose()

    async def _unregister(self) -> None:
        assert self._client is not None
        url = f"{self.orchestrator}/runners/{self.runner_id}/unregister"
        headers = self._headers(self._heartbeat_secret)
        del headers["Content-Type"]  # an empty body, as the SDK's close() sends
        answer = await self._client.post(url, headers=headers)
        if answer.status_code == 204:
            log.info("live runner: unregistered %s from %s", self.runner_id, self.orchestrator)
        else:
            log.warning(
                "live runner: unregistering %s from %s was answered %d: %s",
                self.runner_id,
                self.orchestrator,
                answer.status_code,
                self._quote(answer.text),
            )
        self._heartbeat_secret = None
        self.announced = None

    # -- the heartbeat loop ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.runtime.wait_ready()
        except ModelUnavailable:
            log.warning(
                "live runner: not registering with %s: the model failed to load",
                self.orchestrator,
            )
            return
        self._gpu = await asyncio.to_thread(process_gpu, self.settings)
        delay, status = 0.0, UNAVAILABLE
        while True:
            await self._wait(delay, status)
            readiness = self.runtime.readiness()
            status = status_for(readiness)
            if status is None:
                return  # draining: leave() unregisters
            if not self.registered and status != READY:
                delay = 3600.0  # registers once a request would be taken
                continue
            try:
                delay = await self._beat(status, readiness)
            except Exception:  # never let the registration take the runner down
                self._fail(
                    "unexpected",
                    "live runner: the heartbeat failed unexpectedly",
                    logging.ERROR,
                    exc_info=True,
                )
                delay = self._next_backoff()

    async def _wait(self, seconds: float, status: str) -> None:
        """Sleep ``seconds``, or less when the status to announce is no longer ``status``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            if status_for(self.runtime.readiness()) != status:
                return
            await asyncio.sleep(min(WATCH_EVERY, left))

    async def _beat(self, status: str, readiness: str | None) -> float:
        """One heartbeat (a registration when not registered); the seconds to the next."""
        registering = not self.registered
        url = f"{self.orchestrator}/runners/heartbeat"
        body = json.dumps(self._payload(status)).encode()
        auth = self._secret if registering else self._heartbeat_secret
        assert self._client is not None
        try:
            answer = await self._client.post(url, content=body, headers=self._headers(auth))
        except httpx.HTTPError as exc:
            self._fail(
                "unreachable",
                f"live runner: orchestrator {self.orchestrator} unreachable "
                f"({_transport_failure(exc)}); trying again with backoff",
            )
            return self._next_backoff()
        if answer.status_code == 200:
            return self._accepted(answer, status, readiness, registering)
        text = self._quote(answer.text)
        if answer.status_code == 401 and not registering:
            log.info(
                "live runner: %s no longer knows runner %s (401 %s); registering again",
                self.orchestrator,
                self.runner_id,
                text,
            )
            self._heartbeat_secret = None
            self.announced = None
            return 0.0
        if answer.status_code == 401:
            self._fail(
                "refused",
                f"live runner: error: {self.orchestrator} refused the registration (401 {text}): "
                "is LIVE_RUNNER_SECRET its -orchSecret? Trying again with backoff",
                level=logging.ERROR,
            )
            return self._next_backoff()
        if answer.status_code == 404 and not registering:
            self._fail(
                "expired",
                f"live runner: {self.orchestrator} lets runner {self.runner_id}'s registration "
                f"expire (404 {text}); heartbeating until it can register again",
            )
            return self.interval
        level = logging.ERROR if answer.status_code == 400 else logging.WARNING
        self._fail(
            f"answered {answer.status_code} {text}",
            f"live runner: {'error: ' if level == logging.ERROR else ''}{self.orchestrator} "
            f"answered the {'registration' if registering else 'heartbeat'} "
            f"{answer.status_code}: {text}; trying again with backoff",
            level=level,
        )
        return self._next_backoff()

    def _accepted(
        self, answer: httpx.Response, status: str, readiness: str | None, registering: bool
    ) -> float:
        try:
            data = answer.json()
            runner_id = data["runner_id"]
            secret = data.get("heartbeat_secret") if registering else self._heartbeat_secret
            if not isinstance(runner_id, str) or not runner_id or not isinstance(secret, str):
                raise ValueError("no runner_id or heartbeat_secret")
        except (ValueError, KeyError, TypeError):
            self._fail(
                "bad answer",
                f"live runner: {self.orchestrator} answered the heartbeat with something "
                "other than go-livepeer's answer; trying again with backoff",
            )
            return self._next_backoff()
        interval = go_duration(data.get("heartbeat_interval"))
        self.interval = (
            max(MIN_INTERVAL, interval) if interval and interval > 0 else DEFAULT_INTERVAL
        )
        self.runner_id = runner_id
        self._heartbeat_secret = secret
        self._backoff = BACKOFF_FIRST
        if self._trouble is not None:
            log.info("live runner: %s answers again", self.orchestrator)
            self._trouble = None
        if registering:
            log.info(
                "live runner: registered with %s as %s (app %s, %s, capacity %d, "
                "heartbeat every %gs)",
                self.orchestrator,
                runner_id,
                self.settings.live_runner_app,
                MODE,
                self.settings.capacity,
                self.interval,
            )
        if status != self.announced:
            if status == READY:
                log.info("live runner: discoverable (status ready)")
            else:
                log.info("live runner: not discoverable (status %s: %s)", status, readiness)
        self.announced = status
        return self.interval

    # -- pieces ---------------------------------------------------------------------------

    def _payload(self, status: str) -> dict[str, Any]:
        """The fields the SDK's ``LiveRunnerRegistration._payload`` sends, in go-livepeer's
        ``LiveRunnerHeartbeatRequest`` names."""
        settings = self.settings
        payload: dict[str, Any] = {
            "runner_url": settings.live_runner_url,
            "app": settings.live_runner_app,
            "mode": MODE,
            "capacity": settings.capacity,
            "price_info": {
                "price": _price(settings),
                "currency": "usd",
                "unit": settings.live_runner_unit,
            },
            "session_ids": [],
            "version": settings.version,
            "status": status,
        }
        if self.runner_id:
            payload["runner_id"] = self.runner_id
        if self._gpu:
            payload["gpu"] = self._gpu
        return payload

    def _headers(self, auth: str | None) -> dict[str, str]:
        return {
            "Authorization": auth or "",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"ai-runner/{self.settings.version}",
        }

    def _quote(self, text: str) -> str:
        """An orchestrator's answer, bounded and with no credential in it, for the log."""
        quoted = " ".join(text.split())[:200]
        for secret in (self._secret, self._heartbeat_secret):
            if secret:
                quoted = quoted.replace(secret, "***")
        return repr(quoted)

    def _fail(
        self, kind: str, message: str, level: int = logging.WARNING, exc_info: bool = False
    ) -> None:
        """Log a failure when it starts or changes, not at each retry."""
        if kind != self._trouble:
            self._trouble = kind
            log.log(level, "%s", message, exc_info=exc_info)

    def _next_backoff(self) -> float:
        delay = self._backoff
        self._backoff = min(BACKOFF_CAP, self._backoff * 2)
        return delay
