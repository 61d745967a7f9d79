"""A stand-in for a go-livepeer 0.9 orchestrator's live-runner endpoints, on 127.0.0.1.

Written from go-livepeer's doc/live-runner.md ("Dynamic runner protocol", "HTTP API") and
the code it describes:

- ``POST /runners/heartbeat``: server/ai_http.go ``LiveRunnerHeartbeat`` decodes the body with
  ``json.NewDecoder(r.Body).Decode`` into ai/runner/live_runner.go
  ``LiveRunnerHeartbeatRequest`` (Go's decoding, emulated by :func:`go_decode`: unknown
  fields ignored, keys matched case-insensitively, every value of its Go type, data after the
  first value ignored) and hands it to ``LiveRunnerRegistry.Heartbeat``: an unknown runner
  needs the orchSecret (401 "invalid registration authorization") and gets a
  ``heartbeat_secret`` derived from a seed of its own (``deriveSecret``); a known one needs
  that secret (401 "invalid heartbeat authorization"), and gets 404 "runner not found" once
  past the TTL (``liveRunnerExpiredLocked``) until the expiry loop (``expiryLoop``, every
  heartbeat interval) drops it. ``normalizeHeartbeat`` refuses (400) a ``runner_url`` that is
  not an absolute http(s) URL, an empty or untrimmed ``app``, metadata over 1,024 bytes, a
  status not lowercase and trimmed, an unknown mode, a negative capacity, and on chain a
  ``price_info`` without a positive USD price in hour, 720p or fixed
  (``normalizeLiveRunnerPriceInfo``).
- ``POST /runners/{id}/unregister``: ``Unregister`` (204; 404 unknown or expired; 401 "invalid
  authorization" without the heartbeat secret).
- ``GET /discovery``: ``DiscoverLiveRunners`` over ``Runners``: only live runners whose status
  is "" or "ready" (``isReadyStatus``).
- ``ANY /apps/{id}/app/{path...}``: ``ProxyLiveRunnerSingleShot``: 404 unless the runner is
  ready, 400 unless it is single-shot, a session reserved for the one request (503 "no
  capacity available for runner" past ``capacity``, ``ReserveSession``), then
  ``proxyLiveRunner``: the path appended to ``runner_url``, method, query, headers and body
  kept, ``Livepeer-Runner-Route``, ``Livepeer-Session-Id``, ``Livepeer-Session-Token`` and
  ``Livepeer-Session-Control`` set, 502 when the runner cannot be reached.

Errors are written as go-livepeer's ``respondWithError`` writes them (``http.Error``: plain
text, the message and a newline). Left out: the o2r trickle channel of the first answer (no
trickle server here; go-livepeer sends it, a single-shot runner has no use for it), static
runners, persistent sessions and payments (prices are validated as on chain, but not
converted, and no payment is asked for). :meth:`forget` is an orchestrator restart: every
runner is forgotten. Each connection is closed after one answer, so once stopped the
orchestrator is down for every caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
MAX_METADATA_BYTES = 1024
INT64 = (-(2**63), 2**63 - 1)
NUMBER_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class GoDecodeError(Exception):
    """What Go's encoding/json would refuse; the message is close to Go's."""


class _FloatLiteral(str):
    """A JSON number with a fraction or exponent, kept as written (Go's ``json.Number``)."""


# The Go struct LiveRunnerHeartbeatRequest (ai/runner/live_runner.go): JSON name -> Go type.
HEARTBEAT_FIELDS = {
    "runner_id": "string",
    "label": "string",
    "proxy": "bool",
    "runner_url": "string",
    "version": "string",
    "metadata": "string",
    "status": "string",
    "mode": "string",
    "gpu": "gpu",
    "app": "string",
    "capacity": "int",
    "price_info": "price_info",
    "session_ids": "[]string",
}
PRICE_FIELDS = {"price": "json.Number", "currency": "string", "unit": "string"}
GPU_FIELDS = {"id": "string", "name": "string", "vram_mb": "int"}


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, _FloatLiteral)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _zero(go_type: str) -> object:
    if go_type == "price_info":
        return {name: _zero(kind) for name, kind in PRICE_FIELDS.items()}
    return {"string": "", "bool": False, "int": 0, "json.Number": "", "[]string": []}.get(go_type)


def _decode_value(value: object, go_type: str, where: str) -> object:
    """One value as Go stores it in a field of ``go_type``; null leaves the zero value."""
    if value is None:
        return _zero(go_type)
    mismatch = GoDecodeError(
        f"json: cannot unmarshal {_kind(value)} into Go struct field {where} of type {go_type}"
    )
    if go_type == "string":
        if not isinstance(value, str) or isinstance(value, _FloatLiteral):
            raise mismatch
        return str(value)
    if go_type == "bool":
        if not isinstance(value, bool):
            raise mismatch
        return value
    if go_type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise mismatch
        if not INT64[0] <= value <= INT64[1]:
            raise GoDecodeError(f"json: cannot unmarshal number {value} into Go value {where}")
        return value
    if go_type == "json.Number":
        if isinstance(value, (int, _FloatLiteral)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):  # a string holding a number literal is a Number too
            if not NUMBER_LITERAL.fullmatch(value):
                raise GoDecodeError(
                    f"json: invalid number literal, trying to unmarshal {json.dumps(value)} "
                    "into Number"
                )
            return value
        raise mismatch
    if go_type == "[]string":
        if not isinstance(value, list):
            raise mismatch
        return [_decode_value(item, "string", where) for item in value]
    if go_type == "price_info":
        if not isinstance(value, dict):
            raise mismatch
        return _decode_struct(value, PRICE_FIELDS, where)
    if go_type == "gpu":
        # LiveRunnerGPU.UnmarshalJSON: an integer is a device index, else the object.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"id": str(value)}
        if not isinstance(value, dict):
            raise GoDecodeError(
                f"json: cannot unmarshal {_kind(value)} into Go value of type runner.gpuAlias"
            )
        return _decode_struct(value, GPU_FIELDS, "gpuAlias")
    raise AssertionError(go_type)


def _decode_struct(obj: dict, fields: dict[str, str], where: str) -> dict[str, Any]:
    """Go's struct decoding: unknown keys ignored, a key matched exactly or else
    case-insensitively."""
    decoded: dict[str, Any] = {name: _zero(kind) for name, kind in fields.items()}
    for key, value in obj.items():
        name = key if key in fields else key.lower() if key.lower() in fields else None
        if name is not None:
            decoded[name] = _decode_value(value, fields[name], f"{where}.{name}")
    return decoded


def _no_constant(name: str) -> object:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def go_decode(body: bytes) -> dict[str, Any]:
    """``json.NewDecoder(body).Decode(&LiveRunnerHeartbeatRequest{})`` as Go does it."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise GoDecodeError("EOF")
    decoder = json.JSONDecoder(parse_float=_FloatLiteral, parse_constant=_no_constant)
    try:
        value, _ = decoder.raw_decode(text)  # what follows the first value is not read
    except ValueError as exc:
        raise GoDecodeError(str(exc)) from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise GoDecodeError(
            f"json: cannot unmarshal {_kind(value)} into Go value of type "
            "runner.LiveRunnerHeartbeatRequest"
        )
    return _decode_struct(value, HEARTBEAT_FIELDS, "LiveRunnerHeartbeatRequest")


def go_duration_text(seconds: float) -> str:
    """Go's ``time.Duration.String()``: "500ms", "5s", "1m30s"."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest:g}s"
    hours, minutes = divmod(int(minutes), 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{rest:g}s"


def _random_id(prefix: str) -> str:
    """``prefix`` and 5 random bytes in lower-case base32, as live_runner.go's ``randomStr``."""
    return prefix + base64.b32encode(secrets.token_bytes(5)).decode().rstrip("=").lower()


def derive_secret(seed: bytes, label: str) -> str:
    """live_runner.go ``deriveSecret``: HMAC-SHA256 of the label under the runner's seed."""
    digest = hmac.new(seed, label.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _absolute_http_url(value: str) -> bool:
    """Go's ``url.ParseRequestURI`` with a host and an http(s) scheme."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


def normalize_price(price_info: dict[str, Any]) -> dict[str, Any]:
    """live_runner.go ``normalizeLiveRunnerPriceInfo``."""
    price = price_info["price"].strip()
    if not price:
        raise Refused(400, "price_info.price is required")
    try:
        positive = Fraction(price) > 0  # big.Rat.SetString
    except (ValueError, ZeroDivisionError):
        positive = False
    if not positive:
        raise Refused(400, "price_info.price must be a positive decimal")
    currency = price_info["currency"].strip().lower() or "usd"
    if currency != "usd":
        raise Refused(400, "price_info.currency must be usd")
    unit = price_info["unit"].strip().lower() or "hour"
    if unit not in ("hour", "720p", "fixed"):
        raise Refused(400, "price_info.unit must be hour, 720p, or fixed")
    return {**price_info, "currency": currency, "unit": unit}


@dataclass
class Registered:
    runner_id: str
    seed: bytes
    request: dict[str, Any]
    last_heartbeat: float
    sessions: dict[str, float] = field(default_factory=dict)
    removed: bool = False

    @property
    def heartbeat_secret(self) -> str:
        return derive_secret(self.seed, "heartbeat")

    def session_token(self, session_id: str) -> str:
        return derive_secret(self.seed, f"session:{session_id}")

    @property
    def ready(self) -> bool:
        return self.request["status"] in ("", "ready")


class StandInOrchestrator:
    """Serves until stopped; ``events`` records what happened, in order, as tuples."""

    def __init__(
        self,
        secret: str = "stand-in-orch-secret",
        *,
        interval: float = 0.5,
        ttl: float = 2.0,
        port: int = 0,
        onchain: bool = True,
        on_registration: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.secret = secret
        self.on_registration = on_registration  # called with each request the orchSecret signs
        self.interval = interval
        self.ttl = ttl
        self.onchain = onchain
        self.runners: dict[str, Registered] = {}
        self.events: list[tuple] = []
        self.issued: list[str] = []  # every heartbeat secret handed out
        self.dropping = True  # False: expired runners stay (answered 404) until set again
        self.proxied: list[dict[str, Any]] = []  # what the proxy sent each runner
        self.lock = threading.Lock()
        self._stopped = threading.Event()
        orchestrator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def handle_one_request(self) -> None:
                super().handle_one_request()
                self.close_connection = True

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):
                    return lambda: orchestrator._route(self, name[3:])
                raise AttributeError(name)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._expire, daemon=True),
        ]
        self._proxy_client = httpx.Client(timeout=httpx.Timeout(300.0, connect=3.0))

    def __enter__(self) -> StandInOrchestrator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._proxy_client.close()

    # -- what tests look at ---------------------------------------------------------------

    def forget(self) -> None:
        """An orchestrator restart: no runner is known any more."""
        with self.lock:
            self.runners.clear()
            self.events.append(("forgot",))

    def discovery(self) -> list[dict[str, Any]]:
        """``GET /discovery``'s runners: ready ones within their TTL."""
        now = time.monotonic()
        with self.lock:
            return [
                self._discovery_entry(runner)
                for runner in self.runners.values()
                if not self._expired(runner, now) and runner.ready
            ]

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for event in self.events if event[0] == kind)

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"the stand-in orchestrator never saw {what}: {self.events}")
            time.sleep(0.02)

    def sessions_in_use(self) -> int:
        with self.lock:
            return sum(len(runner.sessions) for runner in self.runners.values())

    # -- the registry ---------------------------------------------------------------------

    def _expired(self, runner: Registered, now: float) -> bool:
        return now - runner.last_heartbeat > self.ttl

    def _expire(self) -> None:
        while not self._stopped.wait(self.interval):
            if not self.dropping:
                continue
            now = time.monotonic()
            with self.lock:
                for runner_id, runner in list(self.runners.items()):
                    if self._expired(runner, now):
                        runner.removed = True
                        del self.runners[runner_id]
                        self.events.append(("expired", runner_id))

    def _normalize(self, runner_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """live_runner.go ``normalizeHeartbeat``."""
        if not _absolute_http_url(request["runner_url"]):
            raise Refused(400, "invalid runner_url")
        app = request["app"]
        if not app or app != app.strip():
            raise Refused(400, "app must be trimmed")
        metadata = request["metadata"]
        if len(metadata.encode()) > MAX_METADATA_BYTES:
            raise Refused(400, f"metadata must be at most {MAX_METADATA_BYTES} bytes")
        if "\ufffd" in metadata:
            raise Refused(400, "metadata must not contain Unicode replacement character U+FFFD")
        if request["status"] != request["status"].strip().lower():
            raise Refused(400, "status must be lowercase and trimmed")
        aliases = {"": "persistent", "single_shot": "single-shot"}
        mode = aliases.get(request["mode"], request["mode"])
        if mode not in ("persistent", "single-shot"):
            raise Refused(400, 'mode must be "persistent" or "single-shot"')
        if request["capacity"] < 0:
            raise Refused(400, "capacity must be >= 0")
        normalized = {**request, "runner_id": runner_id, "mode": mode}
        normalized["capacity"] = request["capacity"] or 1
        if self.onchain:
            normalized["price_info"] = normalize_price(request["price_info"])
        return normalized

    def heartbeat(self, request: dict[str, Any], auth: str) -> dict[str, Any]:
        """``LiveRunnerRegistry.Heartbeat``."""
        runner_id = request["runner_id"].strip() or _random_id("runner_")
        request = self._normalize(runner_id, request)
        bootstrap = hmac.compare_digest(auth.encode(), self.secret.encode())
        if self.on_registration is not None and bootstrap:
            self.on_registration(request)
        answer = {
            "runner_id": runner_id,
            "orchestrator": self.url,
            "heartbeat_interval": go_duration_text(self.interval),
            "heartbeat_ttl": go_duration_text(self.ttl),
        }
        with self.lock:
            runner = self.runners.get(runner_id)
            if runner is None:
                if not self.secret:
                    raise Refused(404, "dynamic live runner registration is disabled")
                if not hmac.compare_digest(auth.encode(), self.secret.encode()):
                    self.events.append(("refused", 401, "registration"))
                    raise Refused(401, "invalid registration authorization")
                runner = Registered(runner_id, secrets.token_bytes(32), request, time.monotonic())
                self.runners[runner_id] = runner
                self.issued.append(runner.heartbeat_secret)
                self.events.append(("registered", runner_id, request["status"]))
                return {**answer, "heartbeat_secret": runner.heartbeat_secret, "session_ids": []}
            if runner.removed or self._expired(runner, time.monotonic()):
                self.events.append(("refused", 404, runner_id))
                raise Refused(404, "runner not found")
            if not hmac.compare_digest(auth.encode(), runner.heartbeat_secret.encode()):
                self.events.append(("refused", 401, runner_id))
                raise Refused(401, "invalid heartbeat authorization")
            runner.request = request
            runner.last_heartbeat = time.monotonic()
            self.events.append(("heartbeat", runner_id, request["status"]))
            return {**answer, "session_ids": sorted(runner.sessions, key=runner.sessions.get)}

    def unregister(self, runner_id: str, auth: str) -> None:
        """``LiveRunnerRegistry.Unregister``."""
        with self.lock:
            runner = self.runners.get(runner_id)
            if runner is None or runner.removed or self._expired(runner, time.monotonic()):
                raise Refused(404, "runner not found")
            if not hmac.compare_digest(auth.encode(), runner.heartbeat_secret.encode()):
                raise Refused(401, "invalid authorization")
            runner.removed = True
            del self.runners[runner_id]
            self.events.append(("unregistered", runner_id))

    def _discovery_entry(self, runner: Registered) -> dict[str, Any]:
        request = runner.request
        entry: dict[str, Any] = {"url": self._runner_url(runner)}
        if request["gpu"]:
            entry["gpu"] = {key: value for key, value in request["gpu"].items() if value}
        entry["app"] = request["app"]
        for key in ("version", "metadata", "mode"):
            if request[key]:
                entry[key] = request[key]
        entry["capacity"] = request["capacity"]
        entry["capacity_used"] = len(runner.sessions)
        entry["capacity_available"] = request["capacity"] - len(runner.sessions)
        return entry

    def _runner_url(self, runner: Registered) -> str:
        kind = "app" if runner.request["mode"] == "single-shot" else "session"
        return f"{self.url}/apps/{runner.runner_id}/{kind}"

    def _reserve(self, runner_id: str) -> tuple[Registered, str]:
        """``RunnerMode`` then ``ReserveSession`` for a single-shot call."""
        with self.lock:
            runner = self.runners.get(runner_id)
            if runner is None or runner.removed or self._expired(runner, time.monotonic()):
                raise Refused(404, "runner not found")
            if not runner.ready:
                raise Refused(404, "runner not found")
            if runner.request["mode"] != "single-shot":
                raise Refused(400, "runner is not single-shot")
            if len(runner.sessions) >= runner.request["capacity"]:
                self.events.append(("full", runner_id))
                raise Refused(503, "no capacity available for runner")
            session_id = _random_id("session_")
            runner.sessions[session_id] = time.monotonic()
            return runner, session_id

    def _release(self, runner: Registered, session_id: str) -> None:
        with self.lock:
            runner.sessions.pop(session_id, None)

    # -- HTTP -----------------------------------------------------------------------------

    def _route(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        parts = path.split("/")
        try:
            if path == "/runners/heartbeat":
                self._only(method, "POST")
                request = go_decode(self._body(handler))
                answer = self.heartbeat(request, handler.headers.get("Authorization", ""))
                self._json(handler, 200, answer)
            elif len(parts) == 4 and parts[1] == "runners" and parts[3] == "unregister":
                self._only(method, "POST")
                self.unregister(parts[2], handler.headers.get("Authorization", ""))
                self._send(handler, 204, {}, b"")
            elif path == "/discovery":
                self._only(method, "GET")
                entry: dict[str, Any] = {"address": self.url}
                runners = self.discovery()
                if runners:
                    entry["runners"] = runners
                self._json(handler, 200, [entry])
            elif len(parts) >= 5 and parts[1] == "apps" and parts[3] == "app":
                self._proxy(handler, method, parts[2], "/".join(parts[4:]))
            else:
                raise Refused(404, "404 page not found")
        except GoDecodeError as exc:
            self._error(handler, 400, str(exc))
        except Refused as exc:
            self._error(handler, exc.status, exc.message)

    @staticmethod
    def _only(method: str, allowed: str) -> None:
        if method != allowed:
            raise Refused(405, "Method Not Allowed")

    def _proxy(
        self, handler: BaseHTTPRequestHandler, method: str, runner_id: str, path: str
    ) -> None:
        """``ProxyLiveRunnerSingleShot`` and ``proxyLiveRunner``."""
        body = self._body(handler)
        runner, session_id = self._reserve(runner_id)
        try:
            target = urlsplit(runner.request["runner_url"])
            url = f"{target.scheme}://{target.netloc}{target.path.rstrip('/')}/{path}"
            query = urlsplit(handler.path).query
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            control = f"{self.url}/runner/{runner_id}/session/{session_id}"
            headers.update(
                {
                    "Livepeer-Runner-Route": runner_id,
                    "Livepeer-Session-Id": session_id,
                    "Livepeer-Session-Token": runner.session_token(session_id),
                    "Livepeer-Session-Control": control,
                }
            )
            self.proxied.append({"method": method, "url": url, "headers": headers})
            try:
                answer = self._proxy_client.request(
                    method, url + (f"?{query}" if query else ""), headers=headers, content=body
                )
            except httpx.HTTPError as exc:
                raise Refused(502, str(exc)) from None
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            kept.pop("content-encoding", None)  # httpx decoded the body
            self._send(handler, answer.status_code, kept, answer.content)
        finally:
            self._release(runner, session_id)

    @staticmethod
    def _body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(handler.rfile.readline().split(b";")[0], 16):
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            handler.rfile.readline()
            return b"".join(chunks)
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    def _json(self, handler: BaseHTTPRequestHandler, status: int, value: object) -> None:
        body = json.dumps(value).encode()
        self._send(handler, status, {"Content-Type": "application/json"}, body)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
        """Go's ``http.Error``, as ``respondWithError`` calls it."""
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "X-Content-Type-Options": "nosniff",
        }
        self._send(handler, status, headers, f"{message}\n".encode())

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, headers: dict, body: bytes) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        if status != 204:
            handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        if body and handler.command != "HEAD":
            handler.wfile.write(body)
