"""pipelines/registry.py is the one source of pipeline facts: the files that cannot import
it (docker-bake.hcl, scripts/download_models.sh) carry generated copies that must match."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.registry import IMAGES, LATEST, REGISTRY, pipeline_tag, served_by
from runner.cli import main
from runner.generate import BEGIN, END, GENERATED, generated

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_files_match_what_ai_runner_generate_writes():
    stale = [str(path) for path, (now, wanted) in generated(ROOT).items() if now != wanted]
    assert not stale, f"run `ai-runner generate`: {stale} differ from pipelines/registry.py"


def test_a_generated_file_says_so_in_its_first_lines():
    for relative in GENERATED:
        head = "\n".join((ROOT / relative).read_text().splitlines()[:8])
        assert "pipelines/registry.py" in head and "`ai-runner generate`" in head, relative


def test_generate_rewrites_a_stale_table_and_check_reports_it(tmp_path, capsys):
    for relative in GENERATED:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, tmp_path / relative)
    script = tmp_path / "scripts" / "download_models.sh"
    committed = script.read_text()
    script.write_text(committed.replace("[upscale]=", "[upscale]=acme/stale-"))
    assert main(["generate", "--root", str(tmp_path), "--check"]) == 1
    assert "scripts/download_models.sh" in capsys.readouterr().out
    assert "acme/stale-" in script.read_text()  # --check writes nothing
    assert main(["generate", "--root", str(tmp_path)]) == 0
    assert script.read_text() == committed
    assert script.stat().st_mode & 0o111  # still executable
    assert main(["generate", "--root", str(tmp_path), "--check"]) == 0


def test_generate_refuses_a_file_without_its_generated_block(tmp_path, capsys):
    for relative in GENERATED:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        text = (ROOT / relative).read_text()
        (tmp_path / relative).write_text(text.replace(BEGIN, "# begin").replace(END, "# end"))
    assert main(["generate", "--root", str(tmp_path)]) == 2
    assert "has no generated block" in capsys.readouterr().err


def test_every_entry_names_known_images():
    for pipeline, entry in REGISTRY.items():
        unknown = set(entry.images) - set(IMAGES)
        assert not unknown, f"{pipeline} names images that IMAGES lacks: {unknown}"
    served = {image for entry in REGISTRY.values() for image in entry.images}
    assert served == set(IMAGES), "an image that serves no pipeline"


def test_importing_the_registry_stays_light():
    # pydantic comes with runner.settings (a leaf), whose defaults the registry reads.
    heavy = ["torch", "diffusers", "transformers", "fastapi", "starlette"]
    code = (
        "import sys, pipelines.registry, runner.generate; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_tag_go_livepeer_pulls_is_on_an_image_that_serves_the_pipeline():
    for pipeline, entry in REGISTRY.items():
        if entry.image_tag == LATEST:
            carriers = [image for image in entry.images if IMAGES[image].latest]
        else:
            carriers = [i for i in entry.images if pipeline_tag(i, pipeline) == entry.image_tag]
        assert len(carriers) == 1, f"{pipeline}: :{entry.image_tag} is on {carriers}"


def test_the_operator_guides_image_table_agrees_with_the_registry():
    guide = (ROOT / "docs" / "operators.md").read_text()
    table = guide[guide.index("| image (bake target) |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = cells[1]
    assert set(rows) == set(IMAGES)
    for image, serves in rows.items():
        named = [p for p in REGISTRY if re.search(rf"(?<![\w-]){p}(?![\w-])", serves)]
        assert sorted(named) == sorted(served_by(image)), image
