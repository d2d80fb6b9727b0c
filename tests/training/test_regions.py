"""The verifier's check on still real regions (`smokewatch train verifier --eval DIR`)."""

import json
import subprocess
import sys

import pytest

from pipeline.bundle import ModelBundle
from pipeline.engine import Engine
from pipeline.errors import SmokewatchError
from pipeline.verifier import HeadSpec, build_head
from training.datasets import read_yolo_folder
from training.regions import score_regions
from training.verifier import set_change_cues

SMOKE_BOXES = [1, 2, 0, 4, 1]  # per image; the region check takes at most three of an image's boxes


@pytest.fixture(scope="module")
def yolo_dir(tmp_path_factory, make_yolo_folder):
    labels = ["".join(f"0 {0.15 + 0.2 * k:.2f} 0.3 0.1 0.15\n" for k in range(count)) for count in SMOKE_BOXES]
    return make_yolo_folder(tmp_path_factory.mktemp("regions"), labels, size=(200, 120), stem="cam")


def test_every_head_is_scored_on_each_smoke_box_against_background_of_the_same_images(tiny_bundle_dir, yolo_dir):
    engine = Engine(ModelBundle.load(tiny_bundle_dir), device="cpu")
    images = read_yolo_folder(yolo_dir, {0})
    scores = score_regions(engine, images, progress=False)
    assert set(scores) == set(engine.heads)
    for s in scores.values():
        assert s.smoke_regions == sum(min(c, 3) for c in SMOKE_BOXES)
        assert s.background_regions == len(SMOKE_BOXES)  # one per image, the image without smoke too
        assert s.threshold == engine.config.decision.threshold
        assert 0.0 <= s.auc <= 1.0 and 0.0 <= s.tpr <= 1.0 and 0.0 <= s.tnr <= 1.0

    # a region counts as smoke at or above the threshold: at 0 every region does
    loose = score_regions(engine, images, threshold=0.0, progress=False)
    assert all(s.tpr == 1.0 and s.tnr == 0.0 and s.threshold == 0.0 for s in loose.values())
    # the same regions and heads give the same ranking whatever the threshold
    assert {n: s.auc for n, s in loose.items()} == {n: s.auc for n, s in scores.items()}


def test_heads_that_read_change_cues_see_a_still_region_as_unchanged(tiny_bundle_dir, yolo_dir):
    bundle = ModelBundle.load(tiny_bundle_dir, heads=["gru"])
    set_change_cues(bundle, True, ["gru"])
    bundle.heads = {"gru": build_head(HeadSpec.from_config(bundle.config.verifier, bundle.window_dim, "gru"))}  # as wide as the cue input
    assert bundle.window_dim > bundle.feature_dim
    engine = Engine(bundle, device="cpu")
    scores = score_regions(engine, read_yolo_folder(yolo_dir, {0}), progress=False)
    assert scores["gru"].smoke_regions == sum(min(c, 3) for c in SMOKE_BOXES)


def test_folder_without_smoke_boxes_is_refused(tiny_bundle_dir, make_yolo_folder, tmp_path):
    make_yolo_folder(tmp_path, ["", ""], size=(64, 64), stem="sky")
    engine = Engine(ModelBundle.load(tiny_bundle_dir, heads=["lstm"]), device="cpu", heads=["lstm"])
    with pytest.raises(SmokewatchError, match="0 smoke boxes"):
        score_regions(engine, read_yolo_folder(tmp_path, {0}), progress=False)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_prints_the_scores_of_the_heads_asked_for(tiny_bundle_dir, yolo_dir, tmp_path):
    run = run_cli("train", "verifier", "--eval", str(yolo_dir), "--model", str(tiny_bundle_dir), "--heads", "gru,lstm",
                  "--threshold", "0.5", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert set(report["heads"]) == {"gru", "lstm"}
    assert report["heads"]["gru"]["threshold"] == 0.5
    assert report["heads"]["lstm"]["smoke_regions"] == sum(min(c, 3) for c in SMOKE_BOXES)


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["train", "verifier", "--eval", "."], "needs a YOLO image folder"),
        (["train", "verifier", "--heads", "gru"], "needs --data DIR (one or more) and --out BUNDLE_DIR (or --eval DIR)"),
    ],
)
def test_cli_refuses_what_it_cannot_score_or_train(args, complaint, tmp_path):
    run = run_cli(*args, cwd=tmp_path)
    assert run.returncode != 0 and complaint in run.stderr


def test_an_ensemble_members_heads_are_scored_on_their_own_crops(tiny_bundle_dir, tiny_config, yolo_dir):
    """A member's head scores the regions as it did in its own bundle, on crops cut at its own size."""
    import torch

    torch.manual_seed(5)
    other = ModelBundle.create(tiny_config.with_overrides({"extractor.input_size": 48}), heads=["gru"], name="c48")
    bundle = ModelBundle.load(tiny_bundle_dir, heads=["lstm"])
    other.detector = bundle.detector
    bundle.add_member("c48", other)
    images = read_yolo_folder(yolo_dir, {0})
    together = score_regions(Engine(bundle, device="cpu", heads=["lstm", "c48/gru"]), images, progress=False)
    alone = score_regions(Engine(other, device="cpu"), images, progress=False)
    assert together["c48/gru"].auc == pytest.approx(alone["gru"].auc)
    assert together["c48/gru"].tpr == alone["gru"].tpr and together["c48/gru"].tnr == alone["gru"].tnr
