"""ai-runner check-config: one line per finding about an operator's aiModels.json."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from runner.check_config import GiB, Gpu, check
from runner.cli import main
from runner.tiny_models import TINY_SD, TINY_SDXL

H100 = Gpu(0, "NVIDIA H100", 80 * GiB)


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
