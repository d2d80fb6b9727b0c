"""From window probabilities to confirmed regions and a clip verdict.

A window is *verified* when p(smoke) reaches the threshold. A region is *confirmed* when k of
its last n windows were verified. The clip score is defined so that it agrees with the verdict:
for each region, the k-th highest probability among any n consecutive windows; the clip is smoke
exactly when the best region's score reaches the threshold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .config import DecisionConfig


@dataclass(frozen=True, slots=True)
class Verdict:
    """One window's decision."""

    verified: bool
    confirmed: bool
    score: float  # k-th highest p over the region's last n windows


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Where smoke was first confirmed in a clip or stream."""

    frame: int  # source frame index
    time_s: float


class RegionDecider:
    """Keeps the last n probabilities of every region and the best score seen."""

    def __init__(self, config: DecisionConfig) -> None:
        self.config = config
        self._recent: dict[int, deque[float]] = {}
        self.best_score = 0.0
        self.first_confirmed: Confirmation | None = None

    def update(self, track_id: int, prob: float, frame_index: int, time_s: float) -> Verdict:
        cfg = self.config
        recent = self._recent.setdefault(track_id, deque(maxlen=cfg.confirm_n))
        recent.append(prob)
        ranked = sorted(recent, reverse=True)
        score = ranked[cfg.confirm_k - 1] if len(ranked) >= cfg.confirm_k else 0.0
        confirmed = score >= cfg.threshold
        self.best_score = max(self.best_score, score)
        if confirmed and self.first_confirmed is None:
            self.first_confirmed = Confirmation(frame_index, time_s)
        return Verdict(verified=prob >= cfg.threshold, confirmed=confirmed, score=score)

    def forget(self, live_track_ids: set[int]) -> None:
        """Drop state of regions the tube builder no longer follows."""
        for track_id in [t for t in self._recent if t not in live_track_ids]:
            del self._recent[track_id]

    @property
    def verdict(self) -> str:
        return "smoke" if self.first_confirmed is not None else "no_smoke"
