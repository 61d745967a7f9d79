"""DEEPCACHE: DeepCache reuses the UNet's deep features between denoising steps. It is
switched on for one request at a time, so no cached feature outlives the request that
computed it; few-step models and transformer denoisers are left without it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipelines.compilers import denoiser
from runner.settings import Settings

if TYPE_CHECKING:
    from pipelines.diffusion_families import Family

log = logging.getLogger("pipelines.acceleration")


def deepcache_helper(settings: Settings, pipe: Any, family: Family | None) -> Any | None:
    """DeepCache's helper for ``pipe``, set up; None (said in the log) where it does not apply."""
    s = settings
    unet = getattr(pipe, "unet", None)
    if unet is None:
        log.warning(
            "DEEPCACHE skipped: DeepCache works on UNet denoisers and %s's is a %s",
            type(pipe).__name__,
            type(denoiser(pipe)).__name__,
        )
        return None
    if family is not None and family.steps is not None and family.steps < s.deepcache_min_steps:
        log.warning(
            "DEEPCACHE skipped: %s is a %s model (%d steps by default, below "
            "DEEPCACHE_MIN_STEPS=%d); DeepCache only degrades few-step models",
            s.model_id,
            family.name,
            family.steps,
            s.deepcache_min_steps,
        )
        return None
    branches = 3 * len(unet.down_blocks)
    if s.deepcache_branch >= branches:
        log.warning(
            "DEEPCACHE skipped: DEEPCACHE_BRANCH=%d but this UNet has branches 0 to %d",
            s.deepcache_branch,
            branches - 1,
        )
        return None
    try:
        from DeepCache import DeepCacheSDHelper
    except ImportError as exc:
        log.error("error: DEEPCACHE: DeepCache cannot be imported (%s); serving without it", exc)
        return None
    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=s.deepcache_interval, cache_branch_id=s.deepcache_branch)
    if s.capacity > 1:
        log.warning(
            "DEEPCACHE: requests run one at a time although CAPACITY=%d: DeepCache patches "
            "the UNet they share",
            s.capacity,
        )
    log.info(
        "DEEPCACHE: on for requests of %d denoising steps or more (interval %d, branch %d)",
        s.deepcache_min_steps,
        s.deepcache_interval,
        s.deepcache_branch,
    )
    return helper


def deepcache_wanted(settings: Settings, steps: int, warming: bool) -> bool:
    """Whether DeepCache runs for a request of ``steps`` denoising steps (said in the log
    when it does not, except during the warm-up)."""
    if steps >= settings.deepcache_min_steps:
        return True
    if not warming:
        log.info(
            "DEEPCACHE off for this request: %d denoising steps, below DEEPCACHE_MIN_STEPS=%d",
            steps,
            settings.deepcache_min_steps,
        )
    return False


@contextlib.contextmanager
def deepcache_on(helper: Any, view: Any) -> Iterator[None]:
    """DeepCache for one request: enabling starts from empty caches, disabling drops them.
    It reads the step from the scheduler of the pipeline it helps: the request's view."""
    helper.pipe = view
    helper.enable()
    try:
        yield
    finally:
        helper.disable()
