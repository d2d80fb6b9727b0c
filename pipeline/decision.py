"""From window probabilities to confirmed regions and a clip verdict.

A window is *verified* when p(smoke) reaches the threshold. A region is *confirmed* when k of
its last n windows were verified, or, when the config names a scorer threshold, when the bundle's
track scorer (pipeline.scorer) gives the region's history so far at least that probability. The
clip score agrees with the verdict: under the k-of-n rule, for each region, the k-th highest
probability among any n consecutive windows; under the scorer, the scorer's probability; the clip
is smoke exactly when the best region's score reaches the confirming threshold.

A scorer that reads the flow hands the windows whose flow could not be measured to its fallback
(decision.fallback_threshold), whose p is mapped onto the scorer's threshold so that one score and
one threshold still decide; and where the flow was measured, its fallback may veto
(decision.fallback_veto).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .config import DecisionConfig
from .errors import ConfigError
from .scorer import NO_SCORER, TrackEvidence, TrackHistory, TrackScorer


@dataclass(frozen=True, slots=True)
class Verdict:
    """One window's decision."""

    verified: bool
    confirmed: bool
    score: float  # k-th highest p over the region's last n windows, or the track scorer's p (module docstring)


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Where smoke was first confirmed in a clip or stream."""

    frame: int  # source frame index
    time_s: float


class RegionDecider:
    """Keeps the last n probabilities (or the scorer's history) of every region and the best score seen."""

    def __init__(self, config: DecisionConfig, scorer: TrackScorer | None = None) -> None:
        if config.scorer_threshold is not None and scorer is None:
            raise ConfigError(NO_SCORER)
        self.config = config
        self.scorer = scorer if config.scorer_threshold is not None else None
        self.fallback: TrackScorer | None = None
        if self.scorer is not None and (config.fallback_threshold is not None or config.fallback_veto is not None):
            if self.scorer.fallback is None:
                raise ConfigError("decision.fallback_threshold or decision.fallback_veto is set but the bundle's track scorer "
                                  "has no fallback (train one with smokewatch train decision --flow, or set them to null)")
            self.fallback = self.scorer.fallback
        self._recent: dict[int, deque[float]] = {}
        self._histories: dict[int, tuple[TrackHistory, TrackHistory | None]] = {}
        self.best_score = 0.0
        self.first_confirmed: Confirmation | None = None

    @property
    def confirm_threshold(self) -> float:
        cfg = self.config
        return cfg.scorer_threshold if self.scorer is not None and cfg.scorer_threshold is not None else cfg.threshold

    def update(
        self, track_id: int, prob: float, frame_index: int, time_s: float, evidence: TrackEvidence | None = None
    ) -> Verdict:
        """Decide one window. `evidence` (every loaded head's p and the box) is needed when the
        track scorer decides."""
        cfg = self.config
        if self.scorer is not None:
            if evidence is None:
                raise ValueError("the track scorer needs each window's evidence")
            score = self._score(track_id, evidence)
        else:
            recent = self._recent.setdefault(track_id, deque(maxlen=cfg.confirm_n))
            recent.append(prob)
            ranked = sorted(recent, reverse=True)
            score = ranked[cfg.confirm_k - 1] if len(ranked) >= cfg.confirm_k else 0.0
        confirmed = score >= self.confirm_threshold
        self.best_score = max(self.best_score, score)
        if confirmed and self.first_confirmed is None:
            self.first_confirmed = Confirmation(frame_index, time_s)
        return Verdict(verified=prob >= cfg.threshold, confirmed=confirmed, score=score)

    def _score(self, track_id: int, evidence: TrackEvidence) -> float:
        cfg, scorer, fallback = self.config, self.scorer, self.fallback
        histories = self._histories.get(track_id)
        if histories is None:
            histories = self._histories[track_id] = (scorer.history(), fallback.history() if fallback else None)
        features = histories[0].push(evidence)  # every window goes into both histories, used or not
        if fallback is not None:
            second = fallback.probability(histories[1].push(evidence))
            if evidence.flow is None and cfg.fallback_threshold is not None:
                return onto_threshold(second, cfg.fallback_threshold, cfg.scorer_threshold)
            if cfg.fallback_veto is not None and second < cfg.fallback_veto:
                return 0.0
        if cfg.scorer_min_heads is not None and heads_mean(evidence.head_probs, scorer.heads) < cfg.scorer_min_heads:
            return 0.0
        return scorer.probability(features)

    def forget(self, live_track_ids: set[int]) -> None:
        """Drop state of regions the tube builder no longer follows."""
        for state in (self._recent, self._histories):
            for track_id in [t for t in state if t not in live_track_ids]:
                del state[track_id]

    @property
    def verdict(self) -> str:
        return "smoke" if self.first_confirmed is not None else "no_smoke"


def onto_threshold(p: float, own: float, target: float) -> float:
    """Map p, judged against threshold `own`, monotonically onto a scale judged against `target`
    (0 and 1 stay put): p >= own exactly when the result >= target."""
    if p < own:
        return p / own * target
    return target if own >= 1.0 else target + (p - own) / (1.0 - own) * (1.0 - target)


def heads_mean(head_probs: dict[str, float], heads: Sequence[str]) -> float:
    """What decision.scorer_min_heads is compared with (training picks the scorer's threshold on the same)."""
    return sum(head_probs[h] for h in heads) / len(heads)
