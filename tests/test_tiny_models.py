"""The tiny-model builder: hub-cache layout, real tokenizer files, determinism."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import TinyModels

from runner.cli import main
from runner.hub import locate_model
from tiny_models import TINY_SAFETY_CHECKER, TINY_SD, TINY_SDXL, ensure


@pytest.fixture(scope="module")
def model_dir(tiny):
    return tiny.need(TINY_SD, TINY_SDXL)


def _digest(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.safetensors"))
    }


def test_models_are_in_the_hub_cache_layout(model_dir):
    for model_id in (TINY_SD, TINY_SDXL):
        snapshot = locate_model(model_dir, model_id)
        root = model_dir / ("models--" + model_id.replace("/", "--"))
        assert snapshot.parent == root / "snapshots"
        assert (root / "refs" / "main").read_text() == snapshot.name
        index = json.loads((snapshot / "model_index.json").read_text())
        assert index["_class_name"] in {"StableDiffusionPipeline", "StableDiffusionXLPipeline"}
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
            assert (snapshot / "tokenizer" / name).exists()
        vocab = json.loads((snapshot / "tokenizer" / "vocab.json").read_text())
        assert {"<|startoftext|>", "<|endoftext|>"} <= set(vocab)


def test_the_cli_builds_the_same_weights_from_the_same_seed(tmp_path, model_dir):
    assert main(["tiny-models", str(tmp_path), "--only", TINY_SD]) == 0
    rebuilt = _digest(locate_model(tmp_path, TINY_SD))
    assert rebuilt and rebuilt == _digest(locate_model(model_dir, TINY_SD))
    assert main(["tiny-models", str(tmp_path / "other"), "--only", TINY_SD, "--seed", "1"]) == 0
    assert _digest(locate_model(tmp_path / "other", TINY_SD)) != rebuilt


def test_an_unknown_tiny_model_is_an_error(tmp_path, capsys):
    assert main(["tiny-models", str(tmp_path), "--only", "tiny-random/nothing"]) == 2
    assert "unknown tiny models" in capsys.readouterr().err


def test_the_test_session_builds_a_model_once_and_only_when_asked(tmp_path):
    models = TinyModels(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert models.need(TINY_SAFETY_CHECKER, "org/not-a-tiny-model") == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == ["models--tiny-random--safety-checker"]
    config = locate_model(tmp_path, TINY_SAFETY_CHECKER) / "config.json"
    written = config.stat().st_mtime_ns
    models.need(TINY_SAFETY_CHECKER)
    assert config.stat().st_mtime_ns == written


def test_ensure_builds_only_what_the_folder_lacks(tmp_path):
    assert ensure(tmp_path, [TINY_SAFETY_CHECKER, TINY_SAFETY_CHECKER]) == [TINY_SAFETY_CHECKER]
    snapshot = locate_model(tmp_path, TINY_SAFETY_CHECKER)
    built = _digest(snapshot)
    assert built  # weights were written
    assert ensure(tmp_path, [TINY_SAFETY_CHECKER]) == []
    assert locate_model(tmp_path, TINY_SAFETY_CHECKER) == snapshot and _digest(snapshot) == built
