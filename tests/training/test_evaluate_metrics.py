"""The evaluation's scores, checked against scikit-learn on hand-made cases, degenerate ones included."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from pipeline.records import Box

from training.metrics import (
    DetectionDelay,
    binary_scores,
    detection_delay,
    f1_difference_interval,
    f1_interval,
    located_scores,
    match_boxes,
    precision_recall_curve,
    step_average_precision,
    summarize_delays,
)

CASES = {
    "mixed": ([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]),
    "no positives in truth": ([0, 0, 0, 0], [1, 0, 1, 0]),
    "no predictions": ([1, 0, 1, 0, 1], [0, 0, 0, 0, 0]),
    "no positives, no predictions": ([0, 0, 0], [0, 0, 0]),
    "all positive, all found": ([1, 1, 1], [1, 1, 1]),
    "everything wrong": ([1, 0, 1, 0], [0, 1, 0, 1]),
    "single sample": ([1], [0]),
}


@pytest.mark.parametrize("name", CASES)
def test_binary_scores_match_scikit_learn(name):
    truth, predicted = CASES[name]
    s = binary_scores([bool(v) for v in truth], [bool(v) for v in predicted])
    tn, fp, fn, tp = sk.confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
    assert (s.tp, s.fp, s.tn, s.fn) == (tp, fp, tn, fn)
    assert s.precision == pytest.approx(sk.precision_score(truth, predicted, zero_division=0))
    assert s.recall == s.tpr == pytest.approx(sk.recall_score(truth, predicted, zero_division=0))
    assert s.f1 == pytest.approx(sk.f1_score(truth, predicted, zero_division=0))
    assert s.tnr == pytest.approx(sk.recall_score(truth, predicted, pos_label=0, zero_division=0))
    assert s.accuracy == pytest.approx(sk.accuracy_score(truth, predicted))


def test_binary_scores_refuse_mismatched_lengths():
    with pytest.raises(ValueError):
        binary_scores([True, False], [True])


RANKING = {
    "distinct": ([0, 1, 1, 0, 1, 0, 1], [0.1, 0.9, 0.4, 0.45, 0.35, 0.2, 0.8]),
    "ties": ([0, 1, 1, 0, 1, 0], [0.4, 0.9, 0.4, 0.4, 0.35, 0.9]),
    "all equal scores": ([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]),
    "all positive": ([1, 1, 1], [0.2, 0.7, 0.1]),
    "random": (
        list(np.random.default_rng(0).random(60) < 0.4),
        list(np.round(np.random.default_rng(1).random(60), 2)),  # rounded: many ties
    ),
}


@pytest.mark.parametrize("name", RANKING)
def test_precision_recall_curve_matches_scikit_learn(name):
    truth, scores = RANKING[name]
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    sk_precision, sk_recall, sk_thresholds = sk.precision_recall_curve(truth, scores)
    # scikit-learn lists thresholds ascending and appends the (precision 1, recall 0) end point
    np.testing.assert_allclose(precision[::-1], sk_precision[:-1])
    np.testing.assert_allclose(recall[::-1], sk_recall[:-1])
    np.testing.assert_allclose(thresholds[::-1], sk_thresholds)


@pytest.mark.parametrize("name", RANKING)
def test_step_average_precision_matches_scikit_learn(name):
    truth, scores = RANKING[name]
    assert step_average_precision(truth, scores) == pytest.approx(sk.average_precision_score(truth, scores))


def test_ranking_without_positives():
    truth, scores = [0, 0, 0], [0.1, 0.9, 0.4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_precision, _, sk_thresholds = sk.precision_recall_curve(truth, scores)
        sk_ap = sk.average_precision_score(truth, scores)
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    np.testing.assert_allclose(precision[::-1], sk_precision[:-1])
    np.testing.assert_allclose(thresholds[::-1], sk_thresholds)
    # documented difference: with nothing to recall, recall is 0 here (scikit-learn sets 1 and warns)
    assert recall.tolist() == [0.0, 0.0, 0.0]
    assert step_average_precision(truth, scores) == sk_ap == 0.0


def test_ranking_of_nothing():
    precision, recall, thresholds = precision_recall_curve([], [])
    assert precision.tolist() == [1.0] and recall.tolist() == [0.0] and thresholds.size == 0
    assert step_average_precision([], []) == 0.0


def test_detection_delay_counts_from_first_smoke_frame_to_first_alarm_after_it():
    # an alarm at frame 2 comes before the smoke (frame 5): a false alarm, not an early detection
    delay = detection_delay(5, 2.5, [(9, 4.5), (2, 1.0), (7, 3.5)])
    assert (delay.alarm_frame, delay.frames, delay.seconds) == (7, 2, pytest.approx(1.0))
    assert delay.detected
    missed = detection_delay(5, 2.5, [(2, 1.0)])
    assert not missed.detected and missed.frames is None and missed.seconds is None
    same_frame = detection_delay(0, 0.0, [(0, 0.0)])
    assert same_frame.frames == 0 and same_frame.seconds == 0.0
    assert missed.to_json()["alarm_frame"] is None


def test_delay_summary_covers_detected_items_and_counts_misses():
    delays = [
        DetectionDelay(0, 0.0, 4, 2.0),
        DetectionDelay(10, 5.0, 12, 6.0),
        DetectionDelay(3, 1.5),
        DetectionDelay(1, 0.5, 10, 5.0),
    ]
    summary = summarize_delays(delays)
    assert (summary.items, summary.detected, summary.missed) == (4, 3, 1)
    assert summary.mean_frames == pytest.approx(5.0) and summary.median_frames == 4.0 and summary.max_frames == 9
    assert summary.mean_s == pytest.approx((2.0 + 1.0 + 4.5) / 3) and summary.max_s == pytest.approx(4.5)
    none = summarize_delays([DetectionDelay(0, 0.0)])
    assert none.detected == 0 and none.mean_frames is None and none.to_json()["missed"] == 1
    assert summarize_delays([]).items == 0


def test_f1_interval_holds_the_f1_and_narrows_with_more_items():
    truth, said = CASES["mixed"]
    small = f1_interval(truth, said)
    large = f1_interval(truth * 20, said * 20)
    f1 = binary_scores(truth, said).f1
    assert small.low <= f1 <= small.high and large.low <= f1 <= large.high
    assert large.high - large.low < (small.high - small.low) / 2  # 20 times the items: about sqrt(20) narrower
    assert (small.level, small.rounds) == (0.95, 2000)
    assert f1_interval(truth, said) == small  # a fixed seed: a report reads the same every run


def test_f1_interval_of_a_perfect_verdict_is_a_point():
    interval = f1_interval([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert interval.low == interval.high == 1.0


def test_paired_difference_sees_a_verifier_that_finds_more_and_nothing_between_equals():
    truth = [1] * 40 + [0] * 40
    finds_half = [1] * 20 + [0] * 20 + [0] * 40
    finds_all = [1] * 40 + [0] * 40
    same = f1_difference_interval(truth, finds_half, finds_half)
    assert same.low == same.high == 0.0
    better = f1_difference_interval(truth, finds_half, finds_all)
    assert better.low > 0.2  # second minus first, on the same resamples
    worse = f1_difference_interval(truth, finds_all, finds_half)
    assert worse.high < -0.2
    # resampled in blocks of 250 rounds: a last, partial block joins the others into one interval
    fewer = f1_difference_interval(truth, finds_half, finds_all, rounds=600)
    assert fewer.rounds == 600 and abs(fewer.low - better.low) < 0.05 and abs(fewer.high - better.high) < 0.05


def test_f1_interval_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="differ in length"):
        f1_interval([1, 0], [1])
    with pytest.raises(ValueError, match="differ in length"):
        f1_difference_interval([1, 0], [1, 0], [1])
    with pytest.raises(ValueError, match="level"):
        f1_interval([1, 0], [1, 0], level=1.0)
    empty = f1_interval([], [])
    assert (empty.low, empty.high) == (0.0, 0.0)


def test_a_box_on_the_plumes_core_lies_on_the_smoke_where_iou_says_it_missed():
    """Lookout labels take in the whole drifting plume; a detector often boxes its dense core. That
    box points at the smoke; a box beside it, or one around it four times its area, does not."""
    plume = Box(100, 50, 300, 150)  # a loose label, 200 x 100
    core = Box(120, 80, 180, 140)  # inside it, a tenth of its area: IoU 0.18
    beside = Box(280, 50, 380, 150)  # a fifth of it on the plume
    around = Box(0, 0, 400, 200)  # holds the plume, four times its area
    predictions = [[(core, 0.3)], [(beside, 0.9), (around, 0.8)], [(Box(0, 0, 20, 20), 0.6)], [(core, 0.01)]]
    truths = [[plume], [plume], [], [plume]]

    _, iou_hits, _ = match_boxes(predictions, truths, 0.5)
    assert not any(iou_hits)  # by IoU 0.5 nothing was found

    scores = located_scores(predictions, truths, threshold=0.05)
    # flagged: the first three images (the fourth's box is under the threshold); located: the first alone
    assert (scores.flagged, scores.located, scores.smoke_images) == (3, 1, 3)
    assert scores.precision == pytest.approx(1 / 3)  # the off-smoke image and the empty one are false flags
    assert scores.recall == pytest.approx(1 / 3)
    assert (scores.boxes, scores.boxes_on_smoke) == (4, 1)

    # at a threshold under the fourth image's box, that image is found too
    assert located_scores(predictions, truths, threshold=0.0).located == 2


def test_every_iou_match_lies_on_the_smoke():
    plume = Box(10, 10, 60, 40)
    shifted = Box(14, 12, 62, 44)
    assert shifted.iou(plume) >= 0.5
    assert located_scores([[(shifted, 0.5)]], [[plume]], 0.1).boxes_on_smoke == 1


def test_located_scores_refuse_mismatched_images():
    with pytest.raises(ValueError, match="images"):
        located_scores([[]], [[], []], 0.1)
