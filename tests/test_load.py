"""benchmarks/bench_load.py's core in a tiny configuration, so the benchmark cannot rot:
every request gets an answer it is allowed, or hung up on purpose, and the runner drains;
and a small version of its attack mix (issue 13)."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import served_over_tcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import attacks  # noqa: E402
import bench_load  # noqa: E402

MiB = 1024 * 1024


def test_a_small_load_round_loses_nothing_and_answers_only_allowed_statuses(make_settings):
    json_limit = 64 * 1024
    settings = make_settings(
        capacity=1, max_queue=2, auth_token=bench_load.TOKEN, max_json_bytes=json_limit
    )
    mix = bench_load.text_to_image_mix(json_limit=json_limit, long_steps=20)
    with served_over_tcp(settings) as (url, _):
        result = bench_load.run_round(url, mix, requests=30, concurrency=8, seed=3)
    assert len(result.outcomes) == 30
    assert [(o.request_id, o.kind, o.error) for o in result.lost] == []
    assert [(o.request_id, o.kind, o.status) for o in result.unexpected] == []
    assert result.drained_s is not None
    assert result.statuses()[200] >= 1
    assert result.health_ms and result.health_failures == 0
    assert result.cancelled_by_runner <= sum(o.hung_up for o in result.outcomes)


def test_attacks_leave_health_answering_and_legitimate_requests_served(runner_process):
    """The attack mix's core (benchmarks/attacks.py) against ``ai-runner serve``: silent
    sockets past the connection cap, then large bodies with a wrong token, each while
    legitimate requests keep coming. Nothing legitimate is lost or refused while fewer than
    CAPACITY + MAX_QUEUE are in flight, and /health keeps answering (bounds generous for a
    loaded machine; the benchmark's target is 100 ms)."""
    runner = runner_process(
        AUTH_TOKEN=bench_load.TOKEN,
        CAPACITY="1",
        MAX_QUEUE="4",
        HEADER_TIMEOUT="1",
        MAX_CONNECTIONS="32",
    )
    runner.wait_status({"IDLE"})
    mix = [
        attacks.Attack("silent sockets", "text-to-image", attacks.silent_sockets(64)),
        attacks.Attack(
            "refused bodies",
            "text-to-image",
            attacks.refused_bodies(2, attacks.WRONG_TOKEN_BODIES, per_connection=64 * MiB),
        ),
    ]
    for attack in mix:
        result = attacks.run_attack(
            runner.url, attack, places=5, seconds=3, pid=runner.proc.pid, timeout=30
        )
        report = attacks.describe(result)
        assert result.legit.lost == [], report
        assert result.legit.ok >= 1 and not result.legit.other, report
        assert result.legit.refused_under_cap == 0, report
        assert result.health_failures == 0 and max(result.health_ms) < 1000, report
        assert result.drained_s is not None, report
    assert result.counts["wrong token, chunked: 401"] >= 1, report
    assert result.counts["streamed to the end"] == 0, report  # the runner stopped reading
