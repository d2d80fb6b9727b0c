"""Training the track scorer: exported trees, threshold choice, and `smokewatch train decision`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.bundle import ModelBundle
from pipeline.scorer import feature_names
from service.cli import main
from training.scorer import export_scorer, pick_threshold
from training.synth.dataset import SynthRequest, write_dataset


def test_exported_trees_give_scikit_learns_probabilities():
    from sklearn.ensemble import GradientBoostingClassifier

    heads = ("lstm", "gru")
    rng = np.random.default_rng(0)
    x = rng.random((400, len(feature_names(heads)))).astype(np.float32)
    y = (x[:, 2] + 0.3 * x[:, -3] + 0.1 * rng.random(400)) > 0.7
    model = GradientBoostingClassifier(n_estimators=25, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=0).fit(x, y)
    scorer = export_scorer(model, heads, x)
    ours = np.array([scorer.probability(row.tolist()) for row in x])
    np.testing.assert_allclose(ours, model.predict_proba(x)[:, 1], rtol=0, atol=1e-9)


def test_the_threshold_is_the_one_with_the_best_f1_then_the_best_tnr():
    truth = np.array([True, True, True, False, False, False])
    # all three plumes and one false alarm (F1 0.86) beats two plumes and none (F1 0.8)
    threshold, scores = pick_threshold(np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1]), truth)
    assert threshold == 0.3 and (scores.tp, scores.fp) == (3, 1)
    # among thresholds that separate the clips equally well, the highest (the quietest) is taken
    threshold, scores = pick_threshold(np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), truth)
    assert threshold == 0.7 and scores.f1 == 1.0


def test_a_tnr_floor_comes_before_f1():
    """A threshold that catches every plume but false-alarms on a third of the negatives loses to
    a quieter one once a TNR floor is asked for; without any threshold reaching it, F1 decides."""
    truth = np.array([True, True, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    threshold, picked = pick_threshold(scores, truth, min_tnr=0.95)
    assert threshold > 0.6 and (picked.tp, picked.fp) == (2, 0)
    noisy = np.array([0.9, 0.8, 0.7, 0.95, 0.2, 0.1])  # a negative outscores every plume
    threshold, picked = pick_threshold(noisy, truth, min_tnr=0.95)
    assert picked.tnr < 0.95 and (picked.tp, picked.fp) == (3, 1)


def test_items_a_fallback_confirmed_count_whatever_the_threshold():
    """A flow scorer's threshold is picked with the clips its fallback confirmed (windows with no
    measured flow) counted as said smoke: a plume the fallback caught needs no low threshold."""
    truth = np.array([True, True, True, False, False, False])
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    confirmed = np.array([False, False, True, False, False, False])
    threshold, picked = pick_threshold(scores, truth, confirmed=confirmed)
    assert threshold > 0.6 and (picked.tp, picked.fp) == (3, 0)
    # a negative the fallback alarmed on stays a false alarm at any threshold
    _, picked = pick_threshold(np.zeros(6), truth, confirmed=np.array([False, False, False, False, False, True]))
    assert (picked.tp, picked.fp) == (0, 1)


@pytest.fixture(scope="module")
def tuning_clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("decision") / "tune"
    write_dataset(SynthRequest(out, clips=8, seed=31, size=(192, 128), frames=12, fps=6.0, workers=1), progress=False)
    return out


def test_train_decision_fits_a_scorer_that_the_bundle_then_decides_with(tiny_bundle_dir, tuning_clips, tmp_path, capsys):
    out = tmp_path / "scored"
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(tiny_bundle_dir), "--out", str(out),
                 "--heads", "lstm,gru", "--min-tnr", "0.5", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    bundle = ModelBundle.load(out)
    assert bundle.scorer is not None and bundle.scorer.heads == ("lstm", "gru")
    assert bundle.config.decision.scorer_threshold == report["threshold"]
    record = bundle.metadata.provenance["track_scorer"]
    assert record["clips"] == 8 and 0 < record["positive_samples"] < record["samples"]
    assert record["rule_on_same_clips"]["head"] == bundle.config.verifier.head
    assert record["min_tnr"] == 0.5 and "--min-tnr 0.5" in record["command"]  # how to fit it again
    assert sum(record["item_scores_out_of_fold"][k] for k in ("tp", "fp", "tn", "fn")) == 8

    evaluated = tmp_path / "eval"
    assert main(["evaluate", str(tuning_clips), "--model", str(out), "--heads", "lstm", "--out", str(evaluated),
                 "--level", "item", "-q"]) == 0
    results = json.loads((evaluated / "results.json").read_text())
    rows = {row["key"]: row for row in results["rows"]}
    assert set(rows) == {"lstm", "track-scorer", "detector", "frame-vote"}
    assert sum(rows["track-scorer"]["item"][k] for k in ("tp", "fp", "tn", "fn")) == 8
    assert "track scorer" in (evaluated / "table.md").read_text()
    # the plots too: each item's timeline draws the scorer's p of each region beside the heads'
    assert len(list((evaluated / "plots" / "timelines").glob("*.png"))) == 8

    # retraining a head the scorer reads leaves a scorer that would misread it: it leaves the bundle
    retrained = tmp_path / "retrained"
    assert main(["train", "verifier", "--data", str(tuning_clips), "--model", str(out), "--out", str(retrained),
                 "--heads", "gru", "--backbone-epochs", "0", "--epochs", "1", "--cache", str(tmp_path / "cache"), "-q"]) == 0
    bundle = ModelBundle.load(retrained)
    assert bundle.scorer is None and bundle.config.decision.scorer_threshold is None
    assert "track_scorer" not in bundle.metadata.provenance


def test_train_decision_with_flow_and_a_heads_gate_writes_a_bundle_that_measures_the_flow(tiny_bundle_dir, tuning_clips,
                                                                                          tmp_path, capsys):
    out = tmp_path / "flow"
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(tiny_bundle_dir), "--out", str(out),
                 "--heads", "lstm,gru", "--min-tnr", "0.5", "--flow", "--min-heads", "0.3", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    bundle = ModelBundle.load(out)
    assert bundle.scorer.uses_flow and bundle.config.flow.enabled and bundle.config.decision.scorer_min_heads == 0.3
    assert report["flow"] is True and report["min_heads"] == 0.3 and "--flow --min-heads 0.3" in report["command"]
    # the scorer without flow is fitted first: it decides windows whose flow was not measured, and vetoes the rest
    decision = bundle.config.decision
    assert bundle.scorer.fallback is not None and not bundle.scorer.fallback.uses_flow
    assert decision.fallback_threshold == report["fallback"]["threshold"] and decision.fallback_veto == 0.5
    assert report["fallback"]["veto"] == 0.5 and "--veto 0.5" in report["command"]
    evaluated = tmp_path / "eval"
    assert main(["evaluate", str(tuning_clips), "--model", str(out), "--out", str(evaluated), "--level", "item",
                 "--no-plots", "-q"]) == 0
    rows = {row["key"]: row for row in json.loads((evaluated / "results.json").read_text())["rows"]}
    assert sum(rows["track-scorer"]["item"][k] for k in ("tp", "fp", "tn", "fn")) == 8
    table = (evaluated / "table.md").read_text()
    assert f"its fallback without flow at p >= {decision.fallback_threshold}" in table
    assert "a flow confirmation needs the fallback's p >= 0.5" in table
    # the bundle without the flow is refused with a way out, not run with a scorer reading zeros
    assert main(["evaluate", str(tuning_clips), "--model", str(out), "--out", str(tmp_path / "e2"), "--set",
                 "flow.enabled=false", "-q"]) != 0
    assert "flow.enabled" in capsys.readouterr().err


def test_a_flow_scorer_keeps_the_bundles_scorer_as_its_fallback(tiny_bundle_dir, tuning_clips, tmp_path):
    """Adding the flow to a bundle that already decides with a scorer leaves that scorer (and its
    threshold) in charge of every window without measured flow, so nothing changes there."""
    scored, flowed = tmp_path / "scored", tmp_path / "flowed"
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(tiny_bundle_dir), "--out", str(scored),
                 "--heads", "lstm,gru", "--min-tnr", "0.5", "-q"]) == 0
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(scored), "--out", str(flowed),
                 "--heads", "lstm,gru", "--min-tnr", "0.5", "--flow", "--veto", "0.3", "-q"]) == 0
    before, after = ModelBundle.load(scored), ModelBundle.load(flowed)
    assert after.scorer.uses_flow and after.scorer.fallback == before.scorer
    assert after.config.decision.fallback_threshold == before.config.decision.scorer_threshold
    assert after.config.decision.fallback_veto == 0.3
    record = after.metadata.provenance["track_scorer"]["fallback"]
    assert record["kept_from_bundle"] and record["veto"] == 0.3


def test_a_veto_without_the_flow_is_refused(tiny_bundle_dir, tuning_clips, tmp_path, capsys):
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(tiny_bundle_dir), "--out",
                 str(tmp_path / "x"), "--veto", "0.5", "-q"]) != 0
    assert "--veto goes with --flow" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_train_decision_refuses_clips_it_cannot_learn_from(tiny_bundle_dir, tmp_path, capsys):
    only_smoke = tmp_path / "smoke"
    write_dataset(SynthRequest(only_smoke, clips=3, seed=5, size=(192, 128), frames=8, fps=6.0, workers=1, kind="smoke"), progress=False)
    assert main(["train", "decision", "--data", str(only_smoke), "--model", str(tiny_bundle_dir), "--out", str(tmp_path / "x"), "-q"]) != 0
    assert "at least two smoke and two no-smoke clips" in capsys.readouterr().err
    assert main(["train", "decision", "--data", str(only_smoke), "--model", str(tiny_bundle_dir), "--out", str(tmp_path / "x"),
                 "--heads", "lstm,nope"]) != 0
    assert "unknown verifier head nope" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_scorer_over_an_ensemble_members_heads_from_the_command_line(tiny_bundle_dir, tiny_config, tuning_clips, tmp_path, capsys):
    """train ensemble joins a second backbone's heads; train decision then fits a scorer that reads
    them beside the main heads, and evaluate runs the bundle that decides with it."""
    import torch

    main_bundle = ModelBundle.load(tiny_bundle_dir)
    torch.manual_seed(3)
    other = ModelBundle.create(tiny_config.with_overrides({"extractor.input_size": 48}), heads=["lstm", "gru"], name="c48")
    other.detector = main_bundle.detector
    other_path = other.save(tmp_path / "c48")
    joined, scored = tmp_path / "joined", tmp_path / "scored"
    assert main(["train", "ensemble", "--model", str(tiny_bundle_dir), "--add", str(other_path), "--name", "c48",
                 "--out", str(joined)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heads_added"] == ["c48/lstm", "c48/gru"] and report["same_detector"] is True
    assert ModelBundle.load(joined).metadata.provenance["ensemble"]["c48"]["bundle"] == "c48"
    assert main(["train", "decision", "--data", str(tuning_clips), "--model", str(joined), "--out", str(scored),
                 "--heads", "lstm,c48/gru", "--min-tnr", "0.5", "-q"]) == 0
    capsys.readouterr()
    bundle = ModelBundle.load(scored)
    assert bundle.scorer.heads == ("lstm", "c48/gru")
    assert main(["evaluate", str(tuning_clips), "--model", str(scored), "--out", str(tmp_path / "ev"), "--level", "item",
                 "--heads", "lstm", "-q"]) == 0
    assert "track scorer" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "ensemble", "--add", str(other_path), "--out", str(tmp_path / "x")])  # --name is required
