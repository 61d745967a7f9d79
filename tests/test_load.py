"""benchmarks/bench_load.py's core in a tiny configuration, so the benchmark cannot rot:
every request gets an answer it is allowed, or hung up on purpose, and the runner drains."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import served_over_tcp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_load  # noqa: E402


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
