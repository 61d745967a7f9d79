"""Model families whose own defaults replace the contract's when a request leaves them.

Few-step distilled checkpoints (Turbo, Lightning) make noise at the contract's 50 steps and
7.5 guidance; a request that sets either value explicitly still gets what it asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    steps: int
    guidance_scale: float


# Matched against the model id, first match wins.
FAMILIES: tuple[tuple[re.Pattern[str], Family], ...] = (
    (re.compile(r"turbo", re.IGNORECASE), Family("Turbo", steps=2, guidance_scale=0.0)),
    (re.compile(r"lightning", re.IGNORECASE), Family("Lightning", steps=6, guidance_scale=1.5)),
)


def family_of(model_id: str) -> Family | None:
    return next((family for pattern, family in FAMILIES if pattern.search(model_id)), None)
