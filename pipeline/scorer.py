"""The track scorer: a learned decision over a region's whole history.

The k-of-n rule looks at the last few probabilities of one head. What tells a plume from a cloud
or a fog bank is often elsewhere in the tube's history: a plume stays anchored to its source while
it grows, a cloud drifts across, and heads that disagree on a window are less sure than heads that
agree. The scorer turns each region's history so far into a fixed set of numbers (several heads'
recent, peak and mean probabilities; how far the box has moved and grown since the region
appeared) and scores them with gradient-boosted trees trained by `smokewatch train decision`.

A scorer trained with `train decision --flow` also reads how the picture moves inside the region
(pipeline.flow): in the current window and on average over the region's windows so far. It carries
a *fallback*, a scorer without the flow (the bundle's scorer before the flow was added, or one fitted
on the same clips), for two jobs the flow cannot do
(pipeline.decision): deciding windows whose flow could not be measured (a camera sending one frame a
minute is not a still picture, and trees that read "no motion" as a measurement alarmed on one), and
a second opinion a flow confirmation must have (real fog can rise past a building exactly as a
plume rises, and only the region's shape and history tell it apart).

Left out on purpose, because they describe our synthetic footage rather than smoke: where the
region sits in the frame, the detector's confidence (the detector is far surer of synthetic plumes
than of real ones, so trees that trusted it learnt a habit real cameras break) and how many windows
the region has lasted (dropping it scored better on the tuning clips, out of fold). The trees are
stored as plain JSON arrays (decision/track_scorer.json in a bundle) and evaluated here in pure
Python, so a bundle never needs pickled code or a particular scikit-learn to be read.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BundleError
from .records import FLOW_FIELDS, STILL, Box, RegionFlow

SCORER_FORMAT = "smokewatch-track-scorer"
SCORER_FILE = "decision/track_scorer.json"
NO_SCORER = ("decision.scorer_threshold is set but the model bundle has no track scorer "
             "(train one with smokewatch train decision, or set it to null)")
RECENT = 3  # windows in the "recent" part of a history (the shipped k-of-n rule's n)

PER_HEAD = ("recent_second", "recent_mean", "peak", "mean")
SHARED = ("heads_peak", "heads_mean", "heads_recent_mean")
GEOMETRY = ("shift_x", "shift_y", "abs_shift_x", "base_shift", "log_growth", "aspect")
FLOW = tuple(f"flow_{name}" for name in FLOW_FIELDS) + tuple(f"flow_mean_{name}" for name in FLOW_FIELDS)


def feature_names(heads: tuple[str, ...] | list[str], flow: bool = False) -> list[str]:
    """Names of the scorer's inputs, in order, for a scorer that reads these heads (and the flow)."""
    return [f"{h}:{name}" for h in heads for name in PER_HEAD] + list(SHARED) + list(GEOMETRY) + (list(FLOW) if flow else [])


@dataclass(frozen=True, slots=True)
class TrackEvidence:
    """What one window adds to its region's history."""

    head_probs: dict[str, float]
    box: Box
    flow: RegionFlow | None = None  # None: not measured (flow off, or no frames close enough in time)


@dataclass
class TrackHistory:
    """Running summaries of one region, updated in constant time per window."""

    heads: tuple[str, ...]
    flow: bool = False  # add the flow features
    count: int = 0
    first: Box | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    peaks: list[float] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    mean_peak: float = 0.0
    mean_sum: float = 0.0
    flow_sums: list[float] = field(default_factory=lambda: [0.0] * len(FLOW_FIELDS))

    def push(self, evidence: TrackEvidence) -> list[float]:
        """Add a window and return the features of the history up to and including it."""
        try:
            probs = [float(evidence.head_probs[h]) for h in self.heads]
        except KeyError as exc:
            raise BundleError(f"the track scorer reads head {exc.args[0]}, which did not run") from None
        if self.first is None:
            self.first = evidence.box
            self.peaks = list(probs)
            self.sums = [0.0] * len(probs)
        self.count += 1
        self.recent.append(probs)
        self.peaks = [max(a, b) for a, b in zip(self.peaks, probs)]
        self.sums = [a + b for a, b in zip(self.sums, probs)]
        across = sum(probs) / len(probs)
        self.mean_peak = max(self.mean_peak, across)
        self.mean_sum += across

        features: list[float] = []
        recent = list(self.recent)
        for i in range(len(self.heads)):
            values = sorted(r[i] for r in recent)
            features += [
                values[-min(2, len(values))],
                sum(values) / len(values),
                self.peaks[i],
                self.sums[i] / self.count,
            ]
        recent_mean = sum(sum(r) / len(r) for r in recent) / len(recent)
        features += [self.mean_peak, self.mean_sum / self.count, recent_mean]
        features += _movement(self.first, evidence.box)
        if self.flow:
            # an unmeasured window reads as still; a scorer with a fallback does not decide it on that
            now = (evidence.flow or STILL).as_list()
            self.flow_sums = [a + b for a, b in zip(self.flow_sums, now)]
            features += now + [v / self.count for v in self.flow_sums]
        return features


def _movement(first: Box, box: Box) -> list[float]:
    """Movement and growth since the region appeared, in units of its first size."""
    w0, h0 = max(first.x2 - first.x1, 1.0), max(first.y2 - first.y1, 1.0)
    w, h = max(box.x2 - box.x1, 1.0), max(box.y2 - box.y1, 1.0)
    scale = math.sqrt(w0 * h0)
    dx = ((box.x1 + box.x2) - (first.x1 + first.x2)) / 2 / scale
    dy = ((box.y1 + box.y2) - (first.y1 + first.y2)) / 2 / scale
    base = abs(box.y2 - first.y2) / scale  # a plume's base stays at its source
    return [dx, dy, abs(dx), base, math.log((w * h) / (w0 * h0)), h / w]


@dataclass(frozen=True)
class Tree:
    """One regression tree: node arrays as scikit-learn lays them out (left/right -1 at leaves)."""

    feature: list[int]
    threshold: list[float]
    left: list[int]
    right: list[int]
    value: list[float]

    def predict(self, x: list[float]) -> float:
        node = 0
        left, right, feature, threshold = self.left, self.right, self.feature, self.threshold
        while left[node] != -1:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        return self.value[node]


@dataclass(frozen=True)
class TrackScorer:
    """Boosted trees over track features: p = sigmoid(init + rate * sum of tree outputs)."""

    heads: tuple[str, ...]
    init: float
    learning_rate: float
    trees: tuple[Tree, ...]
    features: tuple[str, ...] = ()
    fallback: "TrackScorer | None" = None  # a flow scorer's scorer without flow (module docstring)

    def __post_init__(self) -> None:
        expected = tuple(feature_names(self.heads, flow=bool(self.features) and self.features[-1] in FLOW))
        if self.features and self.features != expected:
            raise BundleError(
                "the track scorer was trained on other features than this smokewatch computes "
                f"({len(self.features)} named, {len(expected)} expected); retrain it with smokewatch train decision"
            )
        if not self.features:
            object.__setattr__(self, "features", expected)
        if self.fallback is not None:
            if self.fallback.uses_flow or self.fallback.fallback is not None or not self.uses_flow:
                raise BundleError("a track scorer's fallback must not read the flow, and only a scorer that reads it has one")
            if not set(self.fallback.heads) <= set(self.heads):
                raise BundleError("the track scorer's fallback reads heads the scorer does not")
        width = len(expected)
        for tree in self.trees:
            if any(f >= width for f, left in zip(tree.feature, tree.left) if left != -1):
                raise BundleError("the track scorer refers to a feature it does not have")

    @property
    def uses_flow(self) -> bool:
        return self.features[-1] in FLOW

    def history(self) -> TrackHistory:
        return TrackHistory(self.heads, flow=self.uses_flow)

    def probability(self, features: list[float]) -> float:
        # scikit-learn compares float32 inputs with float64 thresholds; rounding the same way
        # keeps a value that sits on a threshold on the side the trees were trained with.
        features = np.asarray(features, dtype=np.float32).tolist()
        raw = self.init + self.learning_rate * sum(tree.predict(features) for tree in self.trees)
        return 1.0 / (1.0 + math.exp(-raw)) if raw > -700 else 0.0

    # --- files ---------------------------------------------------------------------------------

    def to_json(self) -> dict:
        blob = {
            "format": SCORER_FORMAT,
            "heads": list(self.heads),
            "features": list(self.features),
            "init": self.init,
            "learning_rate": self.learning_rate,
            "trees": [
                {"feature": t.feature, "threshold": t.threshold, "left": t.left, "right": t.right, "value": t.value}
                for t in self.trees
            ],
        }
        if self.fallback is not None:
            blob["fallback"] = self.fallback.to_json()
        return blob

    @classmethod
    def from_json(cls, blob: dict, origin: str = "track scorer") -> "TrackScorer":
        if not isinstance(blob, dict) or blob.get("format") != SCORER_FORMAT:
            raise BundleError(f"{origin} is not a {SCORER_FORMAT} file")
        try:
            trees = tuple(
                Tree([int(v) for v in t["feature"]], [float(v) for v in t["threshold"]], [int(v) for v in t["left"]],
                     [int(v) for v in t["right"]], [float(v) for v in t["value"]])
                for t in blob["trees"]
            )
            fallback = cls.from_json(blob["fallback"], f"{origin} (fallback)") if "fallback" in blob else None
            return cls(tuple(blob["heads"]), float(blob["init"]), float(blob["learning_rate"]), trees,
                       tuple(blob.get("features", ())), fallback)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{origin} is malformed: {exc}") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> "TrackScorer":
        try:
            blob = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path} cannot be read as a track scorer: {exc}") from None
        return cls.from_json(blob, str(path))
