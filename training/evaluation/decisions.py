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
    scores = np.array([w.head_probs[head] for w in trace.windows], dtype=float)
    predicted = np.zeros(len(trace.windows), dtype=bool)
    alarms: list[tuple[int, float]] = []
    for i, (window, p) in enumerate(zip(trace.windows, scores)):
        verdict = decider.update(window.track_id, float(p), window.frame_index, window.time_s)
        predicted[i] = verdict.verified
        if verdict.confirmed and (not alarms or alarms[-1][0] != window.frame_index):
            alarms.append((window.frame_index, window.time_s))
    return ItemDecision(head, predicted, scores, alarms, trace.times.heads.get(head, 0.0))


def scorer_decision(trace: ItemTrace, row: str, config: DecisionConfig, scorer: TrackScorer) -> ItemDecision:
    """The track scorer's decisions on one item: a window counts (window level) when its region's
    history so far scores at least decision.scorer_threshold; its score is the scorer's p."""
    if config.scorer_threshold is None:
        raise ValueError("the track scorer's row needs decision.scorer_threshold")
    decider = RegionDecider(config, scorer)
    scores = np.zeros(len(trace.windows))
    predicted = np.zeros(len(trace.windows), dtype=bool)
    alarms: list[tuple[int, float]] = []
    for i, window in enumerate(trace.windows):
        evidence = TrackEvidence(window.head_probs, window.box)
        verdict = decider.update(window.track_id, window.smoke_prob, window.frame_index, window.time_s, evidence)
        scores[i], predicted[i] = verdict.score, verdict.confirmed
        if verdict.confirmed and (not alarms or alarms[-1][0] != window.frame_index):
            alarms.append((window.frame_index, window.time_s))
    seconds = sum(trace.times.heads.get(h, 0.0) for h in scorer.heads)
    return ItemDecision(row, predicted, scores, alarms, seconds)
