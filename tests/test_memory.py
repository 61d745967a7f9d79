"""Memory returned to the system after large requests (issue 13, finding 12): glibc kept what
big audio requests freed (RSS 3.1-3.4 GB after them, from 0.94), and the image routes kept
0.2-1.7 GB more after large uploads."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import serving
from helpers import encode_audio, tone

from runner.memory import Trimmer, can_trim, trim
from tiny_models import TINY_WHISPER

glibc_only = pytest.mark.skipif(not can_trim(), reason="the C library has no malloc_trim")


def resident_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@glibc_only
def test_trim_returns_the_heaps_free_memory():
    # 400 MB in blocks small enough for the heap, freed but for one in a hundred, which
    # keeps the heap from shrinking by itself.
    blocks = [np.ones(40_000, np.uint8) for _ in range(10_000)]
    kept = blocks[::100]
    before = resident_mib()
    del blocks
    freed = resident_mib()
    assert freed > before - 100  # glibc kept it
    assert trim()
    assert resident_mib() < freed - 300
    assert len(kept) == 100


def trims(client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("runner_memory_trims_total "):
            return float(line.split()[1])
    raise AssertionError("no runner_memory_trims_total")


@glibc_only
def test_a_large_request_is_followed_by_a_trim_and_a_small_one_is_not(make_settings):
    settings = make_settings(
        pipeline="audio-to-text", model_id=TINY_WHISPER, memory_trim_bytes=200_000
    )
    small = encode_audio(tone(1.0), 16_000, "wav", "pcm_s16le")  # 32 KB
    large = encode_audio(tone(10.0), 16_000, "wav", "pcm_s16le")  # 320 KB
    with serving(settings) as client:
        files = {"audio": ("a.wav", small)}
        assert client.post("/audio-to-text", files=files).status_code == 200
        assert trims(client) == 0
        files = {"audio": ("a.wav", large)}
        assert client.post("/audio-to-text", files=files).status_code == 200
        deadline = time.monotonic() + 10
        while trims(client) < 1:
            assert time.monotonic() < deadline, "no trim after a large request"
            time.sleep(0.02)
        assert trims(client) == 1


@glibc_only
def test_a_trim_waits_until_requests_stop_coming_and_none_is_in_flight():
    """malloc_trim holds the heap's lock while it walks it, so the event loop's allocations
    wait: the attack benchmark's refused large bodies, each followed by a trim, stalled
    /health for 260 ms. A trim now waits for a quiet moment."""
    trimmed: list[float] = []
    busy = [True]
    trimmer = Trimmer(1000, lambda: trimmed.append(time.monotonic()), lambda: busy[0], 0.2)
    trimmer.after_request(5000)
    traffic_until = time.monotonic() + 0.6
    while time.monotonic() < traffic_until:  # requests keep coming and going
        trimmer.activity()
        time.sleep(0.01)
    assert not trimmed
    quiet_from = time.monotonic()
    while time.monotonic() < quiet_from + 0.5:  # no request comes, but one is in flight
        assert not trimmed
        time.sleep(0.01)
    busy[0] = False
    freed_at = time.monotonic()
    deadline = freed_at + 5
    while not trimmed:
        assert time.monotonic() < deadline, "no trim once the runner went quiet"
        time.sleep(0.01)
    assert trimmed[0] >= freed_at and len(trimmed) == 1
