"""Logging: one format for the runner, uvicorn and the libraries it drives."""

from __future__ import annotations

import logging
import sys
import warnings

# Library messages that quote what a caller sent: kept out of the log unless VERBOSE_LOGGING.
_ECHOES_INPUT = ("part of your input was truncated",)
_TRUNCATED = (
    "a prompt was longer than the text encoder accepts and its end was dropped "
    "(VERBOSE_LOGGING=1 logs the dropped text)"
)


def printable(text: str, limit: int = 200) -> str:
    """Caller-sent text (a path, a header) as one bounded log-safe line: control characters
    and non-ASCII escaped, so nobody can forge log lines, and at most ``limit`` characters."""
    escaped = text[:limit].encode("unicode_escape").decode("ascii")
    return escaped + (f"...({len(text)} characters)" if len(text) > limit else "")


class _NoCallerText(logging.Filter):
    """Rewrites library warnings that would echo a prompt into a line that does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("diffusers", "transformers")):
            message = record.getMessage()
            if any(marker in message for marker in _ECHOES_INPUT):
                record.msg, record.args = _TRUNCATED, ()
        return True


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
    if not verbose:
        handler.addFilter(_NoCallerText())
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

    The libraries' own log lines go through the runner's handler (its format, and its filter
    of caller text) instead of the unformatted handler each library installs for itself.
    Each image installs only its own group's libraries, so either may be absent.
    """
    from importlib import import_module

    for library in ("diffusers", "transformers"):
        try:
            module = import_module(f"{library}.utils.logging")
        except ImportError:
            continue
        module.disable_progress_bar()
        module.disable_default_handler()
        module.enable_propagation()
