"""The track scorer: features of a region's history, its file, its place in the bundle and engine."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.bundle import ModelBundle
from pipeline.config import DecisionConfig
from pipeline.decision import RegionDecider
from pipeline.errors import BundleError, ConfigError
from pipeline.records import Box, RegionFlow
from pipeline.scorer import SCORER_FILE, TrackEvidence, TrackHistory, TrackScorer, Tree, feature_names


def _evidence(p: float, box: Box, q: float | None = None) -> TrackEvidence:
    return TrackEvidence({"lstm": p, "gru": p if q is None else q}, box)


def _named(features: list[float], heads=("lstm", "gru")) -> dict[str, float]:
    return dict(zip(feature_names(heads), features))


def test_history_features_say_how_a_region_scored_moved_and_grew():
    history = TrackHistory(("lstm", "gru"))
    history.push(_evidence(0.2, Box(10, 20, 30, 40)))
    history.push(_evidence(0.9, Box(10, 10, 30, 40), q=0.5))
    last = _named(history.push(_evidence(0.6, Box(20, 0, 40, 40))))
    assert len(last) == len(feature_names(("lstm", "gru")))
    assert last["lstm:peak"] == pytest.approx(0.9) and last["gru:peak"] == pytest.approx(0.6)
    assert last["lstm:mean"] == pytest.approx((0.2 + 0.9 + 0.6) / 3)
    assert last["lstm:recent_second"] == pytest.approx(0.6)  # second highest of the last three
    assert last["heads_peak"] == pytest.approx(0.7)  # (0.9 + 0.5) / 2 at the second window
    # a plume's base stays put while it grows upward: the box doubled in height, its bottom fixed
    assert last["base_shift"] == 0.0 and last["shift_y"] == pytest.approx(-10 / 20)
    assert last["shift_x"] == pytest.approx(10 / 20) and last["abs_shift_x"] == pytest.approx(10 / 20)
    assert last["log_growth"] == pytest.approx(np.log(2.0)) and last["aspect"] == pytest.approx(2.0)


def _one_split_scorer(feature: str, at: float, heads=("lstm", "gru")) -> TrackScorer:
    """A single stump: far above p 0.5 when `feature` > `at`, far below otherwise."""
    index = feature_names(heads).index(feature)
    return TrackScorer(heads, 0.0, 1.0, (Tree([index, -2, -2], [at, -2.0, -2.0], [1, -1, -1], [2, -1, -1], [-0.0, -20.0, 20.0]),))


def test_the_scorer_decides_instead_of_the_k_of_n_rule():
    scorer = _one_split_scorer("gru:peak", 0.9)  # smoke once the GRU has been sure of a region
    decider = RegionDecider(DecisionConfig(threshold=0.5, confirm_k=3, confirm_n=3, scorer_threshold=0.5), scorer)
    box = Box(0, 0, 10, 10)
    verdicts = [decider.update(7, p, i, i / 4, _evidence(0.6, box, q=p)) for i, p in enumerate((0.3, 0.95, 0.4))]
    assert [v.confirmed for v in verdicts] == [False, True, True]  # not 3 of 3: the scorer decides
    assert [v.verified for v in verdicts] == [False, True, False]  # windows are still verified by p >= threshold
    assert decider.first_confirmed.frame == 1 and decider.best_score > 0.99
    other = decider.update(8, 0.4, 3, 0.75, _evidence(0.6, box, q=0.4))  # each region has its own history
    assert not other.confirmed
    decider.forget({8})
    assert not decider.update(7, 0.4, 4, 1.0, _evidence(0.6, box, q=0.4)).confirmed  # a forgotten region starts again


def test_a_scorer_threshold_without_a_scorer_is_refused():
    with pytest.raises(ConfigError, match="no track scorer"):
        RegionDecider(DecisionConfig(scorer_threshold=0.5))
    scorer = _one_split_scorer("gru:peak", 0.9)
    rule = RegionDecider(DecisionConfig(threshold=0.5), scorer)  # no scorer threshold: the rule decides
    assert rule.update(1, 0.6, 0, 0.0).confirmed


def test_scorer_files_round_trip_and_bad_ones_are_refused(tmp_path):
    scorer = _one_split_scorer("lstm:peak", 0.5)
    path = scorer.save(tmp_path / "s.json")
    again = TrackScorer.load(path)
    assert again == scorer
    features = [0.0] * len(feature_names(("lstm", "gru")))
    assert again.probability(features) < 1e-6
    blob = json.loads(path.read_text())
    for broken, complaint in (
        ({**blob, "format": "other"}, "not a smokewatch-track-scorer"),
        ({**blob, "features": blob["features"][:-1]}, "other features"),
        ({k: v for k, v in blob.items() if k != "trees"}, "malformed"),
    ):
        path.write_text(json.dumps(broken))
        with pytest.raises(BundleError, match=complaint):
            TrackScorer.load(path)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="cannot be read"):
        TrackScorer.load(path)


def test_a_bundle_keeps_its_scorer_and_loads_the_heads_it_reads(tiny_bundle_dir, tmp_path):
    bundle = ModelBundle.load(tiny_bundle_dir)
    bundle.scorer = _one_split_scorer("gru:peak", 0.9, heads=("lstm", "gru"))
    bundle.config = bundle.config.with_overrides({"decision.scorer_threshold": 0.5})
    out = bundle.save(tmp_path / "scored")
    assert SCORER_FILE in json.loads((out / "metadata.json").read_text())["files"]
    loaded = ModelBundle.load(out, heads=["lstm"])
    assert loaded.scorer == bundle.scorer and sorted(loaded.heads) == ["gru", "lstm"]

    (out / SCORER_FILE).write_text((out / SCORER_FILE).read_text().replace("20.0", "21.0"))
    with pytest.raises(BundleError, match="does not match the hash"):
        ModelBundle.load(out)
    (out / SCORER_FILE).unlink()
    with pytest.raises(BundleError, match="scorer_threshold"):
        ModelBundle.load(out, verify=False)

    # saving without a scorer removes the old file instead of carrying it over
    bundle.scorer = None
    bundle.config = bundle.config.with_overrides({"decision.scorer_threshold": None})
    bundle.save(out)
    assert not (out / SCORER_FILE).exists() and ModelBundle.load(out).scorer is None


def test_the_engine_confirms_regions_with_the_scorer(tiny_bundle_dir, clip_path):
    from pipeline.engine import Engine

    bundle = ModelBundle.load(tiny_bundle_dir)
    with pytest.raises(BundleError, match="no track scorer"):
        Engine(bundle, config=bundle.config.with_overrides({"decision.scorer_threshold": 0.5}))
    # A stump just below or just above the GRU's p on this clip: the scorer, not the rule (which
    # would confirm every window at threshold 0), says whether it is smoke.
    rule = bundle.config.with_overrides({"decision.threshold": 0.0, "decision.confirm_k": 1, "decision.confirm_n": 1})
    p = max(w.head_probs["gru"] for w in Engine(bundle, config=rule).detect(clip_path).windows)
    for at, expected in ((p - 1e-4, "smoke"), (p + 1e-4, "no_smoke")):
        bundle.scorer = _one_split_scorer("gru:peak", at, heads=("gru", "deep-gru"))
        bundle.config = rule.with_overrides({"decision.scorer_threshold": 0.5})
        engine = Engine(bundle, heads=["lstm"])
        assert set(engine.heads) == {"lstm", "gru", "deep-gru"}  # the scorer's heads run too
        clip = engine.detect(clip_path)
        assert clip.windows and clip.verdict == expected
        assert all(w.confirmed == (expected == "smoke") and w.verified for w in clip.windows)
        assert clip.score == pytest.approx(1.0 if expected == "smoke" else 0.0, abs=1e-6)
    assert set(engine.with_config(bundle.config, heads=["lstm"]).heads) == {"lstm", "gru", "deep-gru"}
    with pytest.raises(BundleError, match="not loaded"):
        engine.with_config(bundle.config, heads=["bilstm"])


def _flow(rise: float) -> RegionFlow:
    return RegionFlow(rise=rise, drift=0.001, speed=0.3, contrast=2.0, rising_share=0.8, moving_share=0.3)


def test_a_flow_scorer_reads_the_current_flow_and_its_mean_so_far():
    heads = ("lstm", "gru")
    history = TrackHistory(heads, flow=True)
    box = Box(0, 0, 10, 10)
    history.push(TrackEvidence({"lstm": 0.5, "gru": 0.5}, box, _flow(0.004)))
    last = dict(zip(feature_names(heads, flow=True), history.push(TrackEvidence({"lstm": 0.5, "gru": 0.5}, box, _flow(0.0)))))
    assert len(last) == len(feature_names(heads)) + 12
    assert last["flow_rise"] == 0.0 and last["flow_mean_rise"] == pytest.approx(0.002)
    assert last["flow_rising_share"] == pytest.approx(0.8)
    # not measured (frames too far apart): the history reads it as still, and the decider hands such
    # windows to the scorer's fallback where it has one (test_a_fallback_...)
    unmeasured = dict(zip(feature_names(heads, flow=True), history.push(TrackEvidence({"lstm": 0.5, "gru": 0.5}, box))))
    assert unmeasured["flow_rise"] == 0.0 and unmeasured["flow_moving_share"] == 0.0
    assert unmeasured["flow_mean_rise"] == pytest.approx(0.004 / 3)

    index = feature_names(heads, flow=True).index("flow_mean_rise")
    scorer = TrackScorer(heads, 0.0, 1.0, (Tree([index, -2, -2], [0.001, -2.0, -2.0], [1, -1, -1], [2, -1, -1], [0.0, -20.0, 20.0]),),
                         tuple(feature_names(heads, flow=True)))
    again = TrackScorer.from_json(json.loads(json.dumps(scorer.to_json())))
    assert again.uses_flow and not _one_split_scorer("gru:peak", 0.5).uses_flow
    assert again.history().flow


def test_the_heads_gate_holds_the_scorer_back_while_the_heads_no_longer_see_smoke():
    """A region whose history carries the scorer (the GRU was sure of it once) is confirmed only
    on windows where the heads' mean p is still at least decision.scorer_min_heads."""
    scorer = _one_split_scorer("gru:peak", 0.9)
    config = DecisionConfig(threshold=0.5, scorer_threshold=0.5, scorer_min_heads=0.6)
    decider = RegionDecider(config, scorer)
    box = Box(0, 0, 10, 10)
    verdicts = [decider.update(1, q, i, i / 4, _evidence(p, box, q=q))
                for i, (p, q) in enumerate(((0.95, 0.95), (0.1, 0.1), (0.3, 0.95)))]
    assert [v.confirmed for v in verdicts] == [True, False, True]
    assert verdicts[1].score == 0.0 and verdicts[2].score > 0.99  # mean 0.1, then (0.3 + 0.95) / 2 >= 0.6
    ungated = RegionDecider(config.model_copy(update={"scorer_min_heads": None}), scorer)
    assert all(ungated.update(1, q, i, i / 4, _evidence(p, box, q=q)).confirmed
               for i, (p, q) in enumerate(((0.95, 0.95), (0.1, 0.1))))


def test_an_engine_with_a_flow_scorer_needs_the_flow_measured(tiny_bundle_dir, clip_path):
    from pipeline.engine import Engine

    bundle = ModelBundle.load(tiny_bundle_dir)
    heads = ("gru", "deep-gru")
    index = feature_names(heads, flow=True).index("flow_speed")
    bundle.scorer = TrackScorer(heads, 0.0, 1.0, (Tree([index, -2, -2], [-1.0, -2.0, -2.0], [1, -1, -1], [2, -1, -1], [0.0, -20.0, 20.0]),),
                                tuple(feature_names(heads, flow=True)))
    scored = bundle.config.with_overrides({"decision.scorer_threshold": 0.5})
    with pytest.raises(ConfigError, match="flow.enabled"):
        Engine(bundle, config=scored)
    clip = Engine(bundle, config=scored.with_overrides({"flow.enabled": True})).detect(clip_path)
    assert clip.windows and clip.verdict == "smoke"  # every speed is above -1: the stump says smoke


def _flow_scorer(fallback: TrackScorer | None, heads=("lstm", "gru")) -> TrackScorer:
    """Smoke where the current window's flow rises (a stump on flow_rise at 0.001)."""
    index = feature_names(heads, flow=True).index("flow_rise")
    return TrackScorer(heads, 0.0, 1.0, (Tree([index, -2, -2], [0.001, -2.0, -2.0], [1, -1, -1], [2, -1, -1], [0.0, -20.0, 20.0]),),
                       tuple(feature_names(heads, flow=True)), fallback)


def test_the_fallback_decides_windows_without_flow_and_vetoes_the_others():
    """Frames a minute apart leave the flow unmeasured: the scorer without flow decides those
    windows at its own threshold (its p mapped onto the flow scorer's), and where the flow was
    measured a confirmation also needs the fallback's p to reach the veto."""
    fallback = _one_split_scorer("gru:peak", 0.9)  # p ~1 once the GRU was sure, ~0 before
    config = DecisionConfig(threshold=0.5, scorer_threshold=0.6, fallback_threshold=0.3, fallback_veto=0.5)
    box = Box(0, 0, 10, 10)

    decider = RegionDecider(config, _flow_scorer(fallback))
    unmeasured = [decider.update(1, 0.5, i, i * 60.0, _evidence(0.5, box, q=q)) for i, q in enumerate((0.2, 0.95))]
    assert [v.confirmed for v in unmeasured] == [False, True]  # the fallback's p, not the flow stump's
    assert unmeasured[0].score < 0.6 <= unmeasured[1].score <= 1.0

    rising = TrackEvidence({"lstm": 0.5, "gru": 0.2}, box, _flow(0.004))
    vetoed = RegionDecider(config, _flow_scorer(fallback)).update(1, 0.5, 0, 0.0, rising)
    assert not vetoed.confirmed and vetoed.score == 0.0  # the flow says rising, the fallback sees no smoke
    sure = TrackEvidence({"lstm": 0.5, "gru": 0.95}, box, _flow(0.004))
    assert RegionDecider(config, _flow_scorer(fallback)).update(1, 0.5, 0, 0.0, sure).confirmed
    unvetoed = RegionDecider(config.model_copy(update={"fallback_veto": None}), _flow_scorer(fallback))
    assert unvetoed.update(1, 0.5, 0, 0.0, rising).confirmed

    # without the fallback's threshold the flow scorer reads an unmeasured window as still
    still = RegionDecider(config.model_copy(update={"fallback_threshold": None, "fallback_veto": None}), _flow_scorer(fallback))
    assert not still.update(1, 0.5, 0, 0.0, _evidence(0.95, box)).confirmed


def test_a_fallback_travels_with_its_scorer_and_must_fit_it(tmp_path):
    fallback = _one_split_scorer("gru:peak", 0.9)
    scorer = _flow_scorer(fallback)
    again = TrackScorer.load(scorer.save(tmp_path / "scorer.json"))
    assert again == scorer and again.fallback == fallback
    with pytest.raises(BundleError, match="fallback"):
        _flow_scorer(_flow_scorer(None))  # a fallback that reads the flow would be no fallback
    with pytest.raises(BundleError, match="fallback"):
        TrackScorer(("lstm", "gru"), 0.0, 1.0, (), fallback=fallback)  # only a flow scorer has one
    with pytest.raises(BundleError, match="heads"):
        _flow_scorer(_one_split_scorer("deep-gru:peak", 0.9, heads=("deep-gru",)))
    with pytest.raises(ConfigError, match="no fallback"):
        RegionDecider(DecisionConfig(scorer_threshold=0.5, fallback_threshold=0.3), _flow_scorer(None))


@pytest.mark.parametrize("own,target", [(0.3, 0.6), (0.8, 0.5), (0.5, 0.5), (1.0, 0.7)])
def test_a_fallback_score_lands_on_the_same_side_of_the_scorer_threshold(own, target):
    from pipeline.decision import onto_threshold

    ps = np.linspace(0.0, 1.0, 101)
    mapped = np.array([onto_threshold(p, own, target) for p in ps])
    assert np.all(np.diff(mapped) >= 0) and mapped[0] == 0.0 and mapped[-1] == pytest.approx(1.0 if own < 1 else target)
    assert np.array_equal(mapped >= target, ps >= own)


def test_a_flow_bundle_on_a_frame_a_minute_says_what_its_fallback_says(tiny_bundle_dir, clip_path, tmp_path):
    """FIgLib-style sequences (a frame a minute) leave the flow unmeasured in every window: the
    fallback decides them all; without its threshold the flow scorer would read them as still."""
    import cv2

    from pipeline.engine import Engine

    folder = tmp_path / "20200611_fire"
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip_path))
    count = 0
    while (ok_frame := capture.read())[0]:
        cv2.imwrite(str(folder / f"{1591900000 + 60 * count}_{60 * (count - 4):+d}.jpg"), ok_frame[1])
        count += 1
    capture.release()
    assert count >= 8

    bundle = ModelBundle.load(tiny_bundle_dir)
    fallback = _one_split_scorer("gru:peak", -1.0, heads=("gru", "deep-gru"))  # says smoke on anything
    bundle.scorer = _flow_scorer(fallback, heads=("gru", "deep-gru"))
    config = bundle.config.with_overrides({"flow.enabled": True, "decision.scorer_threshold": 0.5,
                                           "decision.fallback_threshold": 0.5})
    clip = Engine(bundle, config=config).detect(folder)
    assert clip.windows and all(w.flow is None for w in clip.windows)
    assert clip.verdict == "smoke" and all(w.confirmed for w in clip.windows)
    still = Engine(bundle, config=config.with_overrides({"decision.fallback_threshold": None})).detect(folder)
    assert still.verdict == "no_smoke"  # the flow stump needs a rise, and "unmeasured" reads as none
