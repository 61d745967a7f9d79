"""The runner's caller, go-livepeer's AI worker, emulated byte for byte where it matters.

- Requests are written as ai/worker/multipart.go writes them (Go's mime/multipart
  ``CreateFormFile``/``WriteField``; only the fields the caller set; floats ``%f``, ints
  ``strconv.Itoa``, bools ``strconv.FormatBool``), and JSON bodies as Go's encoding/json
  marshals the generated request types of ai/worker/runner.gen.go (struct field order,
  ``omitempty`` pointers, float32 shortest form, HTML characters escaped).
- Answers are read as the generated client's ``Parse<Op>Response`` functions read them: a
  body is decoded only for the route's declared status codes and only when the content type
  contains ``json``, into the declared Go type (a mismatch is an error); then
  ai/worker/worker.go turns the decoded answer into a result or an error.
- ``ContainerWatch`` runs ai/worker/container.go ``runnerWaitUntilReady`` and ai/worker/
  docker.go ``watchContainer`` in accelerated time.
- ``check_png`` and ``assemble_video`` do what the orchestrator does with the images
  (ai/worker/b64.go, core/ai_orchestrator.go ``ImageToVideo``/``transcodeFrames``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

# -- requests (ai/worker/multipart.go) ---------------------------------------------------------

# Each multipart route's fields in the order its New<Op>MultipartWriter writes them, with how
# it formats them; the file part comes first. "required" fields are written even when empty.
MULTIPART_FIELDS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "/image-to-image": (
        "image",
        [
            ("prompt", "required"),
            ("model_id", "str"),
            ("loras", "str"),
            ("strength", "float"),
            ("guidance_scale", "float"),
            ("image_guidance_scale", "float"),
            ("negative_prompt", "str"),
            ("safety_check", "bool"),
            ("seed", "int"),
            ("num_images_per_prompt", "int"),
            ("num_inference_steps", "int"),
        ],
    ),
    "/image-to-video": (
        "image",
        [
            ("model_id", "str"),
            ("height", "int"),
            ("width", "int"),
            ("fps", "int"),
            ("motion_bucket_id", "int"),
            ("noise_aug_strength", "float"),
            ("seed", "int"),
            ("safety_check", "bool"),
            ("num_inference_steps", "int"),
        ],
    ),
    "/upscale": (
        "image",
        [
            ("prompt", "required"),
            ("model_id", "str"),
            ("safety_check", "bool"),
            ("seed", "int"),
            ("num_inference_steps", "int"),
        ],
    ),
    "/audio-to-text": (
        "audio",
        [("model_id", "str"), ("return_timestamps", "str"), ("metadata", "str")],
    ),
    "/segment-anything-2": (
        "image",
        [
            ("model_id", "str"),
            ("point_coords", "str"),
            ("point_labels", "str"),
            ("box", "str"),
            ("mask_input", "str"),
            ("multimask_output", "bool"),
            ("return_logits", "bool"),
            ("normalize_coords", "bool"),
        ],
    ),
    "/image-to-text": ("image", [("prompt", "str"), ("model_id", "str")]),
}

# The JSON request types (runner.gen.go TextToImageParams, TextToSpeechParams): Go marshals
# struct fields in declaration order, which the generator made alphabetical; every field but
# ``prompt`` is an ``omitempty`` pointer, written only when the caller set it.
JSON_FIELDS: dict[str, list[tuple[str, str]]] = {
    "/text-to-image": [
        ("guidance_scale", "float"),
        ("height", "int"),
        ("loras", "str"),
        ("model_id", "str"),
        ("negative_prompt", "str"),
        ("num_images_per_prompt", "int"),
        ("num_inference_steps", "int"),
        ("prompt", "required"),
        ("safety_check", "bool"),
        ("seed", "int"),
        ("width", "int"),
    ],
    "/text-to-speech": [("description", "str"), ("model_id", "str"), ("text", "str")],
}


def go_percent_f(value: float) -> str:
    """``fmt.Sprintf("%f", float32)``: the float32 value, six decimals."""
    return f"{float(np.float32(value)):f}"


def go_form_value(kind: str, value: Any) -> str:
    if kind == "float":
        return go_percent_f(value)
    if kind == "bool":
        return "true" if value else "false"  # strconv.FormatBool
    if kind == "int":
        return str(int(value))  # strconv.Itoa
    return str(value)


def _escape_quotes(text: str) -> str:
    """mime/multipart's escapeQuotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


class GoMultipartWriter:
    """Go's mime/multipart.Writer: a random 30-byte hex boundary, header keys sorted,
    ``\\r\\n--boundary\\r\\n`` between parts, ``\\r\\n--boundary--\\r\\n`` at the end."""

    def __init__(self) -> None:
        self.boundary = secrets.token_hex(30)
        self.parts: list[bytes] = []

    def _part(self, headers: dict[str, str], data: bytes) -> None:
        head = "".join(f"{key}: {headers[key]}\r\n" for key in sorted(headers)) + "\r\n"
        lead = f"\r\n--{self.boundary}\r\n" if self.parts else f"--{self.boundary}\r\n"
        self.parts.append(lead.encode() + head.encode() + data)

    def create_form_file(self, name: str, filename: str, data: bytes) -> None:
        disposition = (
            f'form-data; name="{_escape_quotes(name)}"; filename="{_escape_quotes(filename)}"'
        )
        self._part(
            {"Content-Disposition": disposition, "Content-Type": "application/octet-stream"}, data
        )

    def write_field(self, name: str, value: str) -> None:
        self._part(
            {"Content-Disposition": f'form-data; name="{_escape_quotes(name)}"'}, value.encode()
        )

    def close(self) -> bytes:
        return b"".join(self.parts) + f"\r\n--{self.boundary}--\r\n".encode()

    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


def multipart_request(path: str, file: tuple[str, bytes], **values: Any) -> tuple[str, bytes]:
    """The body New<Op>MultipartWriter writes for a request with ``values`` set (a value of
    None is a nil pointer: not written); its content type and bytes."""
    file_field, fields = MULTIPART_FIELDS[path]
    unknown = set(values) - {name for name, _ in fields}
    assert not unknown, f"{path} has no fields {unknown} in go-livepeer's writer"
    writer = GoMultipartWriter()
    writer.create_form_file(file_field, file[0], file[1])
    for name, kind in fields:
        value = values.get(name)
        if kind == "required":
            writer.write_field(name, value or "")
        elif value is not None:
            writer.write_field(name, go_form_value(kind, value))
    return writer.content_type(), writer.close()


def go_json_float32(value: float) -> str:
    """encoding/json's float32: the shortest form that reads back as the same float32,
    exponent form below 1e-6 and from 1e21."""
    f = np.float32(value)
    if f == 0:
        return "0"
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        text = np.format_float_scientific(f, unique=True, trim="-", exp_digits=2)
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0').rjust(2, '0')}"
    return np.format_float_positional(f, unique=True, trim="-")


def go_json_string(text: str) -> str:
    """encoding/json's string: HTML characters and U+2028/U+2029 escaped, UTF-8 kept."""
    encoded = json.dumps(text, ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(char, escape)
    return encoded


def json_request(path: str, **values: Any) -> tuple[str, bytes]:
    """``json.Marshal`` of the route's generated request type with ``values`` set."""
    fields = JSON_FIELDS[path]
    unknown = set(values) - {name for name, _ in fields}
    assert not unknown, f"{path} has no fields {unknown} in runner.gen.go"
    members = []
    for name, kind in fields:
        value = values.get(name)
        if value is None and kind != "required":
            continue
        if kind == "float":
            text = go_json_float32(value)
        elif kind == "int":
            text = str(int(value))
        elif kind == "bool":
            text = "true" if value else "false"
        else:
            text = go_json_string(value or "")
        members.append(f'"{name}":{text}')
    return "application/json", ("{" + ",".join(members) + "}").encode()


# -- answers (ai/worker/runner.gen.go Parse<Op>Response, ai/worker/worker.go) ---------------

MEDIA = {"nsfw": "bool", "seed": "int", "url": "string"}
HTTP_ERROR = {"detail": {"msg": "string"}}
VALIDATION_ERROR = {"detail": ["list", {"loc": ["list", "any"], "msg": "string", "type": "string"}]}
GPU_INFO = {
    "id": "string",
    "major": "int",
    "memory_free": "int",
    "memory_total": "int",
    "minor": "int",
    "name": "string",
}


@dataclass(frozen=True)
class RouteSpec:
    """A route's answer type and its declared status codes, from runner.gen.go."""

    operation: str  # the pipeline's name in worker.go's error messages
    answer: Any
    errors: tuple[int, ...] = (400, 401, 422, 500)


ROUTES: dict[str, RouteSpec] = {
    "/text-to-image": RouteSpec("text-to-image", {"images": ["list", MEDIA]}),
    "/image-to-image": RouteSpec("image-to-image", {"images": ["list", MEDIA]}),
    "/image-to-video": RouteSpec("image-to-video", {"frames": ["list", ["list", MEDIA]]}),
    "/upscale": RouteSpec("upscale", {"images": ["list", MEDIA]}),
    "/audio-to-text": RouteSpec(
        "audio-to-text",
        {"chunks": ["list", {"text": "string", "timestamp": ["list", "any"]}], "text": "string"},
        (400, 401, 413, 415, 422, 500),
    ),
    "/segment-anything-2": RouteSpec(
        "segment anything 2", {"logits": "string", "masks": "string", "scores": "string"}
    ),
    "/image-to-text": RouteSpec("image-to-text", {"text": "string"}, (400, 401, 413, 422, 500)),
    "/text-to-speech": RouteSpec("text-to-speech", {"audio": {"url": "string"}}),
    "/health": RouteSpec("health", {"status": "string"}, ()),
    "/version": RouteSpec(
        "version", {"model_id": "string", "pipeline": "string", "version": "string"}, ()
    ),
    "/hardware/info": RouteSpec(
        "hardware",
        {"gpu_info": ["map", GPU_INFO], "model_id": "string", "pipeline": "string"},
        (),
    ),
}


class GoDecodeError(Exception):
    """What ``json.Unmarshal`` into the generated type would return."""


INT64 = (-(2**63), 2**63 - 1)


def go_unmarshal(value: Any, spec: Any, where: str = "") -> Any:
    """Check ``value`` (parsed JSON) against a Go type as json.Unmarshal would: null leaves the
    zero value, missing and unknown fields are fine, any other kind mismatch is an error."""
    if value is None or spec == "any":
        return value
    if spec == "string":
        ok = isinstance(value, str)
    elif spec == "bool":
        ok = isinstance(value, bool)
    elif spec == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not INT64[0] <= value <= INT64[1]:
            raise GoDecodeError(f"json: cannot unmarshal number {value} into {where} of type int")
    elif isinstance(spec, list):
        kind, inner = spec
        if kind == "list" and isinstance(value, list):
            return [go_unmarshal(item, inner, where) for item in value]
        if kind == "map" and isinstance(value, dict):
            return {key: go_unmarshal(item, inner, where) for key, item in value.items()}
        ok = False
    else:
        if isinstance(value, dict):
            for name, inner in spec.items():
                if name in value:
                    go_unmarshal(value[name], inner, f"{where}.{name}".lstrip("."))
            return value
        ok = False
    if not ok:
        raise GoDecodeError(
            f"json: cannot unmarshal {type(value).__name__} into {where or 'answer'}"
        )
    return value


@dataclass
class GoResponse:
    """``<Op>Response`` of runner.gen.go: the status, and the one decoded body, if any."""

    path: str
    status: int
    content_type: str
    body: bytes
    decoded: Any = None  # JSON<status>, or None when the generated client decoded nothing

    def worker_result(self) -> tuple[Any, str | None]:
        """What ai/worker/worker.go makes of it: (JSON200, None), or (None, its error)."""
        spec = ROUTES[self.path]
        if self.decoded is None:
            if self.path == "/image-to-video":
                return None, "image-to-video container returned no content"
            return None, None  # go-livepeer issue 4026: a nil answer and no error
        if self.status == 200:
            return self.decoded, None
        if self.status == 422:
            # worker.go's ImageToText spells it with two spaces
            label = "image-to-text " if self.path == "/image-to-text" else spec.operation
            return None, f"{label} container returned 422: {json.dumps(self.decoded)}"
        if self.status == 413 and self.path == "/audio-to-text":
            return (
                None,
                "audio-to-text container returned 413: file too large; max file size is 50MB",
            )
        return (
            None,
            f"{spec.operation} container returned {self.status}: {self.decoded['detail']['msg']}",
        )


def parse_response(path: str, status: int, content_type: str, body: bytes) -> GoResponse:
    """Parse<Op>Response: decode only declared codes with a content type containing json."""
    spec = ROUTES[path]
    response = GoResponse(path, status, content_type, body)
    if "json" not in content_type or status not in (200, *spec.errors):
        return response
    kind = spec.answer if status == 200 else VALIDATION_ERROR if status == 422 else HTTP_ERROR
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise GoDecodeError(f"invalid JSON in a {status} answer: {exc}") from None
    response.decoded = go_unmarshal(parsed, kind, "")
    return response


class GoWorker:
    """The worker's generated client over an httpx-like client (a TestClient, or
    ``httpx.Client`` pointed at a runner): it only posts bytes and reads answers."""

    def __init__(self, client: Any, token: str | None = None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def send(self, path: str, content_type: str, body: bytes) -> GoResponse:
        response = self.client.post(
            path, content=body, headers={**self.headers, "Content-Type": content_type}
        )
        return parse_response(
            path, response.status_code, response.headers.get("content-type", ""), response.content
        )

    def multipart(self, path: str, file: tuple[str, bytes], **values: Any) -> GoResponse:
        return self.send(path, *multipart_request(path, file, **values))

    def json(self, path: str, **values: Any) -> GoResponse:
        return self.send(path, *json_request(path, **values))

    def get(self, path: str, timeout: float | None = None) -> GoResponse:
        kwargs = {} if timeout is None else {"timeout": timeout}
        response = self.client.get(path, headers=self.headers, **kwargs)
        return parse_response(
            path, response.status_code, response.headers.get("content-type", ""), response.content
        )


def succeeded(response: GoResponse) -> Any:
    """The worker's result for an answer that must be a success."""
    result, error = response.worker_result()
    assert error is None and result is not None, (response.status, error, response.body[:300])
    return result


def failed(response: GoResponse, status: int) -> str:
    """The worker's error for an answer that must be a decoded, declared error."""
    assert response.status == status, (response.status, response.body[:300])
    result, error = response.worker_result()
    assert result is None and error is not None, (response.status, response.body[:300])
    return error


# -- media as the orchestrator handles it (ai/worker/b64.go, core/ai_orchestrator.go) -------


def tool(name: str) -> str:
    """A command the checks need: a failure in CI (where .ci/run installs it), a skip
    elsewhere."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (apt-get install {name})"
    if os.environ.get("CI", "").lower() in ("1", "true"):
        pytest.fail(message)
    pytest.skip(message)


def data_url_bytes(url: str, media_type: str) -> bytes:
    """The payload of a base64 data URL of ``media_type`` (the only kind ReadImageB64DataUrl
    re-encodes as PNG is image/png)."""
    head, _, payload = url.partition(",")
    assert head == f"data:{media_type};base64", head[:60]
    return base64.b64decode(payload, validate=True)


def check_png(url: str, path: Path) -> Path:
    """Write the image of a PNG data URL to ``path`` and have ``pngcheck`` validate it."""
    path.write_bytes(data_url_bytes(url, "image/png"))
    result = subprocess.run(
        [tool("pngcheck"), "-q", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, f"pngcheck: {result.stdout}{result.stderr}"
    return path


def assemble_video(frame_urls: list[str], folder: Path, fps: int, width: int, height: int) -> dict:
    """transcodeFrames: frames saved as ``<i>.png``, put together by the software transcoder
    at the request's fps into an MP4 at the request's size (H.264, 6000k); ffprobe's view of
    the result (frame count, size, rate)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, url in enumerate(frame_urls):
        check_png(url, folder / f"{i}.png")
    output = folder / "video.mp4"
    command = [
        tool("ffmpeg"), "-v", "error", "-y", "-framerate", str(fps), "-i", str(folder / "%d.png"),
        "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-b:v", "6000k",
        "-pix_fmt", "yuv420p", "-f", "mp4", str(output),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [
            tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-count_frames",
            "-show_entries", "stream=nb_read_frames,width,height,r_frame_rate",
            "-of", "json", str(output),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    stream = json.loads(probe.stdout)["streams"][0]
    return {
        "frames": int(stream["nb_read_frames"]),
        "size": (stream["width"], stream["height"]),
        "rate": stream["r_frame_rate"],
    }


# -- the health watch (ai/worker/container.go, ai/worker/docker.go) --------------------------


@dataclass
class Poll:
    at: float  # seconds since the watch began
    outcome: str  # the status, or "error: ..." / "http NNN"
    took: float


class RunnerStartFailed(Exception):
    pass


@dataclass
class ContainerWatch:
    """A managed container's life as the worker runs it, with every duration multiplied by
    ``clock``: ``start`` is createContainer's ``runnerWaitUntilReady`` (0.5 s polls, each with
    the 5 s health timeout, for at most 3 minutes, or 5 with optimisation flags), then
    ``watchContainer`` polls every 5 s with a 5 s timeout: an error or a non-200 is a failure,
    LOADING past 3 minutes counts a failure at every poll, two failures destroy the container,
    ERROR destroys it at once; IDLE returns a borrowed container to the pool, and so does the
    end of the request it was borrowed for."""

    url: str
    clock: float = 0.1
    keep_warm: bool = True
    optimization_flags: bool = False
    polls: list[Poll] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    destroyed: str | None = None
    in_pool: bool = True
    borrowed: bool = False
    max_failures: int = 2

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.http = httpx.Client(base_url=self.url)
        self._borrow_done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def seconds(self, go_seconds: float) -> float:
        return go_seconds * self.clock

    def _poll(self) -> tuple[str, GoResponse | None]:
        began = time.monotonic()
        try:
            response = self.http.get("/health", timeout=self.seconds(5))
            parsed = parse_response(
                "/health", response.status_code, response.headers.get("content-type", ""),
                response.content,
            )  # fmt: skip
            outcome = (
                parsed.decoded["status"]
                if response.status_code == 200
                else f"http {response.status_code}"
            )
        except (httpx.HTTPError, GoDecodeError, TypeError) as exc:
            parsed, outcome = None, f"error: {type(exc).__name__}"
        self.polls.append(Poll(began - self.started, outcome, time.monotonic() - began))
        return outcome, parsed

    def start(self) -> bool:
        """NewRunnerContainer: poll until a 200 that is not ERROR; True when it said LOADING
        (a warm container is then taken out of the pool until it says IDLE)."""
        limit = self.seconds(300 if self.optimization_flags else 180)
        deadline = time.monotonic() + limit
        while True:
            time.sleep(self.seconds(0.5))
            if time.monotonic() > deadline:
                raise RunnerStartFailed("timed out waiting for runner")
            outcome, _ = self._poll()
            if outcome == "ERROR":
                raise RunnerStartFailed("runner is in error state")
            if not outcome.startswith(("error", "http")):
                loading = outcome == "LOADING"
                if self.keep_warm and loading:
                    self.events.append("warm container started LOADING: out of the pool")
                    self._take(done=None)
                return loading

    def _take(self, done: threading.Event | None) -> None:
        with self.lock:
            self.in_pool, self.borrowed = False, True
            self._borrow_done = done or threading.Event()

    def _return(self, why: str) -> None:
        with self.lock:
            self.in_pool, self.borrowed = True, False
        self.events.append(f"returned to the pool: {why}")

    def borrow(self) -> threading.Event:
        """Borrow for a request; set the returned event when the request's context ends."""
        done = threading.Event()
        self._take(done)
        return done

    def watch(self) -> None:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        interval = self.seconds(5)
        loading_limit = self.seconds(180)
        loading_since: float | None = None
        failures = 0
        next_tick = time.monotonic() + interval
        while not self._stop.is_set():
            if failures >= self.max_failures:
                self._destroy(f"health check failed {failures} times")
                return
            while time.monotonic() < next_tick and not self._stop.is_set():
                if self.borrowed and self._borrow_done.is_set():
                    self._return("the request ended")
                time.sleep(min(0.005, interval / 10))
            if self._stop.is_set():
                return
            next_tick += interval
            if next_tick < time.monotonic():  # a Go ticker drops the ticks it missed
                next_tick = time.monotonic() + interval
            outcome, _ = self._poll()
            if outcome.startswith(("error", "http")):
                failures += 1
                continue
            if outcome == "IDLE" and self.borrowed:
                self._return("IDLE")
                continue
            if outcome in ("IDLE", "OK"):
                failures, loading_since = 0, None
            elif outcome == "LOADING":
                if loading_since is None:
                    failures, loading_since = 0, time.monotonic()
                    if not self.borrowed:
                        self.events.append("LOADING: out of the pool")
                        self._take(done=None)
                if time.monotonic() - loading_since > loading_limit:
                    failures += 1
                    self.events.append("loading for too long")
            elif outcome == "ERROR":
                self._destroy("returned ERROR")
                return
            else:
                self.events.append(f"unknown status {outcome}")

    def _destroy(self, why: str) -> None:
        self.destroyed = why
        self.in_pool = False
        self.events.append(
            f"destroyed: {why}" + ("; warm: started again" if self.keep_warm else "")
        )

    def wait_for(self, predicate, go_seconds: float) -> None:
        """Wait (at most ``go_seconds`` of the worker's time, scaled) until ``predicate()``."""
        deadline = time.monotonic() + self.seconds(go_seconds)
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not reached in {go_seconds} s (worker time): {self.report()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.http.close()

    def report(self) -> str:
        polls = ", ".join(f"{p.at:.2f}s {p.outcome} ({p.took * 1000:.0f} ms)" for p in self.polls)
        return f"events: {self.events}; polls: {polls}"
