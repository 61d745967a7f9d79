"""Logging: one format for the runner, uvicorn and the libraries it drives."""

from __future__ import annotations

import logging
import sys
import warnings


class _PlainUvicornName(logging.Filter):
    """uvicorn logs start-up lines as ``uvicorn.error``; operators grep for "error"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
        return True


def configure_logging(verbose: bool) -> None:
    # diffusers renamed torch_dtype to dtype in 2026; the runner keeps the name that every
    # supported diffusers release understands.
    warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    handler.addFilter(_PlainUvicornName())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "PIL", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def quiet_progress_bars() -> None:
    """Loading progress bars are noise in a container log; the runner logs what it loads.

    Each image installs only its group's libraries: quiet those that are there."""
    from importlib import import_module
    from importlib.util import find_spec

    for library in ("diffusers", "transformers"):
        if find_spec(library):
            import_module(library).utils.logging.disable_progress_bar()
