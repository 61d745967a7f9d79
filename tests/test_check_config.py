"""ai-runner check-config: one line per finding about an operator's aiModels.json."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from runner.check_config import GiB, Gpu, check
from runner.cli import main
from tiny_models import TINY_BARK, TINY_SD, TINY_SDXL
from tiny_models.hub_layout import snapshot_folder

H100 = Gpu(0, "NVIDIA H100", 80 * GiB)


@pytest.fixture(scope="module")
def model_dir(tiny):
    return tiny.need(TINY_SD, TINY_SDXL, TINY_BARK)


def lines(findings):
    return [str(f) for f in findings]


@pytest.fixture(scope="module")
def health_server():
    """A stand-in external runner whose /health says IDLE when the token is right."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            ok = self.path == "/health" and self.headers.get("Authorization") == "Bearer t0k"
            body = json.dumps({"status": "IDLE"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_good_config_has_no_errors(model_dir):
    entries = [
        {"pipeline": "text-to-image", "model_id": TINY_SD, "warm": True, "price_per_unit": 1}
    ]
    findings = check(entries, model_dir, [H100])
    assert [f.level for f in findings] == ["info"]
    assert lines(findings)[0].startswith(
        f"info: entry 1 (text-to-image {TINY_SD}): needs about 1.5 GiB of GPU memory"
    )


def test_each_problem_is_one_line(model_dir):
    entries = [
        {"pipeline": "text-to-imag", "model_id": TINY_SD},
        {"pipeline": "text-to-image", "model_id": "org/absent", "colour": "blue"},
        {
            "pipeline": "text-to-image",
            "model_id": TINY_SDXL,
            "warm": True,
            "optimization_flags": {"SFAST": True, "DEEPCACHE": True},
        },
        {
            "pipeline": "text-to-image",
            "model_id": TINY_SD,
            "optimization_flags": {"DEEPCACHE": True},
        },
        {
            "pipeline": "llm",
            "model_id": "meta-llama/Llama-3.1-8B-Instruct",
            "warm": True,
            "optimization_flags": {"SFAST": True},
        },
        {
            "pipeline": "text-to-image",
            "model_id": "ByteDance/SDXL-Lightning-4step",
            "warm": True,
            "optimization_flags": {"DEEPCACHE": True},
        },
    ]
    found = lines(check(entries, model_dir, [H100]))
    assert found[0].startswith(
        f"error: entry 1 (text-to-imag {TINY_SD}): unknown pipeline 'text-to-imag'"
    )
    assert "warning: entry 2 (text-to-image org/absent): unknown field 'colour' is ignored" in found
    assert any(
        line.startswith(
            "error: entry 2 (text-to-image org/absent): model org/absent is not in MODEL_DIR"
        )
        for line in found
    )
    assert (
        f"error: entry 3 (text-to-image {TINY_SDXL}): SFAST and DEEPCACHE cannot be combined"
        in found
    )
    assert (
        f"warning: entry 4 (text-to-image {TINY_SD}): optimization flags apply to warm models only"
        in found
    )
    assert any("entry 5" in line and "SFAST does nothing for llm" in line for line in found)
    assert any("entry 5" in line and "does not serve llm yet" in line for line in found)
    assert any(
        "entry 6" in line and "DEEPCACHE degrades few-step Lightning/Turbo models" in line
        for line in found
    )
    assert any(  # ai-runner fetches the SDXL base at load, and so does this runner
        line.startswith("warning: entry 6")
        and "model stabilityai/stable-diffusion-xl-base-1.0 is not in" in line
        and line.endswith("the runner fetches it at load unless HF_HUB_OFFLINE=1")
        for line in found
    )
    assert "error: GPUs: 3 warm models but only 1 GPU(s)" in found


def test_a_model_too_large_for_every_gpu_is_an_error(model_dir):
    small = Gpu(0, "tiny", 1 * GiB)
    found = lines(
        check(
            [{"pipeline": "text-to-image", "model_id": TINY_SD, "warm": True}], model_dir, [small]
        )
    )
    assert found == [
        f"error: entry 1 (text-to-image {TINY_SD}): needs about 1.5 GiB of GPU memory; "
        "the largest GPU has 1"
    ]


def test_external_runners_must_answer_health(model_dir, health_server):
    entries = [
        {
            "pipeline": "llm",
            "model_id": "meta/llama",
            "url": health_server,
            "token": "t0k",
            "capacity": 4,
        },
        {"pipeline": "llm", "model_id": "meta/llama", "url": health_server, "token": "wrong"},
        {"pipeline": "llm", "model_id": "meta/llama", "url": "http://127.0.0.1:9"},
    ]
    found = lines(check(entries, model_dir, [H100]))
    assert found == [
        f"error: entry 2 (llm meta/llama): external runner {health_server}/health answers 401",
        "error: entry 3 (llm meta/llama): external runner http://127.0.0.1:9/health does not "
        "answer (ConnectError)",
    ]


def test_the_command_exits_non_zero_on_errors(model_dir, tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"pipeline": "text-to-image", "model_id": TINY_SD}]))
    assert main(["check-config", str(good), "--models-dir", str(model_dir)]) == 0
    assert capsys.readouterr().out.strip().endswith("0 error(s), 0 warning(s)")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps([{"pipeline": "text-to-image", "model_id": "org/absent", "warm": True}])
    )
    assert main(["check-config", str(bad), "--models-dir", str(model_dir), "--gpus", "1"]) == 1
    assert "1 error(s)" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text("[")
    assert main(["check-config", str(broken), "--models-dir", str(model_dir)]) == 1


def test_sam2_is_found_as_metas_checkpoint_or_its_transformers_conversion(tmp_path):
    """ai-runner's runner/dl_checkpoints.sh fetches facebook/sam2-hiera-large's *.pt and *.yaml:
    that is enough; a folder filled with the -hf conversion instead is fine too."""
    from tiny_models.hub_layout import snapshot_folder
    from tiny_models.vision import build_sam2_meta, build_sam2_meta_hf

    entry = {"pipeline": "segment-anything-2", "model_id": "facebook/sam2-hiera-large"}
    entries = [{**entry, "warm": True}]
    missing = lines(check(entries, tmp_path / "empty", [H100]))
    assert missing[0].startswith(
        "error: entry 1 (segment-anything-2 facebook/sam2-hiera-large): model "
        "facebook/sam2-hiera-large is not in MODEL_DIR="
    )
    converted = tmp_path / "converted"
    build_sam2_meta_hf(snapshot_folder(converted, "facebook/sam2-hiera-large-hf", "1"), seed=0)
    assert [f.level for f in check(entries, converted, [H100])] == ["info"]
    meta = tmp_path / "meta"
    build_sam2_meta(snapshot_folder(meta, "facebook/sam2-hiera-large", "1"), seed=0)
    found = check(entries, meta, [H100])
    assert [f.level for f in found] == ["info"]
    assert "needs about" in str(found[0])


def fake_snapshots(model_dir, model_types: dict[str, str]):
    for model_id, model_type in model_types.items():
        snapshot = snapshot_folder(model_dir, model_id, "1")
        (snapshot / "config.json").write_text(json.dumps({"model_type": model_type}))


def test_bark_on_the_worker_names_the_image_override_it_needs(model_dir):
    # go-livepeer ai/worker/docker.go starts livepeer/ai-runner:text-to-speech, the Parler image.
    findings = check([{"pipeline": "text-to-speech", "model_id": TINY_BARK}], model_dir, [H100])
    assert lines(findings) == [
        "warning: text-to-speech: Bark and MMS-TTS are served by the image tagged "
        "text-to-speech-bark; the worker starts livepeer/ai-runner:text-to-speech (Parler-TTS) "
        "unless told otherwise: -aiRunnerImageOverrides "
        '\'{"batch": {"text-to-speech": "livepeer/ai-runner:text-to-speech-bark"}}\''
    ]


def test_parler_alone_needs_nothing_more(tmp_path):
    fake_snapshots(tmp_path, {"parler-tts/parler-tts-large-v1": "parler_tts"})
    entries = [{"pipeline": "text-to-speech", "model_id": "parler-tts/parler-tts-large-v1"}]
    assert check(entries, tmp_path, [H100]) == []


def test_parler_and_bark_on_one_worker_is_an_error(tmp_path):
    fake_snapshots(tmp_path, {"parler-tts/parler-tts-large-v1": "parler_tts", "suno/bark": "bark"})
    entries = [
        {"pipeline": "text-to-speech", "model_id": "parler-tts/parler-tts-large-v1"},
        {"pipeline": "text-to-speech", "model_id": "suno/bark"},
    ]
    assert lines(check(entries, tmp_path, [H100])) == [
        "error: text-to-speech: Parler-TTS (entry 1 (text-to-speech "
        "parler-tts/parler-tts-large-v1)) and Bark/MMS-TTS (entry 2 (text-to-speech suno/bark)) "
        "need different images, and the worker starts one image per pipeline: serve one of "
        "them as an external runner (url)"
    ]
