"""The model's life as one state machine (runner/lifecycle.py): the moves it allows, what
/health says in each state, and a drain that leaves the model's own state to tell."""

from __future__ import annotations

import asyncio

from runner.lifecycle import Lifecycle, ModelState
from runner.schemas import HealthStatus


def test_a_load_moves_through_warming_to_ready():
    life = Lifecycle()
    assert life.state is ModelState.LOADING and life.health(busy=False) is HealthStatus.LOADING
    life.warming()
    assert life.state is ModelState.WARMING and life.health(busy=False) is HealthStatus.LOADING
    life.ready()
    assert life.state is ModelState.READY and life.loaded
    assert life.health(busy=False) is HealthStatus.IDLE
    assert life.health(busy=True) is HealthStatus.OK


def test_a_failure_is_for_good_and_wins_over_a_drain():
    life = Lifecycle()
    life.ready()
    life.unusable("the device fell off the bus")
    life.ready()  # no way back
    life.drain()
    assert life.state is ModelState.FAILED and life.draining
    assert life.health(busy=False) is HealthStatus.ERROR
    assert life.failure == "the device fell off the bus" and life.load_error is None


def test_a_drain_during_the_load_keeps_telling_the_load():
    life = Lifecycle()
    life.drain()
    assert life.state is ModelState.DRAINING and life.health(busy=False) is HealthStatus.LOADING
    life.ready()  # the load ends during the drain
    assert life.state is ModelState.DRAINING and life.loaded
    assert life.health(busy=True) is HealthStatus.OK


def test_waiting_for_the_load_tells_how_it_ended():
    async def wait(end) -> tuple[bool, str | None]:
        life = Lifecycle()
        life.watch_load()
        waiter = asyncio.ensure_future(life.wait_loaded())
        await asyncio.sleep(0)
        assert not waiter.done()
        await asyncio.to_thread(end, life)  # the loader thread ends the load
        return await asyncio.wait_for(waiter, timeout=5), life.load_error

    assert asyncio.run(wait(Lifecycle.ready)) == (True, None)
    failed = asyncio.run(wait(lambda life: life.load_failed("no weights in MODEL_DIR")))
    assert failed == (False, "no weights in MODEL_DIR")
