"""A stand-in for the Hugging Face hub on 127.0.0.1, for the tests of the runner's fetches.

It answers the calls huggingface_hub (the version installed) makes, with the headers it
reads (huggingface_hub/hf_api.py ``model_info``, file_download.py ``get_hf_file_metadata``
and ``http_get``, utils/_http.py ``hf_raise_for_status``):

- ``GET /api/models/{repo}[/revision/{rev}]``: the repo's ``sha`` and ``siblings`` (with
  sizes and LFS metadata when ``blobs=true``); an unknown repo is a 401 with
  ``X-Error-Code: RepoNotFound``, as the hub answers anonymous callers;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the git blob
  id), ``Content-Length``, and for LFS files (weights) ``X-Linked-Etag`` (their sha256) and
  ``X-Linked-Size``; a missing file is a 404 with ``X-Error-Code: EntryNotFound``.

A repo's file bodies can be held back until the test lets them go (a slow download) or
until the hub stops (a stalled one), or fail with a 500; every request is recorded. Each
connection is closed after one answer, so once stopped the hub is down for every caller.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin")
API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class Repo:
    def __init__(self, repo_id: str, files: dict[str, bytes]) -> None:
        self.id = repo_id
        self.files = files
        self.sha = hashlib.sha1(repo_id.encode()).hexdigest()
        self.held: threading.Event | None = None  # set: file bodies wait until it is set
        self.failing = False  # True: file GETs answer 500 (HEADs still succeed)

    def blob_id(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def lfs(self, path: str) -> dict | None:
        if not path.endswith(LFS_SUFFIXES):
            return None
        data = self.files[path]
        return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}


class StandInHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.downloading = threading.Event()  # set when a held body is asked for
        self._stopped = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                hub._answer(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._answer(self, body=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandInHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering: later calls find nothing listening (the hub is down)."""
        if not self._stopped.is_set():
            self._stopped.set()
            self._server.shutdown()
            self._server.server_close()

    def add_folder(self, repo_id: str, folder: Path) -> Repo:
        files = {
            str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        return self.add_files(repo_id, files)

    def add_files(self, repo_id: str, files: dict[str, bytes]) -> Repo:
        self.repos[repo_id] = Repo(repo_id, files)
        return self.repos[repo_id]

    def calls_for(self, repo_id: str) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if repo_id in path]

    # -- answers ----------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlsplit(handler.path)
        self.requests.append((handler.command, url.path))
        if (found := API.match(url.path)) and body:
            self._model_info(handler, found["repo"], parse_qs(url.query))
        elif found := RESOLVE.match(url.path):
            self._file(handler, found["repo"], found["path"], body)
        else:
            self._send(handler, 404, {"X-Error-Code": "NotFound"}, b"", body)

    def _model_info(self, handler: BaseHTTPRequestHandler, repo_id: str, query: dict) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._repo_not_found(handler, True)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path in repo.files:
            sibling: dict = {"rfilename": path}
            if blobs:
                sibling |= {"size": len(repo.files[path]), "blobId": repo.blob_id(path)}
                if lfs := repo.lfs(path):
                    sibling["lfs"] = lfs
            siblings.append(sibling)
        info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "siblings": siblings}
        data = json.dumps(info).encode()
        self._send(handler, 200, {"Content-Type": "application/json"}, data, True)

    def _file(self, handler: BaseHTTPRequestHandler, repo_id: str, path: str, body: bool) -> None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._repo_not_found(handler, body)
        headers = {"X-Repo-Commit": repo.sha}
        if path not in repo.files:
            headers |= {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}
            return self._send(handler, 404, headers, b"", body)
        data = repo.files[path]
        headers["ETag"] = f'"{repo.blob_id(path)}"'
        if lfs := repo.lfs(path):
            headers |= {"X-Linked-Etag": f'"{lfs["sha256"]}"', "X-Linked-Size": str(len(data))}
        if body and repo.failing:
            return self._send(handler, 500, {"X-Repo-Commit": repo.sha}, b"", body)
        if not body or repo.held is None:
            return self._send(handler, 200, headers, data, body)
        self._send_head(handler, 200, headers, len(data))
        self.downloading.set()
        deadline = time.monotonic() + 120
        while not repo.held.wait(0.05) and not self._stopped.is_set():
            if time.monotonic() > deadline:
                return None
        if repo.held.is_set():
            handler.wfile.write(data)
        return None

    def _repo_not_found(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        headers = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
        self._send(handler, 401, headers, b'{"error":"Repository not found"}', body)

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, headers: dict, data: bytes, body: bool
    ) -> None:
        StandInHub._send_head(handler, status, headers, len(data))
        if body:
            handler.wfile.write(data)

    @staticmethod
    def _send_head(handler: BaseHTTPRequestHandler, status: int, headers: dict, size: int) -> None:
        handler.send_response(status)
        for name, value in (headers | {"Content-Length": str(size), "Connection": "close"}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
