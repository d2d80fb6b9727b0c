"""Every score smokewatch reports, computed here and nowhere else.

Conventions (those of Table 7-1): Precision = TP/(TP+FP), Recall = TPR = TP/(TP+FN),
TNR = TN/(TN+FP), F1 = 2PR/(P+R). A ratio whose denominator is zero is 0.0, as scikit-learn
does with `zero_division=0`, so a verifier that never says "smoke" scores precision 0, not NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.records import Box


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class BinaryScores:
    """Confusion counts and the ratios derived from them."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    tpr = recall

    @property
    def tnr(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    @property
    def support(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def to_json(self) -> dict:
        out = asdict(self)
        out.update(
            precision=self.precision, recall=self.recall, f1=self.f1, tpr=self.tpr, tnr=self.tnr, accuracy=self.accuracy
        )
        return out


def binary_scores(truth: Sequence[bool], predicted: Sequence[bool]) -> BinaryScores:
    t = np.asarray(truth, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"truth and predictions differ in length ({t.size} vs {p.size})")
    return BinaryScores(
        tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), tn=int(np.sum(~t & ~p)), fn=int(np.sum(t & ~p))
    )


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval: `low` and `high` bound the middle `level` of the resamples."""

    low: float
    high: float
    level: float
    rounds: int

    def to_json(self) -> dict:
        return asdict(self)


def _resampled_f1s(truth: np.ndarray, predictions: list[np.ndarray], rounds: int, seed: int) -> list[np.ndarray]:
    """F1 of each prediction on the same `rounds` resamples of the items (drawn in blocks, so a set
    of many thousand items does not hold every resample in memory at once)."""
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in predictions]
    for start in range(0, rounds, 250):
        picks = rng.integers(0, truth.size, size=(min(250, rounds - start), truth.size))
        t = truth[picks]
        for scores, predicted in zip(out, predictions):
            p = predicted[picks]
            tp, fp, fn = (t & p).sum(axis=1), (~t & p).sum(axis=1), (t & ~p).sum(axis=1)
            # F1 = 2TP / (2TP + FP + FN): the same value as 2PR / (P + R), and 0 where there is nothing to score
            denominator = 2 * tp + fp + fn
            scores.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
    return [np.concatenate(scores) for scores in out]


def _bootstrap(truth: Sequence[bool], predictions: list[Sequence[bool]], level: float, rounds: int, seed: int,
               combine) -> Interval:
    if not 0.0 < level < 1.0:
        raise ValueError("the interval's level must be in (0, 1)")
    if rounds < 1:
        raise ValueError("a bootstrap needs at least one round")
    t = np.asarray(truth, dtype=bool)
    preds = [np.asarray(p, dtype=bool) for p in predictions]
    if any(p.shape != t.shape for p in preds):
        raise ValueError("truth and predictions differ in length")
    if t.size == 0:
        return Interval(0.0, 0.0, level, rounds)
    values = combine(_resampled_f1s(t, preds, rounds, seed))
    low, high = np.quantile(values, [(1.0 - level) / 2, 1.0 - (1.0 - level) / 2])
    return Interval(float(low), float(high), level, rounds)


def f1_interval(truth: Sequence[bool], predicted: Sequence[bool], level: float = 0.95, rounds: int = 2000,
                seed: int = 0) -> Interval:
    """How far an item-level F1 could move on another draw of items like these.

    On a test set of a few hundred clips, one plume found or missed moves F1 by a point or more, so
    two verifiers a point apart have not been told apart. The items are resampled with replacement
    (`rounds` times, a fixed seed so a report reads the same every run) and F1 recomputed on each
    resample. Items, not windows: the windows of one clip are not independent.
    """
    return _bootstrap(truth, [predicted], level, rounds, seed, lambda f1s: f1s[0])


def f1_difference_interval(truth: Sequence[bool], first: Sequence[bool], second: Sequence[bool], level: float = 0.95,
                           rounds: int = 2000, seed: int = 0) -> Interval:
    """The interval of F1(second) - F1(first) on the same items, as :func:`f1_interval` draws them.

    Paired, both verdicts on the same resamples: the items both get right or wrong do not widen it,
    so it is narrower, and more telling, than two separate intervals side by side."""
    return _bootstrap(truth, [first, second], level, rounds, seed, lambda f1s: f1s[1] - f1s[0])


def precision_recall_curve(truth: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) with one point per distinct score, highest threshold first."""
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if t.size == 0:
        return np.array([1.0]), np.array([0.0]), np.array([])
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(t)[distinct]
    fps = np.cumsum(~t)[distinct]
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / t.sum() if t.sum() else np.zeros_like(tps, dtype=float)
    return precision.astype(float), recall.astype(float), s[distinct]


def average_precision(truth: Sequence[bool], scores: Sequence[float], positives: int | None = None) -> float:
    """Area under the precision-recall curve with precision made monotone (VOC 2010+ / COCO style,
    all points). `positives` overrides the number of positives (ground-truth boxes never matched
    by any prediction still count against recall)."""
    t = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=float)
    total = int(t.sum()) if positives is None else int(positives)
    if total == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    t = t[order]
    tps = np.cumsum(t)
    fps = np.cumsum(~t)
    recall = np.r_[0.0, tps / total]
    precision = np.r_[1.0, tps / np.maximum(tps + fps, 1)]
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * precision[1:]))


def match_boxes(
    predictions: Sequence[Sequence[tuple[Box, float]]],
    truths: Sequence[Sequence[Box]],
    iou: float = 0.5,
) -> tuple[list[float], list[bool], int]:
    """Greedy matching per image, highest score first: (scores, is_true_positive, ground-truth count)."""
    scores, hits, total = [], [], 0
    for preds, gts in zip(predictions, truths):
        total += len(gts)
        used = [False] * len(gts)
        for box, score in sorted(preds, key=lambda p: -p[1]):
            best, best_iou = -1, iou
            for j, gt in enumerate(gts):
                overlap = box.iou(gt)
                if not used[j] and overlap >= best_iou:
                    best, best_iou = j, overlap
            if best >= 0:
                used[best] = True
            scores.append(score)
            hits.append(best >= 0)
    return scores, hits, total


LOCATED_SHARE = 0.5  # of a box's area inside a ground-truth box, for the box to lie on the smoke


@dataclass(frozen=True)
class LocatedScores:
    """Whether a detector points at the smoke, whatever the outline it draws.

    IoU 0.5 asks a box to outline the plume as the labeller did; real lookout labels take in the
    whole drifting plume while a detector often boxes its dense core, and in the pipeline a box is a
    proposal that the tubes widen before the verifier reads it. So here a box *lies on the smoke*
    when at least half of its area is inside a ground-truth box (every IoU >= 0.5 match does). An
    image is *flagged* when it has a box at or above the threshold and *located* when one of those
    lies on the smoke; precision is located / flagged (a flag on an image without smoke, or only off
    the smoke, is a false one), recall is located / images with smoke. Unlike the plain image-level
    pair, this precision means something on a set where every image shows smoke. It does not charge
    an image's extra boxes beside one on the smoke (more boxes make an image easier to locate):
    `box_precision`, the share of boxes on the smoke, does."""

    flagged: int
    located: int
    smoke_images: int
    boxes: int
    boxes_on_smoke: int

    @property
    def precision(self) -> float:
        return _ratio(self.located, self.flagged)

    @property
    def recall(self) -> float:
        return _ratio(self.located, self.smoke_images)

    @property
    def box_precision(self) -> float:
        return _ratio(self.boxes_on_smoke, self.boxes)

    def to_json(self) -> dict:
        return {
            "rule": f"a box lies on the smoke when at least {LOCATED_SHARE:.0%} of its area is inside a smoke box",
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "box_precision": round(self.box_precision, 4),
            "images_flagged": self.flagged,
            "images_located": self.located,
            "boxes": self.boxes,
            "boxes_on_smoke": self.boxes_on_smoke,
        }


def located_scores(
    predictions: Sequence[Sequence[tuple[Box, float]]],
    truths: Sequence[Sequence[Box]],
    threshold: float,
    share: float = LOCATED_SHARE,
) -> LocatedScores:
    """See :class:`LocatedScores`; boxes under `threshold` are ignored."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} images of boxes against {len(truths)} of ground truth")
    flagged = located = boxes = on_smoke = 0
    for preds, gts in zip(predictions, truths):
        confident = [box for box, score in preds if score >= threshold]
        hits = [box.area > 0 and any(box.intersection(gt) >= share * box.area for gt in gts) for box in confident]
        boxes += len(confident)
        on_smoke += sum(hits)
        flagged += bool(confident)
        located += any(hits)
    return LocatedScores(flagged, located, sum(1 for gts in truths if gts), boxes, on_smoke)


def step_average_precision(truth: Sequence[bool], scores: Sequence[float]) -> float:
    """Average precision of a binary classifier without interpolation: sum over distinct thresholds
    of (R_n - R_{n-1}) * P_n, tied scores taken together. This is scikit-learn's
    `average_precision_score`, the usual summary of a verifier's precision-recall curve; the
    interpolated :func:`average_precision` above stays the detector's (VOC/COCO) convention.
    No positives gives 0.0 (scikit-learn warns and also returns 0 there)."""
    t = np.asarray(truth, dtype=bool)
    if not t.any():
        return 0.0
    precision, recall, _ = precision_recall_curve(t, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True)
class DetectionDelay:
    """Time to detection for one item: from its first smoke frame to the first alarm at or after it.

    Alarms before the smoke starts are false alarms, not early detections, so they do not count
    here (the caller scores them as false positives elsewhere). Frames are in the item's own
    frame order; seconds come from the frames' timestamps.
    """

    smoke_frame: int
    smoke_time_s: float
    alarm_frame: int | None = None
    alarm_time_s: float | None = None

    @property
    def detected(self) -> bool:
        return self.alarm_frame is not None

    @property
    def frames(self) -> int | None:
        return None if self.alarm_frame is None else self.alarm_frame - self.smoke_frame

    @property
    def seconds(self) -> float | None:
        return None if self.alarm_time_s is None else self.alarm_time_s - self.smoke_time_s

    def to_json(self) -> dict:
        return {
            "smoke_frame": self.smoke_frame,
            "smoke_time_s": round(self.smoke_time_s, 3),
            "alarm_frame": self.alarm_frame,
            "alarm_time_s": None if self.alarm_time_s is None else round(self.alarm_time_s, 3),
            "frames": self.frames,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


def detection_delay(smoke_frame: int, smoke_time_s: float, alarms: Sequence[tuple[int, float]]) -> DetectionDelay:
    """The delay to the first of `alarms` ((frame, time) pairs, any order) at or after `smoke_frame`."""
    after = [a for a in alarms if a[0] >= smoke_frame]
    if not after:
        return DetectionDelay(smoke_frame, float(smoke_time_s))
    frame, time_s = min(after)
    return DetectionDelay(smoke_frame, float(smoke_time_s), int(frame), float(time_s))


@dataclass(frozen=True)
class DelaySummary:
    """Time to detection over a set of smoke items; statistics cover the detected ones only, and
    `missed` says how many were never detected (a mean that hid misses would flatter a verifier)."""

    items: int
    detected: int
    mean_frames: float | None
    median_frames: float | None
    max_frames: int | None
    mean_s: float | None
    median_s: float | None
    max_s: float | None

    @property
    def missed(self) -> int:
        return self.items - self.detected

    def to_json(self) -> dict:
        out = asdict(self)
        out["missed"] = self.missed
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def summarize_delays(delays: Sequence[DetectionDelay]) -> DelaySummary:
    frames = np.array([d.frames for d in delays if d.detected], dtype=float)
    seconds = np.array([d.seconds for d in delays if d.detected], dtype=float)
    if frames.size == 0:
        return DelaySummary(len(delays), 0, None, None, None, None, None, None)
    return DelaySummary(
        items=len(delays),
        detected=int(frames.size),
        mean_frames=float(frames.mean()),
        median_frames=float(np.median(frames)),
        max_frames=int(frames.max()),
        mean_s=float(seconds.mean()),
        median_s=float(np.median(seconds)),
        max_s=float(seconds.max()),
    )
