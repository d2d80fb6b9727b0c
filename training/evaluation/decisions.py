"""Each verifier's own decisions, replayed from its probabilities for the shared windows.

The engine decides with its primary head (or its track scorer); here every head gets a fresh
:class:`pipeline.decision.RegionDecider` (the same k-of-n rule and threshold the engine uses) fed
with that head's p(smoke) for the same windows in the same order. So each head's item verdict
and first confirmed frame are exactly what `smokewatch detect --head NAME` would report, without
running detection and features six times. The track scorer's row replays the scorer the same way,
from the probabilities of the heads it reads; its s/frame counts those heads but not the trees,
which run in the engine's decision step that the table leaves out with the tube bookkeeping
(bench/track_scorer.py measures both).
"""

from __future__ import annotations

import numpy as np

from pipeline.config import DecisionConfig
from pipeline.decision import RegionDecider
from pipeline.scorer import TrackEvidence, TrackScorer

from .records import ItemDecision, ItemTrace


def verifier_decision(trace: ItemTrace, head: str, config: DecisionConfig) -> ItemDecision:
    """Window predictions (p >= threshold), scores (p) and confirmed frames of one head on one item.

    Track ids are never reused within an item, so the engine's pruning of finished tracks
    (`RegionDecider.forget`) cannot change a decision and is not needed here.
    """
    decider = RegionDecider(config.model_copy(update={"scorer_threshold": None}))
    return _replay(trace, head, decider, head, trace.times.heads.get(head, 0.0))


def scorer_decision(trace: ItemTrace, row: str, config: DecisionConfig, scorer: TrackScorer) -> ItemDecision:
    """The track scorer's decisions on one item: a window counts (window level) when its region's
    history so far scores at least decision.scorer_threshold; its score is the scorer's p."""
    if config.scorer_threshold is None:
        raise ValueError("the track scorer's row needs decision.scorer_threshold")
    seconds = sum(trace.times.heads.get(h, 0.0) for h in scorer.heads)
    return _replay(trace, row, RegionDecider(config, scorer), None, seconds)


def _replay(trace: ItemTrace, row: str, decider: RegionDecider, head: str | None, seconds: float) -> ItemDecision:
    """Feed the trace's windows to `decider` in order. With a `head`, the k-of-n rule decides on its
    p and a window counts when verified; without, the scorer decides and a window counts when its
    region is confirmed."""
    scores = np.zeros(len(trace.windows))
    predicted = np.zeros(len(trace.windows), dtype=bool)
    alarms: list[tuple[int, float]] = []
    for i, window in enumerate(trace.windows):
        if head is not None:
            verdict = decider.update(window.track_id, window.head_probs[head], window.frame_index, window.time_s)
            scores[i], predicted[i] = window.head_probs[head], verdict.verified
        else:
            evidence = TrackEvidence(window.head_probs, window.box, window.flow)
            verdict = decider.update(window.track_id, window.smoke_prob, window.frame_index, window.time_s, evidence)
            scores[i], predicted[i] = verdict.score, verdict.confirmed
        if verdict.confirmed and (not alarms or alarms[-1][0] != window.frame_index):
            alarms.append((window.frame_index, window.time_s))
    return ItemDecision(row, predicted, scores, alarms, seconds)
