"""Pipelines know no HTTP: every module of pipelines/, and every module of runner/ they
import, imports with FastAPI and Starlette absent (issue 15, item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    REFUSED = ("fastapi", "starlette")

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in REFUSED:
                raise ModuleNotFoundError(f"No module named {name!r} (refused)", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    import pipelines

    names = sorted(m.name for m in pkgutil.walk_packages(pipelines.__path__, "pipelines."))
    for name in names:
        importlib.import_module(name)
    from_runner = sorted(n for n in sys.modules if n == "runner" or n.startswith("runner."))
    print(json.dumps({"pipelines": names, "runner": from_runner}))
    """
)


def test_pipelines_import_without_fastapi_or_starlette():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.splitlines()[-1])
    assert "pipelines.registry" in imported["pipelines"]
    assert "pipelines.text_to_image" in imported["pipelines"]
    # The runner modules the pipelines use came in without the framework, among them the
    # media (the upload marker, the decoders) and the typed errors.
    assert {"runner.errors", "runner.media.uploads", "runner.settings"} <= set(imported["runner"])
    assert not {"runner.error_answers", "runner.routes", "runner.app"} & set(imported["runner"])
