"""`smokewatch train detector --eval DIR`: the detector's image-level scores on a YOLO image folder."""

import json
import subprocess
import sys

import pytest

from pipeline.bundle import ModelBundle

LABELS = ["0 0.5 0.4 0.2 0.3\n", "", "0 0.3 0.5 0.1 0.2\n0 0.7 0.5 0.1 0.2\n", "", "0 0.5 0.5 0.3 0.3\n"]  # 3 smoke, 2 not


def run_eval(*args, cwd):
    run = subprocess.run([sys.executable, "-m", "service.cli", "train", "detector", "--eval", *map(str, args), "-q"],
                         capture_output=True, text=True, cwd=cwd, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def keep_every_box(tiny_bundle_dir, tmp_path_factory):
    """The tiny bundle with its detector keeping boxes of any confidence, so every image gets some."""
    bundle = ModelBundle.load(tiny_bundle_dir)
    bundle.config = bundle.config.with_overrides({"detector.conf": 0.0})
    return bundle.save(tmp_path_factory.mktemp("conf0") / "bundle")


def test_images_are_scored_at_the_bundles_operating_threshold_unless_told(keep_every_box, make_yolo_folder, tmp_path):
    folder = make_yolo_folder(tmp_path / "lookout", LABELS, size=(128, 96))
    report = run_eval(folder, "--model", keep_every_box, cwd=tmp_path)
    assert report["images"] == 5 and report["positives"] == 3
    # at the bundle's own threshold (0 here) every image has a box: all smoke images found, both empty ones false alarms
    assert report["threshold"] == 0.0
    assert report["counts"] == {"tp": 3, "fp": 2, "tn": 0, "fn": 0}
    assert report["precision"] == 0.6 and report["recall"] == 1.0
    assert 0.0 <= report["mAP50"] <= 1.0
    # whether the boxes point at the smoke: an image is flagged exactly when it counts as predicted smoke,
    # and every box that matches a smoke box by IoU lies on it
    located = report["located"]
    assert located["images_flagged"] == 5 and located["images_located"] <= 3
    assert located["recall"] == pytest.approx(located["images_located"] / 3, abs=1e-4)
    assert located["precision"] == pytest.approx(located["images_located"] / 5, abs=1e-4)
    assert located["boxes_on_smoke"] >= round(report["box_precision"] * located["boxes"])

    # an untrained detector is never sure: at 0.99 no image counts, and the ranking (mAP50) stays the same
    strict = run_eval(folder, "--model", keep_every_box, "--threshold", "0.99", cwd=tmp_path)
    assert strict["threshold"] == 0.99
    assert strict["counts"] == {"tp": 0, "fp": 0, "tn": 2, "fn": 3}
    assert strict["mAP50"] == report["mAP50"]
    assert strict["located"]["images_flagged"] == 0 and strict["located"]["recall"] == 0.0


def test_the_input_size_can_be_changed_for_the_evaluation_alone(keep_every_box, make_yolo_folder, tmp_path):
    folder = make_yolo_folder(tmp_path / "lookout", LABELS, size=(128, 96))
    shipped_size = ModelBundle.load(keep_every_box).config.detector.imgsz
    assert run_eval(folder, "--model", keep_every_box, cwd=tmp_path)["imgsz"] == shipped_size
    larger = run_eval(folder, "--model", keep_every_box, "--imgsz", shipped_size + 32, cwd=tmp_path)
    assert larger["imgsz"] == shipped_size + 32 and larger["images"] == 5
    # the bundle on disk keeps its own size: the override is for this evaluation only
    assert ModelBundle.load(keep_every_box).config.detector.imgsz == shipped_size

    refused = subprocess.run([sys.executable, "-m", "service.cli", "train", "detector", "--eval", str(folder),
                              "--model", str(keep_every_box), "--arch", "yolov8s", "-q"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert refused.returncode != 0 and "--arch only chooses what to train" in refused.stderr


def test_the_detector_can_be_scored_on_overlapping_tiles(keep_every_box, make_yolo_folder, tmp_path):
    """Lookout frames where smoke is a few dozen pixels: --set turns on tiles for the evaluation alone."""
    folder = make_yolo_folder(tmp_path / "lookout", LABELS, size=(128, 96))
    whole = run_eval(folder, "--model", keep_every_box, cwd=tmp_path)
    assert whole["tiles"] is None
    tiled = run_eval(folder, "--model", keep_every_box, "--set", "detector.tiles.size=64",
                     "--set", "detector.tiles.overlap=16", cwd=tmp_path)
    assert tiled["tiles"] == {"size": 64, "overlap": 16, "include_full_frame": True}
    assert tiled["images"] == 5 and tiled["located"]["images_flagged"] == 5
    assert ModelBundle.load(keep_every_box).config.detector.tiles is None

    for args, message in ((["--eval", str(folder), "--set", "detector.tyles.size=64"], "unknown config section 'tyles'"),
                          (["--data", str(folder), "--out", "x", "--set", "detector.conf=0.2"], "--set changes how --eval runs")):
        refused = subprocess.run([sys.executable, "-m", "service.cli", "train", "detector", *args,
                                  "--model", str(keep_every_box), "-q"],
                                 capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
