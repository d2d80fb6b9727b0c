"""Training the track scorer (pipeline.scorer) on the engine's traces of labelled clips.

Each window of each region becomes one sample: the features of the region's history up to that
window, labelled smoke when the region holds a ground-truth plume at that frame (or, for items
without per-frame boxes, when the frame shows smoke). The threshold is picked on out-of-fold
scores, folds split by clip, so it is chosen on clips the trees did not learn from; the final trees
are then fitted on every clip.

A flow scorer goes with a fallback without flow (the bundle's own scorer, or one fitted first on
the same clips), and its threshold is picked as the engine will decide: windows with no measured
flow by the fallback at its own threshold, the others by the flow scorer, vetoed where the
fallback's p (out of fold when fitted here) is below the veto.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.decision import heads_mean
from pipeline.errors import SmokewatchError
from pipeline.scorer import TrackEvidence, TrackHistory, TrackScorer, Tree, feature_names
from training.metrics import BinaryScores, binary_scores

from .windows import window_on_smoke

TREES = 150
LEARNING_RATE = 0.05
DEPTH = 3
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.01))
# smokewatch must stay quiet for clouds and fog (its bar is TNR >= 0.95), and on a few hundred
# tuning clips the best-F1 threshold moves with one false alarm more or less (0.70 or 0.79 on two
# labellings of the same clips, out-of-fold TNR 94 % or 96 %). So the pick first keeps the tuning
# clips' TNR at this floor, then looks for the best F1.
MIN_TNR = 0.95
# A flow confirmation needs the scorer without flow to find smoke more likely than not: on the
# tuning clips this costs about half a point of out-of-fold F1, and it keeps the flow scorer quiet on
# the real fog clip (fog rising past a building, which the flow alone reads as a plume; training/EXPERIMENTS.md).
FALLBACK_VETO = 0.5


class ScorerError(SmokewatchError):
    """The track scorer cannot be trained on what it was given."""


@dataclass
class TrackSamples:
    """One row per window: its history's features, its label, and the item it came from."""

    features: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N,) bool
    items: np.ndarray  # (N,) index of the trace


@dataclass
class ScorerFit:
    """A trained scorer, its threshold, and how it did on clips it had not learnt from."""

    scorer: TrackScorer
    threshold: float
    out_of_fold: BinaryScores  # item level, at `threshold`, each clip scored by trees that never saw it
    samples: int
    positives: int
    folds: int
    min_tnr: float = 0.0  # the out-of-fold TNR the threshold had to keep, where any threshold could
    min_heads: float | None = None  # the gate on the heads' mean p the threshold was picked with
    # each window's p from trees that never saw its clip (a kept scorer's: its own p, in-sample if it learnt from them)
    window_out_of_fold: np.ndarray | None = field(default=None, repr=False)
    fallback: "ScorerFit | None" = None  # a flow scorer's fallback, kept from the bundle or fitted first
    veto: float | None = None  # the fallback's p a flow confirmation needed when the threshold was picked
    kept: bool = False  # the bundle's own scorer, not fitted here: its scores are in-sample if it learnt from these clips

    def to_json(self) -> dict:
        extra = {"fallback": {**self.fallback.to_json(), "veto": self.veto}} if self.fallback is not None else {}
        return {
            "heads": list(self.scorer.heads),
            "threshold": self.threshold,
            "min_tnr": self.min_tnr,
            "min_heads": self.min_heads,
            "flow": self.scorer.uses_flow,
            "trees": len(self.scorer.trees),
            "learning_rate": self.scorer.learning_rate,
            "depth": DEPTH,
            "samples": self.samples,
            "positive_samples": self.positives,
            "folds": self.folds,
            "item_scores_out_of_fold" if not self.kept else "item_scores_kept_scorer": self.out_of_fold.to_json(),
            **({"kept_from_bundle": True} if self.kept else {}),
            **extra,
        }


def track_samples(traces: Sequence, heads: Sequence[str], flow: bool = False) -> TrackSamples:
    """Replay every trace's windows through fresh histories, as the engine's decider does (with
    `flow`, the traces must come from an engine that measured it)."""
    rows: list[list[float]] = []
    labels: list[bool] = []
    items: list[int] = []
    for index, trace in enumerate(traces):
        histories: dict = {}
        width, height = trace.source.width, trace.source.height
        for window in trace.windows:
            history = histories.get(window.track_id)
            if history is None:
                history = histories[window.track_id] = TrackHistory(tuple(heads), flow=flow)
            rows.append(history.push(TrackEvidence(window.head_probs, window.box, window.flow)))
            labels.append(window_on_smoke(trace.item, window, width, height))
            items.append(index)
    width = len(feature_names(heads, flow))
    return TrackSamples(
        np.asarray(rows, dtype=np.float32).reshape(-1, width), np.asarray(labels, dtype=bool), np.asarray(items, dtype=int)
    )


def _classifier(seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        n_estimators=TREES, learning_rate=LEARNING_RATE, max_depth=DEPTH, subsample=0.8, random_state=seed
    )


def export_scorer(model, heads: Sequence[str], example: np.ndarray, flow: bool = False,
                  fallback: TrackScorer | None = None) -> TrackScorer:
    """A fitted GradientBoostingClassifier as plain trees. The starting log-odds is read off the
    model's own decision function (minus what the trees add), so no private attribute is used."""
    trees = []
    for estimator in model.estimators_[:, 0]:
        t = estimator.tree_
        trees.append(Tree(
            [int(v) for v in t.feature], [float(v) for v in t.threshold], [int(v) for v in t.children_left],
            [int(v) for v in t.children_right], [float(v) for v in t.value[:, 0, 0]],
        ))
    row = example[:1]
    added = sum(float(e.predict(row)[0]) for e in model.estimators_[:, 0])
    init = float(model.decision_function(row)[0]) - model.learning_rate * added
    return TrackScorer(tuple(heads), init, float(model.learning_rate), tuple(trees), tuple(feature_names(heads, flow)),
                       fallback)


def item_scores(window_scores: np.ndarray, items: np.ndarray, count: int) -> np.ndarray:
    """An item's score is its best window's: the engine says smoke as soon as one region reaches it."""
    out = np.zeros(count)
    np.maximum.at(out, items, window_scores)
    return out


def pick_threshold(scores: np.ndarray, truth: np.ndarray, min_tnr: float = 0.0,
                   confirmed: np.ndarray | None = None) -> tuple[float, BinaryScores]:
    """The threshold with the best item F1 among those that keep TNR >= `min_tnr` (all of them when
    none does); ties go to the higher TNR, then the higher threshold. Items in `confirmed` say smoke
    whatever the threshold (a fallback confirmed them)."""
    best = None
    for threshold in THRESHOLDS:
        said = scores >= threshold if confirmed is None else (scores >= threshold) | confirmed
        result = binary_scores(truth, said)
        key = (result.tnr >= min_tnr, round(result.f1, 6), round(result.tnr, 6), threshold)
        if best is None or key > best[0]:
            best = (key, threshold, result)
    return float(best[1]), best[2]


def kept_scorer(scorer: TrackScorer, threshold: float, traces: Sequence) -> ScorerFit:
    """The bundle's scorer as it is, with its scores on `traces`, to serve as a flow scorer's fallback.

    Keeping it rather than refitting means adding the flow changes nothing where no flow can be
    measured: a refit without flow on the same clips took the FIgLib sequence's pre-fire spot
    (frames a minute apart) past its threshold, where the shipped scorer stays under (training/EXPERIMENTS.md)."""
    if scorer.uses_flow:
        raise ValueError("a fallback must not read the flow")
    samples = track_samples(traces, scorer.heads)
    window = np.array([scorer.probability(row.tolist()) for row in samples.features])
    truth = np.array([t.item.is_smoke for t in traces], dtype=bool)
    said = item_scores(window, samples.items, len(traces)) >= threshold
    return ScorerFit(scorer, threshold, binary_scores(truth, said), len(samples.labels), int(samples.labels.sum()), 0,
                     window_out_of_fold=window, kept=True)


def fit_track_scorer(traces: Sequence, heads: Sequence[str], seed: int = 0, folds: int = 5,
                     min_tnr: float = MIN_TNR, flow: bool = False, min_heads: float | None = None,
                     fallback: ScorerFit | None = None, veto: float | None = None) -> ScorerFit:
    """Fit the trees on every window; pick the threshold on out-of-fold item scores, gated as the
    engine gates them (decision.scorer_min_heads) when `min_heads` is given. A flow scorer's
    `fallback` (a scorer without flow, scored on the same traces: kept or fitted) decides the windows
    whose flow was not measured and, with `veto`, must reach it for a flow window to count (module
    docstring)."""
    if fallback is not None and (not flow or fallback.scorer.uses_flow or fallback.window_out_of_fold is None):
        raise ValueError("a fallback goes with a flow scorer, and is a scorer without flow scored on the same traces")
    from sklearn.model_selection import GroupKFold

    truth = np.array([t.item.is_smoke for t in traces], dtype=bool)
    if truth.sum() < 2 or (~truth).sum() < 2:
        raise ScorerError(f"the track scorer needs at least two smoke and two no-smoke clips (got {int(truth.sum())} "
                          f"and {int((~truth).sum())})")
    samples = track_samples(traces, heads, flow)
    if samples.labels.all() or not samples.labels.any():
        raise ScorerError("the clips gave windows of only one kind (smoke or not): nothing to learn a decision from")
    folds = min(folds, len(traces))
    out_of_fold = np.zeros(len(samples.labels))
    for train, held in GroupKFold(folds).split(samples.features, samples.labels, samples.items):
        if samples.labels[train].all() or not samples.labels[train].any():
            raise ScorerError("a fold of the tuning clips holds windows of only one kind; use more clips")
        model = _classifier(seed).fit(samples.features[train], samples.labels[train])
        out_of_fold[held] = model.predict_proba(samples.features[held])[:, 1]
    window_out_of_fold = out_of_fold.copy()
    if min_heads is not None:
        mean = np.array([heads_mean(w.head_probs, heads) for t in traces for w in t.windows])
        out_of_fold = np.where(mean >= min_heads, out_of_fold, 0.0)
    confirmed = None
    if fallback is not None:
        second = fallback.window_out_of_fold
        measured = np.array([w.flow is not None for t in traces for w in t.windows], dtype=bool)
        if len(second) != len(measured):
            raise ValueError("the fallback was fitted on other traces")
        if veto is not None:
            out_of_fold = np.where(second >= veto, out_of_fold, 0.0)
        out_of_fold = np.where(measured, out_of_fold, 0.0)
        confirmed = np.zeros(len(traces), dtype=bool)
        confirmed[samples.items[~measured & (second >= fallback.threshold)]] = True
    threshold, scores = pick_threshold(item_scores(out_of_fold, samples.items, len(traces)), truth, min_tnr, confirmed)
    model = _classifier(seed).fit(samples.features, samples.labels)
    scorer = export_scorer(model, heads, samples.features, flow, fallback.scorer if fallback is not None else None)
    return ScorerFit(scorer, threshold, scores, len(samples.labels), int(samples.labels.sum()), folds, min_tnr, min_heads,
                     window_out_of_fold, fallback, veto if fallback is not None else None)
