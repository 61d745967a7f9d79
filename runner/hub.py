"""Models in ``MODEL_DIR``, a Hugging Face hub cache, and fetching into it what it lacks.

As ai-runner, which runs online, the runner fetches from the hub what its download script
leaves out (the safety checker, the SDXL base of SDXL-Lightning, the LoRAs requests name),
unless ``HF_HUB_OFFLINE=1``. Everything else reads the cache only. The hub settings
(``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_TOKEN``) come from ``Settings`` and are passed to
each huggingface_hub call.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.settings import Settings

log = logging.getLogger("runner.hub")
GB = 1e9
METADATA_TIMEOUT = 30.0  # seconds for one hub API call


class ModelNotFound(RunnerError):
    """The model is not in ``MODEL_DIR``; the message says how to get it there."""


class FetchFailed(Exception):
    """A fetch from the hub failed; ``reason`` completes "<repo> could not be fetched: ..."."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cache_folder(model_dir: Path, model_id: str) -> Path:
    return model_dir / ("models--" + model_id.replace("/", "--"))


def cached_snapshot(model_dir: Path, model_id: str) -> Path | None:
    """The snapshot ``refs/main`` points at, if it is there.

    Read directly rather than through ``snapshot_download(local_files_only=True)``, which
    refuses a snapshot fetched with include patterns once the hub's tree listing is cached.
    """
    root = cache_folder(model_dir, model_id)
    try:
        revision = (root / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = root / "snapshots" / revision
    return snapshot if revision and snapshot.is_dir() else None


def locate_model(model_dir: Path, model_id: str) -> Path:
    """The snapshot folder of ``model_id`` in the hub cache at ``model_dir``."""
    snapshot = cached_snapshot(model_dir, model_id)
    if snapshot is None:
        raise ModelNotFound(
            f"model {model_id} is not in MODEL_DIR={model_dir} "
            f"(looked for {cache_folder(model_dir, model_id)}/snapshots/); download it first with "
            f"`hf download {model_id} --cache-dir {model_dir}` and mount that folder"
        )
    return snapshot


def size_text(size: float) -> str:
    return f"{size / GB:.2f} GB" if size >= 0.01 * GB else f"{size / 1e6:.2f} MB"


class Hub:
    """The hub as the settings describe it: endpoint, token, the cache it fills."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.online = not settings.hf_hub_offline
        self.model_dir = settings.model_dir

    def files(self, repo: str, timeout: float = METADATA_TIMEOUT) -> dict[str, int]:
        """The files of ``repo`` on the hub and their sizes in bytes."""
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.settings.hf_endpoint, token=self.settings.hub_token)
        with hub_errors():
            info = api.model_info(repo, files_metadata=True, timeout=timeout)
        return {
            sibling.rfilename: (sibling.lfs.size if sibling.lfs else sibling.size) or 0
            for sibling in info.siblings or []
        }

    def check_disk(self, size: int) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.model_dir).free
        keep = self.settings.hub_min_free_bytes
        if free - size < keep:
            raise FetchFailed(
                f"{size_text(size)} would leave less than {size_text(keep)} free in MODEL_DIR "
                f"({size_text(free)} free; HUB_MIN_FREE_BYTES)"
            )

    def download(self, repo: str, filename: str, progress: type | None = None) -> None:
        """One file of ``repo`` into the cache (``refs/main`` and the snapshot included)."""
        from huggingface_hub import hf_hub_download

        with hub_errors():
            hf_hub_download(
                repo,
                filename,
                cache_dir=self.model_dir,
                endpoint=self.settings.hf_endpoint,
                token=self.settings.hub_token,
                etag_timeout=METADATA_TIMEOUT,
                tqdm_class=progress,
            )

    def fetch(self, repo: str, what: str, choose: Callable[[dict[str, int]], list[str]]) -> Path:
        """Make ``repo`` whole in ``MODEL_DIR``: the files ``choose`` picks from its listing.

        For load time: the model is needed before anything can be served, so this waits as
        long as the download takes (with huggingface_hub's own stall timeouts).
        """
        if not self.online:
            raise FetchFailed("HF_HUB_OFFLINE=1 is set")
        with hub_errors():  # a folder it cannot write, too
            return self._fetch(repo, what, choose)

    def _fetch(self, repo: str, what: str, choose: Callable[[dict[str, int]], list[str]]) -> Path:
        listing = self.files(repo)
        wanted = choose(listing)
        if not wanted:
            raise FetchFailed("it has none of the files the runner reads")
        size = sum(listing[name] for name in wanted)
        self.check_disk(size)
        log.info(
            "fetching %s (%s): %d files, %s, from %s into MODEL_DIR=%s",
            repo,
            what,
            len(wanted),
            size_text(size),
            self.settings.hf_endpoint,
            self.model_dir,
        )
        started = time.perf_counter()
        marker = unfinished_marker(self.model_dir, repo)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        for name in wanted:  # files already there (an earlier, cut-short fetch) are kept
            self.download(repo, name)
        marker.unlink()
        log.info("fetched %s (%s) in %.1fs", repo, what, time.perf_counter() - started)
        return locate_model(self.model_dir, repo)


def fetch_missing(
    settings: Settings, repo: str, what: str, choose: Callable[[dict[str, int]], list[str]]
) -> Path:
    """``repo``'s snapshot in ``MODEL_DIR``, fetched first when it is not there (or an
    earlier fetch was cut short) and the runner is online; ``ModelNotFound`` naming it
    otherwise."""
    snapshot = cached_snapshot(settings.model_dir, repo)
    interrupted = unfinished_marker(settings.model_dir, repo).exists()
    if snapshot is not None and (not interrupted or settings.hf_hub_offline):
        return snapshot
    if settings.hf_hub_offline:
        return locate_model(settings.model_dir, repo)  # raises, saying how to get it
    state = "partly fetched (a fetch was cut short)" if interrupted else "not in MODEL_DIR"
    log.info("%s (%s) is %s: fetching it from the hub", repo, what, state)
    try:
        return Hub(settings).fetch(repo, what, choose)
    except FetchFailed as exc:
        try:
            locate_model(settings.model_dir, repo)
            absent = f"model {repo} is {state}"
        except ModelNotFound as missing:
            absent = missing.message
        raise ModelNotFound(
            f"{absent}; fetching it from {settings.hf_endpoint} failed: {exc.reason}"
        ) from None


def unfinished_marker(model_dir: Path, repo: str) -> Path:
    """There while a load-time fetch of ``repo`` has not finished (kept if it is cut short:
    the container stopped, the hub failed), so the next start completes it."""
    return model_dir / ".runner-fetches" / f"{cache_folder(model_dir, repo).name}.unfinished"


class DeadlineExceeded(Exception):
    """Raised from a download's progress hook: it took too long or grew too large."""


def bounded_progress(deadline: float, max_bytes: int) -> type:
    """A progress-bar class for huggingface_hub that ends the download (by raising from
    ``update``) once ``deadline`` passes or more than ``max_bytes`` arrive."""

    class BoundedProgress:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.received = int(kwargs.get("initial") or 0)

        def __enter__(self) -> BoundedProgress:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, n: float | None = 1) -> None:
            self.received += int(n or 0)
            if self.received > max_bytes:
                raise DeadlineExceeded(f"more than {size_text(max_bytes)} arrived")
            if time.monotonic() > deadline:
                raise DeadlineExceeded("the deadline passed")

        def close(self) -> None:
            return None

    return BoundedProgress


class Downloads:
    """Request-time fetches of one weights file per repo, bounded in size, time, number at
    once (``HUB_MAX_DOWNLOADS``) and disk space; requests for a repo already downloading wait
    for that download."""

    def __init__(self, settings: Settings) -> None:
        self.hub = Hub(settings)
        self.timeout = settings.lora_download_timeout
        self.max_bytes = settings.lora_max_bytes
        self.at_once = settings.hub_max_downloads
        self._pool = ThreadPoolExecutor(self.at_once, thread_name_prefix="hub")
        self._lock = threading.Lock()
        self._running: dict[str, Future[Path]] = {}  # started or waiting for a turn

    def fetch(self, repo: str, what: str, choose: Callable[[dict[str, int]], str]) -> Path:
        """``repo``'s snapshot once the file ``choose`` picks is downloaded; ``FetchFailed``
        if it cannot be within ``LORA_DOWNLOAD_TIMEOUT`` (waiting for a turn included)."""
        with self._lock:
            future = self._running.get(repo)
            started = future is None
            if started:
                future = self._pool.submit(self._download, repo, what, choose)
                self._running[repo] = future
                if len(self._running) > self.at_once:
                    log.info(
                        "%s %s waits for a download turn (HUB_MAX_DOWNLOADS=%d)",
                        what,
                        repo,
                        self.at_once,
                    )
        if started:  # outside the lock: a download already over calls back at once
            future.add_done_callback(lambda done: self._forget(repo, done))
        try:
            return future.result(timeout=self.timeout)
        except (FutureTimeout, CancelledError):
            future.cancel()  # one that never got a turn does not start any more
            raise FetchFailed(
                f"the download did not finish within {self.timeout:g} s (LORA_DOWNLOAD_TIMEOUT)"
            ) from None

    def _forget(self, repo: str, done: Future[Path]) -> None:
        with self._lock:
            if self._running.get(repo) is done:
                del self._running[repo]

    def _download(self, repo: str, what: str, choose: Callable[[dict[str, int]], str]) -> Path:
        with hub_errors():  # a folder it cannot write, too
            return self._download_file(repo, what, choose)

    def _download_file(self, repo: str, what: str, choose: Callable[[dict[str, int]], str]) -> Path:
        deadline = time.monotonic() + self.timeout
        listing = self.hub.files(repo, timeout=min(METADATA_TIMEOUT, self.timeout))
        name = choose(listing)
        size = listing[name]
        if size > self.max_bytes:
            raise FetchFailed(
                f"{name} is {size_text(size)}, more than the {size_text(self.max_bytes)} "
                "the runner fetches (LORA_MAX_BYTES)"
            )
        self.hub.check_disk(size)
        log.info(
            "fetching %s %s (%s, %s) from %s",
            what,
            repo,
            name,
            size_text(size),
            self.hub.settings.hf_endpoint,
        )
        started = time.perf_counter()
        try:
            self.hub.download(repo, name, bounded_progress(deadline, self.max_bytes))
        except DeadlineExceeded as exc:
            log.warning("fetching %s %s stopped: %s", what, repo, exc)
            raise FetchFailed(f"the download was stopped: {exc}") from None
        log.info("fetched %s %s in %.1fs", what, repo, time.perf_counter() - started)
        return locate_model(self.hub.model_dir, repo)


@contextmanager
def hub_errors() -> Iterator[None]:
    """Turn huggingface_hub's and the HTTP client's failures into ``FetchFailed``."""
    try:
        yield
    except (FetchFailed, DeadlineExceeded):
        raise
    except Exception as exc:
        raise FetchFailed(describe_hub_error(exc)) from exc


def describe_hub_error(exc: Exception) -> str:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, GatedRepoError):
        return "it is gated: its licence must be accepted and HF_TOKEN set"
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        return "it does not exist on the hub (or is private)"
    if isinstance(exc, RemoteEntryNotFoundError):
        return "a file it lists is missing on the hub"
    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set"
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return f"the hub answered HTTP {exc.response.status_code}"
    if isinstance(exc, (LocalEntryNotFoundError, ConnectionError, TimeoutError)):
        return f"the hub could not be reached ({type(exc).__name__})"
    name = type(exc).__name__
    if "Timeout" in name or "Connect" in name or "Network" in name or "Protocol" in name:
        return f"the hub could not be reached ({name})"
    return f"{name}: {exc}"


# Which files a fetch takes, as scripts/download_models.sh picks them.
TEXT_FILES = (".json", ".txt", ".model", ".tiktoken")


def transformers_files(listing: dict[str, int]) -> list[str]:
    """Config, tokenizer and processor files, and the safetensors weights (the pickled
    ``.bin`` ones only where the repository publishes no safetensors)."""
    weights = [name for name in listing if name.endswith(".safetensors")]
    weights = weights or [name for name in listing if name.endswith(".bin")]
    return sorted(name for name in listing if name.endswith(TEXT_FILES)) + sorted(weights)


def diffusers_files(listing: dict[str, int], skip_weights: tuple[str, ...] = ()) -> list[str]:
    """``model_index.json`` and the component folders' files: fp16 weights where the repo
    publishes them, else the full-precision ones; the root's single-file checkpoints and the
    weights of the components in ``skip_weights`` are left out."""
    parts = [name for name in listing if "/" in name]
    weights = [name for name in parts if name.endswith(".safetensors")]
    fp16 = [name for name in weights if ".fp16." in name]
    weights = fp16 or weights
    weights = [name for name in weights if name.split("/")[0] not in skip_weights]
    texts = [name for name in parts if name.endswith(TEXT_FILES)]
    root = ["model_index.json"] if "model_index.json" in listing else []
    return root + sorted(texts) + sorted(weights)
