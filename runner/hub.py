"""Finding models in ``MODEL_DIR``, a Hugging Face hub cache; the network is never used."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from runner.errors import RunnerError


class ModelNotFound(RunnerError):
    """The model is not in ``MODEL_DIR``; the message says how to get it there."""


def cache_folder(model_dir: Path, model_id: str) -> Path:
    return model_dir / ("models--" + model_id.replace("/", "--"))


def locate_model(model_dir: Path, model_id: str) -> Path:
    """The snapshot folder of ``model_id`` in the hub cache at ``model_dir``."""
    try:
        return Path(snapshot_download(model_id, cache_dir=model_dir, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelNotFound(
            f"model {model_id} is not in MODEL_DIR={model_dir} "
            f"(looked for {cache_folder(model_dir, model_id)}/snapshots/); download it first with "
            f"`hf download {model_id} --cache-dir {model_dir}` and mount that folder"
        ) from None
