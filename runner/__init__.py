"""The runner: settings, HTTP layer, health, media, hardware and metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ai-runner")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
