"""A tiny end-to-end training run: a few synthetic clips, one epoch, tiny models."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig
from pipeline.engine import Engine
from pipeline.records import Box
from training.backbone import BackboneOptions, _jittered, collect_crops
from training.datasets import read_manifest, read_yolo_folder
from training.recipe import RealSet, train_backbone_stage, train_detector_stage, train_verifier_stage
from training.splits import ClipSplit
from training.verifier import HeadTrainingOptions
from training.windows import collect_windows, still_boxes

TINY = {
    "detector.arch": "yolov8n.yaml",
    "detector.imgsz": 64,
    "detector.conf": 0.0,
    "detector.max_det": 2,
    "extractor.backbone": "mobilenet_v3_small",
    "extractor.input_size": 32,
    "verifier.head": "gru",
    "verifier.hidden_size": 8,
    "verifier.proj_dim": 16,
    "tubes.window": 4,
    "tubes.max_tracks": 2,
    "sampling.fps": 5.0,
    "runtime.device": "cpu",
}


def test_tiny_training_run_produces_a_working_bundle(synth_dir, real_dir, tmp_path):
    assert any(i.is_smoke for i in read_manifest(synth_dir)) and any(not i.is_smoke for i in read_manifest(synth_dir))
    bundle = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru", "deep-lstm"], name="tiny-trained")
    det = train_detector_stage(bundle, [synth_dir], [RealSet(real_dir, {1})], tmp_path / "work", epochs=1, hours=None, seed=0, frames_per_clip=2, batch=4)
    assert det["data"]["real_train"] + det["data"]["real_val"] == 6
    assert det["data"]["synthetic_train"] + det["data"]["synthetic_val"] > 0
    ext = train_backbone_stage(bundle, [synth_dir], [RealSet(real_dir, {1})], BackboneOptions(epochs=1, batch_size=16, frames_per_clip=2))
    assert ext["crops"]["synthetic_positive"] > 0 and ext["crops"]["real_positive"] == 3
    options = HeadTrainingOptions(epochs=2, batch_size=16, cache_dir=tmp_path / "cache")
    ver = train_verifier_stage(bundle, [synth_dir], ["gru", "deep-lstm"], options)
    assert set(ver["heads"]) == {"gru", "deep-lstm"}
    assert ver["heads"]["gru"]["windows"]["train"]["positive"] > 0
    assert list((tmp_path / "cache").glob("*.npz")), "window features are cached on disk"

    path = bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(path)
    meta = json.loads((path / "metadata.json").read_text())
    assert {"detector", "extractor", "verifier"} <= set(meta["provenance"])
    clip = next(i.path for i in read_manifest(synth_dir) if i.is_smoke)
    result = Engine(loaded).detect(clip, progress=False)
    assert result.frames_processed == 10 and result.verdict in ("smoke", "no_smoke")

    # a second run reuses the cached window features instead of recomputing them
    cached = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")}
    again = train_verifier_stage(bundle, [synth_dir], ["gru"], options)  # same networks, same cache keys
    assert again["heads"]["gru"]["windows"] == ver["heads"]["gru"]["windows"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")} == cached
    assert again["heads"]["deep-lstm"] == ver["heads"]["deep-lstm"], "the head not retrained keeps its record"

    # a cache file cut short by a stopped run is recomputed, not a crash
    victim = sorted((tmp_path / "cache").glob("*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    third = train_verifier_stage(bundle, [synth_dir], ["gru"], options)
    assert third["heads"]["gru"]["windows"] == ver["heads"]["gru"]["windows"]
    assert victim.stat().st_size > 100


def test_a_backbone_trained_again_says_it_continued_and_keeps_the_earlier_record(synth_dir, real_dir):
    """`train verifier --model B --backbone-epochs N` trains on from B's backbone: its record must not
    claim a start from random weights, and the first training's record stays readable."""
    torch.manual_seed(0)
    bundle = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="twice")
    options = BackboneOptions(epochs=1, batch_size=16, frames_per_clip=1)
    train_backbone_stage(bundle, [synth_dir], [RealSet(real_dir, {1})], options)
    first = bundle.metadata.provenance["extractor"]
    assert first["how"].startswith("trained from random initialisation") and "after" not in first
    train_backbone_stage(bundle, [synth_dir], [RealSet(real_dir, {1})], options)
    second = bundle.metadata.provenance["extractor"]
    assert second["how"].startswith("continued from the bundle's trained backbone") and second["after"] == first


def test_train_verifier_builds_another_backbone_and_keeps_the_detector(synth_dir, tmp_path, capsys):
    """`--backbone`/`--crop-size` replace the crop-feature network: the detector and its record stay,
    the heads trained here read the new features, and a head that read the old ones leaves."""
    from service.cli import main

    torch.manual_seed(0)
    start = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru", "lstm"], name="small")
    start.metadata.provenance["detector"] = {"arch": "yolov8n.yaml", "seed": 7}
    start.save(tmp_path / "start")
    args = ["train", "verifier", "--model", str(tmp_path / "start"), "--data", str(synth_dir), "--heads", "gru",
            "--backbone", "mobilenet_v3_large", "--crop-size", "40", "--epochs", "1", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "large"), "-q"]
    assert main([*args, "--backbone-epochs", "0"]) != 0
    assert "needs --backbone-epochs above 0" in capsys.readouterr().err and not (tmp_path / "large").exists()

    assert main([*args, "--backbone-epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["heads_dropped"] == ["lstm"]
    bundle, before = ModelBundle.load(tmp_path / "large"), ModelBundle.load(tmp_path / "start")
    assert (bundle.config.extractor.backbone, bundle.config.extractor.input_size) == ("mobilenet_v3_large", 40)
    assert list(bundle.heads) == ["gru"] and bundle.heads["gru"].spec.input_dim == bundle.feature_dim == 960
    record = bundle.metadata.provenance["extractor"]
    assert (record["backbone"], record["input_size"]) == ("mobilenet_v3_large", 40)
    assert record["how"].startswith("trained from random initialisation")
    assert bundle.metadata.provenance["detector"] == {"arch": "yolov8n.yaml", "seed": 7}
    for name, weights in before.detector.state_dict().items():
        assert torch.equal(bundle.detector.state_dict()[name], weights), name
    clip = next(i.path for i in read_manifest(synth_dir) if i.is_smoke)
    assert Engine(bundle).detect(clip, progress=False).frames_processed == 10


def test_train_verifier_switches_change_cues_on_and_drops_heads_it_did_not_retrain(synth_dir, tmp_path, capsys, monkeypatch):
    from pipeline.cues import CUE_DIM
    from service.cli import main

    torch.manual_seed(0)
    start = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru", "lstm"], name="no-cues").save(tmp_path / "start")

    def train(model, out, cues):
        return main(["train", "verifier", "--model", str(model), "--data", str(synth_dir), "--heads", "gru", "--backbone-epochs", "0",
                     "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(out), "--change-cues", cues, "-q"])

    assert train(start, tmp_path / "cues", "on") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heads_dropped"] == ["lstm"]
    bundle = ModelBundle.load(tmp_path / "cues")
    assert bundle.config.extractor.change_cues and list(bundle.heads) == ["gru"]
    assert bundle.heads["gru"].spec.input_dim == bundle.feature_dim + CUE_DIM
    clip = next(i.path for i in read_manifest(synth_dir) if i.is_smoke)
    assert Engine(bundle).detect(clip, progress=False).frames_processed == 10

    # the window cache keeps the two inputs apart: switching back recomputes, it does not reuse
    before = set((tmp_path / "cache").glob("*.npz"))
    assert train(tmp_path / "cues", tmp_path / "plain", "off") == 0
    capsys.readouterr()
    assert len(set((tmp_path / "cache").glob("*.npz")) - before) == len(before)
    plain = ModelBundle.load(tmp_path / "plain")
    assert not plain.config.extractor.change_cues and plain.heads["gru"].spec.input_dim == plain.feature_dim

    # --shared-validation: the heads validate on the clips `train detector --seed 0` validates on, and say so
    assert main(["train", "verifier", "--model", str(tmp_path / "plain"), "--data", str(synth_dir), "--heads", "gru",
                 "--backbone-epochs", "0", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "shared"),
                 "--shared-validation", "-q"]) == 0
    capsys.readouterr()
    record = ModelBundle.load(tmp_path / "shared").metadata.provenance["verifier"]
    assert record["split"] == ClipSplit(seed=0).to_json() and "split" not in plain.metadata.provenance["verifier"]
    assert record["heads"]["gru"]["windows"]["val"]["windows"] > 0

    # cached windows with cues are recomputed when the cues themselves change; those without stay
    from training import windows

    item = read_manifest(synth_dir)[0]
    engines = (Engine(bundle, heads=[]), Engine(plain, heads=[]))
    before = [windows._cache_key(engine, item, "same networks") for engine in engines]
    monkeypatch.setattr(windows, "CUES_VERSION", windows.CUES_VERSION + 1)
    after = [windows._cache_key(engine, item, "same networks") for engine in engines]
    assert after[0] != before[0] and after[1] == before[1]
    # motion proposals measured another way give other windows
    for change in ({"motion.spread": "mad"}, {"motion.edge_shift": 1.0}):
        other = Engine(plain, heads=[], config=plain.config.with_overrides(change))
        assert windows._cache_key(other, item, "same networks") != after[1], change


def test_heads_retrained_on_a_bundle_with_a_track_scorer_leave_it_deciding_by_the_rule(synth_dir, tmp_path, capsys):
    """The scorer learnt the old heads' probabilities (and, with the cues switched, their input):
    windows are collected without running any head, and the stale scorer leaves the bundle."""
    from pipeline.scorer import TrackScorer, Tree
    from service.cli import main

    torch.manual_seed(0)
    start = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru", "lstm"], name="scored")
    start.scorer = TrackScorer(("gru", "lstm"), 0.0, 1.0, (Tree([-2], [-2.0], [-1], [-1], [0.0]),))
    start.config = start.config.with_overrides({"decision.scorer_threshold": 0.5})
    start.save(tmp_path / "start")

    for heads, cues, out in (("gru", "off", "plain"), ("gru", "on", "cues")):
        assert main(["train", "verifier", "--model", str(tmp_path / "start"), "--data", str(synth_dir), "--heads", heads,
                     "--backbone-epochs", "0", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / out),
                     "--change-cues", cues, "-q"]) == 0
        assert "dropped" in json.loads(capsys.readouterr().out)["track_scorer"]
        bundle = ModelBundle.load(tmp_path / out)
        assert bundle.scorer is None and bundle.config.decision.scorer_threshold is None
        assert "track_scorer" not in bundle.metadata.provenance
        clip = next(i.path for i in read_manifest(synth_dir) if i.is_smoke)
        assert Engine(bundle).detect(clip, progress=False).frames_processed == 10
    assert sorted(ModelBundle.load(tmp_path / "plain").heads) == ["gru", "lstm"]


def test_shared_validation_holds_out_the_clips_the_bundles_detector_validated_on(synth_dir, tmp_path, capsys):
    """A detector trained with `--seed 3` validated on the clips seed 3 picks; `train verifier
    --shared-validation` run later with its default seed must hold out those, not seed 0's."""
    from service.cli import main

    torch.manual_seed(0)
    start = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="seeded")
    start.metadata.provenance["detector"] = {"arch": "yolov8n.yaml", "imgsz": 64, "seed": 3}  # as train detector --seed 3 records
    start.save(tmp_path / "start")
    names = [item.path.stem for item in read_manifest(synth_dir)]
    assert [n for n in names if ClipSplit(seed=3).holds_out(n)] != [n for n in names if ClipSplit(seed=0).holds_out(n)]

    assert main(["train", "verifier", "--model", str(tmp_path / "start"), "--data", str(synth_dir), "--heads", "gru",
                 "--backbone-epochs", "0", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
                 "--shared-validation", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["validation_split"] == ClipSplit(seed=3).to_json()
    record = ModelBundle.load(tmp_path / "out").metadata.provenance["verifier"]
    assert record["split"] == ClipSplit(seed=3).to_json()


def test_real_sets_split_by_group_never_by_image(real_dir, tmp_path):
    from training.detector import build_detector_dataset

    data = build_detector_dataset(tmp_path / "d", [], [RealSet(real_dir, {1})], val_fraction=0.5, seed=3)
    train = {p.name.split("_")[-1] for p in (tmp_path / "d" / "train" / "images").iterdir()}
    val = {p.name.split("_")[-1] for p in (tmp_path / "d" / "val" / "images").iterdir()}
    groups = {f"{i}.jpg": i // 3 for i in range(6)}
    assert not {groups[n] for n in train} & {groups[n] for n in val}
    lines = [line for p in (tmp_path / "d").rglob("labels/*.txt") for line in p.read_text().splitlines()]
    assert len(lines) == 3, "one box per positive image: the fire box is dropped"
    assert all(line.split()[0] == "0" and [float(v) for v in line.split()[1:]] == [0.5, 0.5, 0.3, 0.4] for line in lines), \
        "the smoke box, remapped to class 0"
    assert data.counts["positive"] == 3
    images = read_yolo_folder(real_dir, {1})
    assert sum(i.positive for i in images) == 3 and images[0].group == "video_0"


def test_each_real_set_keeps_its_own_smoke_classes(real_dir, tmp_path):
    """Class 0 is fire in one set and smoke in another: merging the class lists would label fire as smoke."""
    from training.detector import build_detector_dataset

    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "labels").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(other / "images" / "s.jpg")
    (other / "labels" / "s.txt").write_text("0 0.4 0.4 0.2 0.2\n")
    build_detector_dataset(tmp_path / "d", [], [RealSet(real_dir, {1}), RealSet(other, {0})], val_fraction=0.0)
    boxes = sorted(line.split(maxsplit=1)[1] for p in (tmp_path / "d").rglob("labels/*.txt") for line in p.read_text().splitlines())
    assert boxes == ["0.400000 0.400000 0.200000 0.200000"] + ["0.500000 0.500000 0.300000 0.400000"] * 3


def test_backbone_positives_include_off_centre_crops_of_each_plume(synth_dir):
    """Proposals rarely frame a plume the way its label does, so every labelled box also gives
    shifted and rescaled positives; they still hold part of the plume, and switching them off
    leaves exactly the centred crops."""
    items = read_manifest(synth_dir)
    tubes = PipelineConfig().tubes
    plain = collect_crops(items, [], 32, tubes, BackboneOptions(frames_per_clip=3, positive_jitter=0))
    jittered = collect_crops(items, [], 32, tubes, BackboneOptions(frames_per_clip=3, positive_jitter=2))
    assert plain.counts["synthetic_positive"] > 0 and plain.counts["synthetic_positive_jittered"] == 0
    assert jittered.counts["synthetic_positive"] == plain.counts["synthetic_positive"]
    assert jittered.counts["synthetic_positive_jittered"] == 2 * plain.counts["synthetic_positive"]
    assert int(jittered.labels.sum()) == 3 * int(plain.labels.sum())
    assert len(jittered.crops) == len(jittered.labels) == len(jittered.group)

    rng = random.Random(0)
    truth = Box(100, 40, 130, 100)
    boxes = [_jittered(truth, 192, 128, rng) for _ in range(200)]
    assert all(b.intersection(truth) > 0.15 * truth.area for b in boxes), "a jittered box keeps part of the plume"
    assert all(0 <= b.x1 < b.x2 <= 192 and 0 <= b.y1 < b.y2 <= 128 for b in boxes)
    assert len({(round(b.x1), round(b.y1), round(b.x2)) for b in boxes}) > 100, "the boxes vary"


def test_small_smoke_boxes_alone_get_extra_backbone_positives(tmp_path, make_yolo_folder, synth_dir):
    """Asked for, a smoke box at most 48 px tall gives `small_jitter` more positives and a taller one
    none; off, the record reads as one written before the option existed."""
    from training.backbone import SMALL_BOX_PX

    # 30 px and 80 px tall smoke boxes in 200 x 160 images
    root = make_yolo_folder(tmp_path / "real", ["1 0.5 0.5 0.2 0.1875\n", "1 0.5 0.5 0.5 0.5\n"], size=(200, 160))
    real = read_yolo_folder(root, {1})
    assert [b.height <= SMALL_BOX_PX for image in real for b in image.boxes(200, 160)] == [True, False]
    tubes = PipelineConfig().tubes
    plain = collect_crops([], real, 32, tubes, BackboneOptions())
    small = collect_crops([], real, 32, tubes, BackboneOptions(small_jitter=3))
    assert "small_positive_jittered" not in plain.counts
    assert small.counts["small_positive_jittered"] == 3 and small.counts["real_positive"] == plain.counts["real_positive"] == 2
    assert int(small.labels.sum()) == 5 and int(plain.labels.sum()) == 2
    assert small.group[small.labels == 1].tolist() == [0, 0, 0, 0, 1], "the extra crops belong to the image with the small box"

    items = read_manifest(synth_dir)
    before = collect_crops(items, [], 32, tubes, BackboneOptions(frames_per_clip=3))
    synthetic = collect_crops(items, [], 32, tubes, BackboneOptions(frames_per_clip=3, small_jitter=2))
    assert synthetic.counts["synthetic_positive"] == before.counts["synthetic_positive"]
    assert 0 < synthetic.counts["small_positive_jittered"] <= 2 * before.counts["synthetic_positive"]
    assert synthetic.counts["small_positive_jittered"] % 2 == 0


def test_backbone_trains_when_the_crops_leave_a_last_batch_of_one():
    """Crop counts are whatever the data gives; 11 training crops in batches of 5 leave one over,
    which BatchNorm refuses on its own in training mode. It joins the batch before instead."""
    from pipeline.config import ExtractorConfig
    from pipeline.models import build_backbone
    from training.backbone import CropSet, train_backbone

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    data = CropSet(crops, np.array([0, 1] * 6), np.arange(12), group_keys=[f"s{i}" for i in range(12)])
    net = build_backbone(ExtractorConfig(backbone="mobilenet_v3_small", input_size=32), load_weights=False)
    report = train_backbone(net.module, net.dim, data, BackboneOptions(epochs=1, batch_size=5, val_fraction=0.1))
    assert report["crops"]["train"] == 11 and report["crops"]["val"] == 1
    assert len(report["history"]) == 1 and report["history"][0]["train_loss"] > 0


def test_detector_boxes_that_miss_real_smoke_become_backbone_negatives(real_dir):
    """A detector trained on synthetic plumes fires on real texture (bark, foliage) that no synthetic
    scene holds; asked to, the backbone learns those boxes on the real images as not smoke, but never
    a box that lies on labelled smoke."""
    from pipeline.records import Detection
    from training.backbone import _false_positives
    from training.recipe import _detector_for

    smoke = [Box(40, 30, 80, 70)]
    on_smoke, beside, grazing = Detection(Box(45, 35, 75, 65), 0.4), Detection(Box(0, 0, 20, 20), 0.3), Detection(Box(76, 30, 126, 70), 0.2)
    assert _false_positives([on_smoke, beside, grazing], smoke) == [beside, grazing]  # grazing: 8 % of it on smoke
    assert _false_positives([on_smoke], []) == [on_smoke], "on an image without smoke every box is a false positive"

    tiny = PipelineConfig().with_overrides(TINY)  # untrained and at conf 0: it puts boxes everywhere
    detector = _detector_for(ModelBundle.create(tiny, heads=["gru"], name="tiny"), "cpu")
    images = read_yolo_folder(real_dir, {1})
    plain = collect_crops([], images, 32, tiny.tubes, BackboneOptions(), detector)
    asked = collect_crops([], images, 32, tiny.tubes, BackboneOptions(real_detector_negatives=True), detector)
    assert plain.counts["real_detector_false_positive"] == 0
    added = asked.counts["real_detector_false_positive"]
    assert added > 0 and len(asked.labels) == len(plain.labels) + added
    assert int(asked.labels.sum()) == int(plain.labels.sum()) == asked.counts["real_positive"], "every added crop is a negative"


def test_batch_norm_statistics_are_those_of_the_training_crops_after_each_epoch():
    """MobileNetV3's BatchNorm momentum is 0.01: without recalibration its running statistics stay
    near their initial values after a short CPU training, and the shipped network says "no smoke"
    to everything. After recalibration they are the plain mean and variance of the crops."""
    from training.backbone import _recalibrate_batch_norm

    norm = torch.nn.BatchNorm2d(3, momentum=0.01)
    model = torch.nn.Sequential(norm, torch.nn.Flatten(1))
    data = torch.randn(96, 3, 4, 4) * 2.0 + 5.0
    # 96 crops in batches of 19: the last batch would hold one crop alone
    _recalibrate_batch_norm(model, lambda idx, augment: data[torch.as_tensor(idx)], np.arange(96), batch_size=19)
    assert norm.running_mean == pytest.approx(data.mean(dim=(0, 2, 3)), abs=0.01)  # batches weigh equally
    assert norm.running_var == pytest.approx(data.var(dim=(0, 2, 3)), rel=0.05)
    assert norm.momentum == 0.01 and not model.training


def test_weather_veils_backbone_crops_without_erasing_the_smoke_in_them():
    """Haze on the training crops takes contrast from some plumes, never all of it, and leaves others as they were."""
    from training.backbone import weathered

    torch.manual_seed(0)
    crop = torch.full((1, 3, 32, 32), 200.0)
    crop[..., 8:24, 12:20] = 90.0  # a dark column on a pale sky
    out = weathered(crop.repeat(400, 1, 1, 1))
    assert out.shape == (400, 3, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 255
    contrast = (out[..., 10:22, 14:18].mean(dim=(1, 2, 3)) - out[..., :, :4].mean(dim=(1, 2, 3))).abs() / 110
    assert float(contrast.min()) > 0.4, "a veil never hides the plume"
    assert 0.25 < float((contrast < 0.85).float().mean()) < 0.6, "about half the crops are veiled, most of them noticeably"
    assert float((contrast > 0.93).float().mean()) > 0.3, "the others keep their contrast"
    sky = out[..., :, :4].mean(dim=(2, 3))
    assert float((sky[:, 2] - sky[:, 0]).std()) > 3, "the light's colour changes from crop to crop"


def test_detector_fine_tuning_starts_from_the_bundle_weights(synth_dir, tmp_path):
    """`finetune` continues from the detector a bundle holds: the first epoch starts from its
    weights (the network after one epoch is closer to them than a from-scratch run gets), and the
    record says so in its own section, beside the first training's."""
    bundle = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="tiny-ft")
    train_detector_stage(bundle, [synth_dir], [], tmp_path / "first", epochs=1, hours=None, seed=0, frames_per_clip=2, batch=4)
    before = {k: v.clone() for k, v in bundle.detector.state_dict().items() if v.dtype.is_floating_point}
    record = train_detector_stage(bundle, [synth_dir], [], tmp_path / "second", epochs=1, hours=None, seed=1,
                                  frames_per_clip=2, batch=4, finetune=True)
    assert record["started_from"] == "the bundle's detector weights"
    assert bundle.metadata.provenance["detector"]["started_from"] == "random initialisation"
    assert bundle.metadata.provenance["detector_finetune"] is record

    def distance(state):
        return sum(float((state[k].float() - before[k].float()).abs().sum()) for k in before if "running" not in k)

    tuned = distance(bundle.detector.state_dict())
    scratch = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="tiny-scratch")
    train_detector_stage(scratch, [synth_dir], [], tmp_path / "third", epochs=1, hours=None, seed=1, frames_per_clip=2, batch=4)
    assert tuned < distance(scratch.detector.state_dict()) / 10

    again = train_detector_stage(bundle, [synth_dir], [], tmp_path / "fourth", epochs=1, hours=None, seed=1,
                                 frames_per_clip=2, batch=4, finetune=True)
    assert again["after"] is record and bundle.metadata.provenance["detector_finetune"] is again, "a second fine-tune keeps the record of the first"


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["train", "detector", "--data", "d", "--out", "o", "--finetune"], "name it with --model BUNDLE"),
        (["train", "detector", "--adopt", "results", "--out", "o"], "name it with --model BUNDLE and --out BUNDLE"),
        (["train", "default", "--detector-from", "nowhere", "--work", "w", "--out", "o"],
         "model bundle folder not found: nowhere"),
        (["synth", "o", "--style", "drone"], "invalid choice: 'drone' (choose from 'classic', 'lookout')"),
        (["train", "verifier", "--data", "d", "--out", "o", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "default", "--work", "w", "--out", "o", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "detector", "--data", "d", "--out", "o", "--device", "gpu0"], "unknown device 'gpu0'"),
        (["train", "detector", "--data", "d", "--pack", "job.tgz", "--device", "cpu"], "give the device there"),
    ],
)
def test_training_commands_refuse_what_they_cannot_do_before_any_work(args, complaint, tmp_path):
    import subprocess
    import sys

    from training.synth.clip import STYLES

    assert STYLES == ("classic", "lookout"), "the CLI lists the styles by hand to keep --help fast"
    run = subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2 and complaint in run.stderr
    assert list(tmp_path.iterdir()) == [], "nothing written"


def _dark_field_with_pale_patch() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(40, 70, (180, 320, 3)).astype(np.uint8)  # dark forest
    image[120:140, 200:224] = 225  # a pale rock on it
    return image


def test_half_the_still_boxes_sit_on_the_palest_spot_the_rest_anywhere():
    image = _dark_field_with_pale_patch()
    boxes = still_boxes(image, 4, np.random.default_rng(5))
    assert len(boxes) == 4
    assert all(0 <= b.x1 < b.x2 <= 320 and 0 <= b.y1 < b.y2 <= 180 for b in boxes)
    assert all(a.iou(b) < 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1:]), "distinct places"
    on_patch = [b for b in boxes if b.x1 < 212 < b.x2 and b.y1 < 130 < b.y2]
    assert on_patch, "a pale spot against its surroundings is among the boxes"
    assert boxes == still_boxes(image, 4, np.random.default_rng(5)), "the same boxes for the same stream"
    assert still_boxes(image, 0, np.random.default_rng(5)) == []


def test_still_windows_come_beside_the_proposed_ones_and_follow_the_truth(synth_dir, tmp_path):
    torch.manual_seed(0)
    bundle = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="still")
    engine = Engine(bundle, heads=[])
    items = read_manifest(synth_dir, check_frames=False)
    plain = collect_windows(engine, items, tmp_path / "cache", progress=False)
    held = collect_windows(engine, items, tmp_path / "cache", progress=False, still=2)
    assert not plain.still.any() and held.still.any()
    others = ~held.still
    # the windows the detector and the truth give are the same with still regions as without
    assert np.array_equal(held.features[others], plain.features)
    assert np.array_equal(held.labels[others], plain.labels)
    # two still tubes per clip, each a window at every stride once T frames are there (the tiny
    # config pads the first windows, so every kept frame from the first is due at stride 1)
    per_item = np.bincount(held.item[held.still], minlength=len(items))
    assert (per_item > 0).all() and (per_item % 2 == 0).all()
    # a clip without smoke has nothing but negatives there; the labels of smoke clips follow their boxes
    negatives = [i for i, item in enumerate(items) if not item.is_smoke]
    assert negatives and not held.labels[held.still & np.isin(held.item, negatives)].any()
    summary = held.summary()
    assert summary["still_windows"] == int(held.still.sum())
    assert summary["ground_truth_windows"] + summary["detector_windows"] + summary["still_windows"] == len(held)
    # both kinds stay cached side by side: a new run reads them again, unchanged
    again = collect_windows(engine, items, tmp_path / "cache", progress=False, still=2)
    assert np.array_equal(again.still, held.still) and np.array_equal(again.labels, held.labels)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2 * len(items)


def test_train_verifier_still_regions_records_them(synth_dir, tmp_path, capsys):
    from service.cli import main

    torch.manual_seed(0)
    ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="start").save(tmp_path / "start")
    assert main(["train", "verifier", "--model", str(tmp_path / "start"), "--data", str(synth_dir), "--heads", "gru",
                 "--backbone-epochs", "0", "--epochs", "1", "--still-regions", "3", "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out"), "-q"]) == 0
    json.loads(capsys.readouterr().out)
    record = ModelBundle.load(tmp_path / "out").metadata.provenance["verifier"]
    assert record["options"]["still_regions"] == 3
    assert record["options"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu"), "auto, resolved before it is recorded"
    windows = record["heads"]["gru"]["windows"]
    assert windows["train"]["still_windows"] + windows["val"]["still_windows"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA GPU is")
def test_training_on_a_gpu_that_is_not_here_is_refused_before_any_work(tmp_path):
    """Hours of `train default` must not start on the CPU, or stop after the synthetic clips are
    written, because the GPU asked for is not there."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "service.cli", "train", "default", "--work", "w", "--out", "o", "--device", "cuda"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2 and "no CUDA GPU is available here" in run.stderr
    assert list(tmp_path.iterdir()) == [], "nothing written"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_verifier_on_a_gpu_trains_there_and_writes_a_bundle_the_cpu_runs(synth_dir, tmp_path, capsys):
    from service.cli import main

    torch.manual_seed(0)
    ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="start").save(tmp_path / "start")
    assert main(["train", "verifier", "--model", str(tmp_path / "start"), "--data", str(synth_dir), "--heads", "gru",
                 "--backbone-epochs", "1", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--device", "cuda",
                 "--out", str(tmp_path / "out"), "-q"]) == 0
    json.loads(capsys.readouterr().out)
    bundle = ModelBundle.load(tmp_path / "out")
    assert bundle.metadata.provenance["extractor"]["device"].startswith("cuda")
    assert bundle.metadata.provenance["verifier"]["options"]["device"].startswith("cuda")
    clip = next(i.path for i in read_manifest(synth_dir) if i.is_smoke)
    assert Engine(bundle, device="cpu").detect(clip, progress=False).frames_processed == 10


def test_train_default_cli_defaults_are_the_recipe_the_shipped_bundle_was_built_with():
    """`smokewatch train default` with no flags must rebuild the shipped recipe; the parser writes
    its defaults by hand to keep --help fast (no torch import), so they are checked here."""
    from service.cli import build_parser
    from training.recipe import DefaultRecipe

    args = build_parser().parse_args(["train", "default"])
    assert args.still_regions == DefaultRecipe.still_regions == 4
    assert args.member_crop_size == DefaultRecipe.member_crop_size == 64
    assert build_parser().parse_args(["train", "default", "--member-crop-size", "0"]).member_crop_size is None
