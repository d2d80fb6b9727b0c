"""The two baselines the verifiers must beat, computed from the same detections.

* detector alone: a box in a frame means smoke (what a single-frame detector would alarm on);
* frame vote: Pyronear's production smoothing (pyro-engine), a region passes when boxes overlap
  it in at least half of the last n frames and their mean confidence beats a threshold, which
  drops to 0.8x while an alert is open.

Both are judged on the verifiers' own windows (window level: the candidate's box at the window's
last frame) and on whole items (item level: any alarm), so every row of the table is scored on
the same samples. They use no verifier head: their own compute is the vote, timed here.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.records import Box, Detection

from .records import DETECTOR_ROW, VOTE_ROW, ItemDecision, ItemTrace, VoteOptions


def detector_alone(trace: ItemTrace) -> ItemDecision:
    """Window: smoke when the candidate's box was detected in the window's last frame (its score is
    that box's confidence). Item: smoke at every kept frame with any box."""
    start = time.perf_counter()
    boxes_at = {f.index: f.detections for f in trace.frames}
    scores = np.zeros(len(trace.windows), dtype=float)
    for i, window in enumerate(trace.windows):
        confs = [d.conf for d in boxes_at.get(window.frame_index, ()) if d.box == window.box]
        scores[i] = max(confs, default=0.0)
    predicted = np.array(
        [any(d.box == w.box for d in boxes_at.get(w.frame_index, ())) for w in trace.windows], dtype=bool
    )
    alarms = [(f.index, f.time_s) for f in trace.frames if f.detections]
    return ItemDecision(DETECTOR_ROW, predicted, scores, alarms, time.perf_counter() - start)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) IoU of xyxy boxes `a` (M, 4) and `b` (K, 4)."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _xyxy(boxes: Iterable[Box]) -> np.ndarray:
    return np.array([[b.x1, b.y1, b.x2, b.y2] for b in boxes], dtype=float).reshape(-1, 4)


def vote(candidates: np.ndarray, history: Sequence[tuple[Detection, ...]], options: VoteOptions) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate box (M, 4): the frames of `history` in which some box overlaps it, and the
    summed best overlapping confidence per frame divided by n (the vote's mean confidence)."""
    votes = np.zeros(len(candidates), dtype=int)
    total = np.zeros(len(candidates), dtype=float)
    for detections in history:
        if not detections or not len(candidates):
            continue
        overlap = _iou(candidates, _xyxy(d.box for d in detections)) > options.iou
        confs = np.array([d.conf for d in detections], dtype=float)
        votes += overlap.any(axis=1)
        total += np.where(overlap, confs[None, :], 0.0).max(axis=1)
    return votes, total / options.frames


def frame_vote(trace: ItemTrace, options: VoteOptions) -> ItemDecision:
    """Pyronear-style vote over the last `options.frames` kept frames (the current one included).

    As in pyro-engine, a frame's candidates are the boxes of every frame in the vote, so an alert
    can hold through a frame where the detector missed the plume. A frame raises an alarm when one
    candidate passes; the window of a verifier candidate passes when its box passes at the
    window's last frame. Its score for precision-recall is the mean confidence when enough frames
    voted, else 0.
    """
    start = time.perf_counter()
    history: deque[tuple[Detection, ...]] = deque(maxlen=options.frames)
    windows_at: dict[int, list[int]] = defaultdict(list)
    for i, window in enumerate(trace.windows):
        windows_at[window.frame_index].append(i)
    scores = np.zeros(len(trace.windows), dtype=float)
    predicted = np.zeros(len(trace.windows), dtype=bool)
    alarms: list[tuple[int, float]] = []
    alert_open = False
    for frame in trace.frames:
        history.append(frame.detections)
        threshold = options.threshold * (options.alert_factor if alert_open else 1.0)
        votes, mean = vote(_xyxy(d.box for dets in history for d in dets), history, options)
        passed = bool(np.any((votes >= options.min_votes) & (mean > threshold)))
        here = windows_at.get(frame.index, [])
        if here:
            votes, mean = vote(_xyxy(trace.windows[i].box for i in here), history, options)
            enough = votes >= options.min_votes
            scores[here] = np.where(enough, mean, 0.0)
            predicted[here] = enough & (mean > threshold)
        if passed:
            alarms.append((frame.index, frame.time_s))
        alert_open = passed
    return ItemDecision(VOTE_ROW, predicted, scores, alarms, time.perf_counter() - start)
