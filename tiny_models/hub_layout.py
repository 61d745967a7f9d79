"""Writing a model into a Hugging Face hub cache the way ``hf download`` lays it out."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from runner.hub import cache_folder


def snapshot_folder(model_dir: Path, model_id: str, recipe_version: str) -> Path:
    """A fresh ``models--ORG--NAME/snapshots/<rev>/`` with ``refs/main`` pointing at it.

    The revision is derived from the id and the recipe, so rebuilding gives the same path.
    """
    root = cache_folder(model_dir, model_id)
    revision = hashlib.sha1(f"{model_id}:{recipe_version}".encode()).hexdigest()
    snapshot = root / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snapshot
