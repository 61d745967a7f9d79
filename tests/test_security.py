"""What the runner must never reveal: its token, its paths, its users' prompts and media."""

from __future__ import annotations

import hmac
import logging

import httpx
import pytest
from conftest import serving

from runner import auth
from runner.errors import Unauthorized

TOKEN = "tok-9f3a1c7e55d2-private"
PROMPT = "a portrait of my neighbour, private-prompt-7731"


@pytest.mark.slow
def test_the_token_and_paths_never_leave_the_runner(runner_process, model_dir):
    runner = runner_process(AUTH_TOKEN=TOKEN, VERBOSE_LOGGING="1")
    runner.wait_status({"IDLE"})
    good = {"Authorization": f"Bearer {TOKEN}"}
    body = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
    answers = [
        httpx.post(runner.url + "/text-to-image", json=body, timeout=60),
        httpx.post(
            runner.url + "/text-to-image",
            json=body,
            headers={"Authorization": f"Bearer {TOKEN[:-1]}x"},
            timeout=60,
        ),
        httpx.post(runner.url + "/text-to-image", json=body, headers=good, timeout=60),
        httpx.post(
            runner.url + "/text-to-image", json=body | {"width": 7}, headers=good, timeout=60
        ),
        httpx.post(runner.url + "/text-to-image", content=b"{", headers=good, timeout=60),
    ]
    assert [a.status_code for a in answers] == [401, 401, 200, 400, 422]
    for path in ("/health", "/version", "/hardware/info", "/hardware/stats", "/metrics"):
        answers.append(httpx.get(runner.url + path, headers=good, timeout=10))
        assert answers[-1].status_code == 200, path
    for answer in answers:
        exposed = answer.text + str(answer.headers)
        assert TOKEN not in exposed
        assert str(model_dir) not in exposed
    info = answers[-3].json()  # /hardware/info
    assert set(info) == {"pipeline", "model_id", "gpu_info"}
    assert TOKEN not in runner.log()


def test_the_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    auth.check_bearer(f"Bearer {TOKEN}", TOKEN)
    with pytest.raises(Unauthorized):
        auth.check_bearer("Bearer nope", TOKEN)
    assert compared == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]


@pytest.mark.parametrize("verbose", [False, True])
def test_prompts_reach_the_log_only_when_verbose_logging_is_on(make_settings, caplog, verbose):
    with caplog.at_level(logging.DEBUG), serving(make_settings(verbose_logging=verbose)) as client:
        body = {"prompt": PROMPT, "width": 64, "height": 64, "num_inference_steps": 1}
        assert client.post("/text-to-image", json=body).status_code == 200
        assert client.post("/text-to-image", json=body | {"width": 9}).status_code == 400
    assert (PROMPT in caplog.text) is verbose


def test_uploaded_media_never_reaches_the_log(make_settings, caplog):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buffer, format="PNG")
    settings = make_settings(pipeline="image-to-image", verbose_logging=True)
    with caplog.at_level(logging.DEBUG), serving(settings) as client:
        response = client.post(
            "/image-to-image",
            data={"prompt": "make it blue", "num_inference_steps": "2", "seed": "1"},
            files={"image": ("in.png", buffer.getvalue(), "image/png")},
        )
    assert response.status_code == 200
    assert "image=<image 64x48>" in caplog.text
    assert "PNG" not in caplog.text and "base64" not in caplog.text


@pytest.mark.slow
def test_caller_text_cannot_forge_or_flood_the_log(runner_process):
    """Issue 13, findings 2 and 7: a prompt past the text encoder's 77 tokens made diffusers
    log the dropped words; a percent-encoded newline in the path forged a log line."""
    runner = runner_process(AUTH_TOKEN=TOKEN)
    runner.wait_status({"IDLE"})
    good = {"Authorization": f"Bearer {TOKEN}"}
    tail = "private-tail-word-4410"
    body = {
        "prompt": " ".join(["a red cat"] * 60 + [tail]),
        "width": 64,
        "height": 64,
        "num_inference_steps": 1,
    }
    answer = httpx.post(runner.url + "/text-to-image", json=body, headers=good, timeout=60)
    assert answer.status_code == 200
    forged = "2026-11-30 14:50:00 ERROR runner: FORGED"
    assert httpx.get(f"{runner.url}/x%0A{forged}", timeout=10).status_code == 401
    assert httpx.get(f"{runner.url}/{'y' * 10_000}", timeout=10).status_code == 401
    log = runner.log()
    assert tail not in log
    assert "a prompt was longer than the text encoder accepts and its end was dropped" in log
    assert not any(line.startswith(forged) for line in log.splitlines())
    assert "/x\\n2026-11-30" in log  # the path is logged, escaped
    assert max(len(line) for line in log.splitlines()) < 1000


@pytest.mark.parametrize("verbose", [False, True])
def test_a_live_runner_session_is_logged_by_its_id_never_its_token(make_settings, caplog, verbose):
    """go-livepeer's live-runner proxy (server/ai_http.go, CONTRACT.md "The live runner") adds
    Livepeer-Runner-Route, -Session-Id, -Session-Token and -Session-Control to what it forwards:
    the request is served as any other, the log names the session, the token never appears."""
    session_token = "sess-tok-51c0e2-private"
    proxied = {
        "Livepeer-Runner-Route": "runner-7",
        "Livepeer-Session-Id": "session-42\n2026-11-30 FORGED",
        "Livepeer-Session-Token": session_token,
        "Livepeer-Session-Control": "https://orch.example:8935/runner/runner-7/session/42",
    }
    with caplog.at_level(logging.DEBUG), serving(make_settings(verbose_logging=verbose)) as client:
        body = {"prompt": "a cat", "width": 64, "height": 64, "num_inference_steps": 1}
        answer = client.post("/text-to-image", json=body, headers=proxied)
        assert answer.status_code == 200
        assert len(answer.json()["images"]) == 1
    logged = [r.getMessage() for r in caplog.records if "POST /text-to-image" in r.getMessage()]
    assert len(logged) == 1
    assert " session=session-42\\n2026-11-30 FORGED POST /text-to-image status=200" in logged[0]
    assert session_token not in caplog.text
    assert session_token not in answer.text + str(answer.headers)
