"""The parts of docs/architecture.md and the imports allowed between them, checked on the
source: a part that imports one it may not is a failure naming the module and the import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK = "fastapi/starlette"

PARTS = {
    "settings": ["runner.settings"],
    "errors": ["runner.errors"],
    "schemas": ["runner.schemas"],
    "registry": ["pipelines.registry"],
    "services": [
        "runner.cancellation",
        "runner.device",
        "runner.hub",
        "runner.hardware",
        "runner.logs",
    ],
    "media": ["runner.media"],
    "pipelines": ["pipelines"],
    "runtime": [
        "runner.runtime",
        "runner.lifecycle",
        "runner.admission",
        "runner.executor",
        "runner.warmup",
        "runner.memory",
    ],
    "live runner": ["runner.live_runner"],
    "http": [
        "runner.app",
        "runner.routes",
        "runner.gate",
        "runner.error_answers",
        "runner.json_bodies",
        "runner.auth",
        "runner.metrics",
        "runner.connections",
        "runner.server",
    ],
    "tools": ["runner.cli", "runner.check_config", "runner.generate"],
    "tiny models": ["tiny_models"],
    FRAMEWORK: ["fastapi", "starlette"],
}
BELOW_HTTP = ["settings", "registry", "errors", "schemas", "services", "media", "pipelines"]
ALLOWED = {
    "settings": [],
    "errors": [],
    "schemas": [],
    "registry": ["settings"],
    "services": ["settings", "errors", "schemas"],
    "media": ["settings", "errors", "services"],
    "pipelines": ["settings", "registry", "errors", "schemas", "services", "media"],
    "runtime": BELOW_HTTP,
    "live runner": ["settings", "errors", "services", "runtime"],
    "http": [*BELOW_HTTP, "runtime", "live runner", FRAMEWORK],
    "tools": [*BELOW_HTTP, "runtime", "live runner", "http", "tiny models", FRAMEWORK],
    "tiny models": ["services", "pipelines"],
}


def part_of(module: str) -> str | None:
    """The part a module belongs to (the longest prefix listed), None for the package's
    ``__init__`` (the version), which every part may read."""
    best = None
    for part, prefixes in PARTS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (part, prefix)
    return best[0] if best else None


def runtime_imports(path: Path) -> set[str]:
    """The modules ``path`` imports, leaving out those only type checkers read."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in ("runner", "pipelines", "tiny_models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def test_every_module_belongs_to_a_part():
    unplaced = [m for m in project_modules() if m not in ("runner",) and part_of(m) is None]
    assert not unplaced, f"modules in no part of docs/architecture.md: {unplaced}"


def test_parts_import_only_what_they_may():
    wrong = []
    for module, path in project_modules().items():
        source = part_of(module)
        if source is None:
            continue
        for imported in runtime_imports(path):
            target = part_of(imported)
            if target is None or target == source:
                continue
            if target not in ALLOWED[source]:
                wrong.append(f"{module} ({source}) imports {imported} ({target})")
    assert not wrong, "imports docs/architecture.md does not allow:\n" + "\n".join(sorted(wrong))


def test_the_check_finds_a_forbidden_import(tmp_path):
    """The checker itself: a settings module importing the registry is caught."""
    module = tmp_path / "settings.py"
    module.write_text("from pipelines.registry import REGISTRY\nimport runner.errors\n")
    imported = runtime_imports(module)
    assert {part_of(name) for name in imported} - {None} == {"registry", "errors"}
    assert "registry" not in ALLOWED["settings"]


def test_the_architecture_document_names_every_part():
    document = (ROOT / "docs" / "architecture.md").read_text()
    for part in PARTS:
        if part != FRAMEWORK:
            assert f"| {part} |" in document, part
