"""Capped exponential back-off with jitter, shared by stream reconnects and webhook retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def backoff_delay(attempt: int, base_s: float, cap_s: float, jitter: float = 0.1, rng: random.Random | None = None) -> float:
    """Seconds to wait before try number `attempt` + 1 (attempt 1 waits base_s): base x 2^(attempt-1),
    capped, then spread by +-jitter so that many clients do not retry in step."""
    delay = min(cap_s, base_s * (2 ** max(0, min(attempt - 1, 60))))
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    return max(0.0, min(delay, cap_s))


@dataclass
class Backoff:
    """Counts consecutive failures; :meth:`reset` after a success."""

    base_s: float
    cap_s: float
    jitter: float = 0.1
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        self.failures += 1
        return backoff_delay(self.failures, self.base_s, self.cap_s, self.jitter)

    def reset(self) -> None:
        self.failures = 0
