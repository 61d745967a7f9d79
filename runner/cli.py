"""The ``ai-runner`` command: ``serve`` (the container's command), ``healthcheck``,
``check-config``, ``tiny-models``, ``generate`` and ``demo``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def _serve(_: argparse.Namespace) -> int:
    # Models load from MODEL_DIR only; what it lacks is fetched as ai-runner fetches it
    # (runner/hub.py), unless the operator sets HF_HUB_OFFLINE=1. Set before any hub import.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from runner.app import registered_pipelines
    from runner.logs import configure_logging
    from runner.settings import SettingsError, load_settings

    try:
        settings = load_settings(registered_pipelines())
    except SettingsError as exc:
        print(f"ai-runner: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.verbose_logging)
    from runner.server import serve

    serve(settings)
    return 0


def _healthcheck(args: argparse.Namespace) -> int:
    """For Docker's HEALTHCHECK: healthy while the runner answers and is not ERROR."""
    import httpx

    from runner.settings import ServerSettings, SettingsError, load_group

    url = args.url
    if url is None:
        try:
            url = f"http://127.0.0.1:{load_group(ServerSettings).port}/health"
        except SettingsError as exc:
            print(f"unhealthy: {exc}")
            return 1
    try:
        status = httpx.get(url, timeout=5.0).json()["status"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        print(f"unhealthy: {url} did not answer ({type(exc).__name__})")
        return 1
    print(status)
    return 1 if status == "ERROR" else 0


def _check_config(args: argparse.Namespace) -> int:
    from runner.check_config import run
    from runner.settings import HubSettings, SettingsError, load_group

    try:
        hub = load_group(HubSettings)
    except SettingsError as exc:
        print(f"ai-runner: error: {exc}", file=sys.stderr)
        return 2
    # An operator's models folder is go-livepeer's default, not the container's /models.
    given = "model_dir" in hub.model_fields_set
    model_dir = Path(args.models_dir or (hub.model_dir if given else "~/.lpData/models"))
    return run(Path(args.config), model_dir.expanduser(), args.gpus)


def _tiny_models(args: argparse.Namespace) -> int:
    from runner.logs import configure_logging
    from tiny_models import RECIPES, build

    configure_logging(verbose=False)
    if args.list:
        for name, recipe in RECIPES.items():
            print(f"{name}\t{recipe.description}")
        return 0
    try:
        build(Path(args.model_dir), only=args.only or None, seed=args.seed)
    except ValueError as exc:
        print(f"ai-runner: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _generate(args: argparse.Namespace) -> int:
    from runner.generate import GenerateError, run

    try:
        return run(Path(args.root), check=args.check)
    except GenerateError as exc:
        print(f"ai-runner: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    """The quick start: the tiny SD and its tiny safety checker, built into ``--model-dir``
    where absent, served by ``serve`` as a container serves a real model."""
    # The settings are those of the environment, with the demo's model in place of any other;
    # the tiny models are local, so the hub is never asked. Set before any hub import.
    from tiny_models import TINY_SAFETY_CHECKER, TINY_SD

    model_dir = Path(args.model_dir).resolve()
    os.environ.update(
        PIPELINE="text-to-image",
        MODEL_ID=TINY_SD,
        SAFETY_CHECKER_ID=TINY_SAFETY_CHECKER,
        MODEL_DIR=str(model_dir),
        HOST=args.host,
        PORT=str(args.port),
        HF_HUB_OFFLINE="1",
    )
    from runner.logs import configure_logging
    from tiny_models import ensure

    configure_logging(verbose=False)
    ensure(model_dir, [TINY_SD, TINY_SAFETY_CHECKER])
    print(
        f"try: curl -s http://{args.host}:{args.port}/text-to-image "
        """-H 'Content-Type: application/json' -d '{"prompt": "a cat", "width": 256, """
        """"height": 256, "num_inference_steps": 4}'""",
        flush=True,
    )
    return _serve(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ai-runner", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="serve PIPELINE with MODEL_ID from MODEL_DIR (settings from the environment)"
    )
    serve.set_defaults(run=_serve)
    health = commands.add_parser(
        "healthcheck", help="exit 0 if the runner on PORT answers /health and is not ERROR"
    )
    health.add_argument("--url", help="the /health URL (default: 127.0.0.1 on PORT)")
    health.set_defaults(run=_healthcheck)
    check = commands.add_parser(
        "check-config", help="check an aiModels.json against the models folder and the GPUs"
    )
    check.add_argument("config", help="path to aiModels.json")
    check.add_argument(
        "--models-dir", help="the models folder (default: $MODEL_DIR, else ~/.lpData/models)"
    )
    check.add_argument("--gpus", type=int, help="GPU count, when NVML cannot tell")
    check.set_defaults(run=_check_config)
    tiny = commands.add_parser(
        "tiny-models", help="write tiny random-weight models into a hub-cache folder"
    )
    tiny.add_argument("model_dir", nargs="?", default="./tiny-models", help="folder to write into")
    tiny.add_argument("--only", action="append", metavar="ID", help="build only this model id")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--list", action="store_true", help="list the tiny models and exit")
    tiny.set_defaults(run=_tiny_models)
    generate = commands.add_parser(
        "generate",
        help="write docker-bake.hcl's and scripts/download_models.sh's tables from the registry",
    )
    generate.add_argument("--root", default=".", help="the repository's root (default: here)")
    generate.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    generate.set_defaults(run=_generate)
    demo = commands.add_parser(
        "demo", help="build the tiny text-to-image model where absent and serve it"
    )
    demo.add_argument(
        "--model-dir", default="./tiny-models", help="folder of the tiny models (built if absent)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    logging.captureWarnings(True)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
