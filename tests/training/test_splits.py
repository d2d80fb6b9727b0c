"""One validation split for every training stage: the backbone and the heads hold out the very
clips the detector validated on, so the heads' validation figure reads clips no stage learnt from."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import PipelineConfig
from pipeline.errors import SmokewatchError
from training.backbone import BackboneOptions, collect_crops, validation_crops
from training.datasets import RealSet, read_manifest, read_yolo_folder
from training.detector import build_detector_dataset
from training.splits import ClipSplit, held_out, split_group
from training.verifier import split_by_name
from training.windows import WindowSet

SPLIT = ClipSplit(fraction=0.5, seed=3)  # half the clips, so six tiny clips (and two real groups) have both sides


def test_the_split_is_decided_by_name_alone():
    keys = [f"synth_{i:05d}" for i in range(400)]
    picked = [k for k in keys if SPLIT.holds_out(k)]
    assert picked == [k for k in keys if ClipSplit(fraction=0.5, seed=3).holds_out(k)], "the same on every call"
    assert 150 < len(picked) < 250, "about the fraction asked for"
    assert picked != [k for k in keys if ClipSplit(fraction=0.5, seed=4).holds_out(k)], "the seed chooses other clips"
    assert set(k for k in keys if held_out(k, 0.1, 3)) <= set(picked), "a smaller fraction holds out a subset"


def test_backbone_and_heads_validate_on_the_clips_the_detector_validated_on(synth_dir, real_dir, tmp_path):
    items = read_manifest(synth_dir, check_frames=False)
    images = read_yolo_folder(real_dir, {1})
    held = {item.path.stem for item in items if SPLIT.holds_out(item.path.stem)}
    real_held = {split_group(image) for image in images if SPLIT.holds_out(split_group(image))}
    assert 0 < len(held) < len(items) and real_held, "the fixtures must put clips and real groups on both sides"

    build_detector_dataset(tmp_path / "det", [synth_dir], [RealSet(real_dir, {1})], frames_per_clip=2,
                           val_fraction=SPLIT.fraction, seed=SPLIT.seed)
    detector_val = [image.stem for image in (tmp_path / "det" / "val" / "images").iterdir()]
    assert {name.split("_", 1)[1].rsplit("_", 1)[0] for name in detector_val if name.startswith(f"{synth_dir.name}_")} == held
    assert ({name.removeprefix(f"{real_dir.name}_") for name in detector_val if name.startswith(f"{real_dir.name}_")}
            == {image.image.stem for image in images if split_group(image) in real_held})

    crops = collect_crops(items, images, 32, PipelineConfig().tubes, BackboneOptions(frames_per_clip=2, split=SPLIT))
    val = validation_crops(crops, BackboneOptions(split=SPLIT), np.random.default_rng(0))
    held_groups = {g for g, key in enumerate(crops.group_keys) if SPLIT.holds_out(key)}
    assert set(crops.group[val].tolist()) == held_groups and not set(crops.group[~val].tolist()) & held_groups
    assert {crops.group_keys[g] for g in held_groups if g < len(items)} == held
    assert {crops.group_keys[g] for g in held_groups if g >= len(items)} == real_held  # whole source videos, as the detector

    paths = [str(item.path) for item in items]
    item = np.repeat(np.arange(len(items)), 3)
    windows = WindowSet(np.zeros((len(item), 4, 2), np.float16), np.zeros(len(item)), item,
                        np.ones(len(item), bool), np.zeros(len(item)), paths)
    train, val = split_by_name(windows, SPLIT)
    assert {Path(paths[i]).stem for i in np.unique(windows.item[val])} == held
    assert not (train & val).any() and (train | val).all()


def test_a_split_that_holds_out_nothing_is_refused(synth_dir):
    items = read_manifest(synth_dir, check_frames=False)
    nothing = ClipSplit(fraction=0.0)
    crops = collect_crops(items, [], 32, PipelineConfig().tubes, BackboneOptions(frames_per_clip=1))
    with pytest.raises(SmokewatchError, match="holds out none"):
        validation_crops(crops, BackboneOptions(split=nothing), np.random.default_rng(0))
    windows = WindowSet(np.zeros((2, 4, 2), np.float16), np.zeros(2), np.arange(2), np.ones(2, bool), np.zeros(2),
                        [str(items[0].path), str(items[1].path)])
    with pytest.raises(SmokewatchError, match="no validation windows"):
        split_by_name(windows, nothing)
    with pytest.raises(SmokewatchError, match="only validation windows"):
        split_by_name(windows, ClipSplit(fraction=1.0))
