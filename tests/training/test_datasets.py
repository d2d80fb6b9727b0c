from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import ManifestError, frame_boxes, read_figlib, read_items, read_manifest, read_yolo_folder

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _img(path: Path, value: int = 0, size=(32, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_manifest_items_resolve_paths_and_truth(tmp_path, clip_path):
    frames = tmp_path / "seq"
    for i in range(5):
        _img(frames / f"{i:03d}.jpg", i)
    (tmp_path / "clip.mp4").write_bytes(clip_path.read_bytes())
    (tmp_path / "manifest.csv").write_text("path,label,smoke_from,smoke_to\nseq,smoke,2,3\nclip.mp4,no_smoke,,\n")
    seq, clip = read_manifest(tmp_path)
    assert seq.path == frames.resolve() and seq.frame_count == 5 and clip.frame_count == 24
    assert [seq.smoke_at(i) for i in range(5)] == [False, False, True, True, False]
    assert not any(clip.smoke_at(i) for i in range(24))


@pytest.mark.parametrize(
    "body, message",
    [
        ("path,smoke_from\nseq,1\n", "missing column label"),
        ("path,label\nseq,fire\n", "row 1 (seq): unknown label 'fire'"),
        ("path,label\nseq,smoke\nnope.mp4,smoke\n", "row 2 (nope.mp4): nope.mp4 does not exist"),
        ("path,label,smoke_from\nseq,smoke,9\n", "row 1 (seq): smoke_from 9 is beyond the end (5 frames)"),
        ("path,label,smoke_from,smoke_to\nseq,smoke,3,1\n", "smoke_to 1 is before smoke_from 3"),
        ("path,label,smoke_from\nseq,no_smoke,1\n", "no_smoke item cannot have"),
        ("path,label,smoke_from\nseq,smoke,x\n", "smoke_from must be a frame index"),
    ],
)
def test_malformed_manifests_name_the_row(tmp_path, body, message):
    for i in range(5):
        _img(tmp_path / "seq" / f"{i}.png")
    (tmp_path / "manifest.csv").write_text(body)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(tmp_path)


def test_figlib_offsets_give_smoke_from(tmp_path):
    fire = tmp_path / "20200611_fire"
    for offset in (-120, -60, 0, 60, 120):
        _img(fire / f"1591900000_{offset:+06d}.jpg")
    (item,) = read_figlib(tmp_path)
    assert item.label == "smoke" and item.smoke_from == 2 and item.frame_count == 5
    assert read_items(fire)[0].smoke_from == 2


def test_yolo_folder_filters_classes_and_keeps_groups(tmp_path):
    _img(tmp_path / "images" / "a.jpg")
    _img(tmp_path / "images" / "b.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.1 0.1 0.1 0.1\n")
    (tmp_path / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "groups.csv").write_text("image,group\na.jpg,video_01\nb.jpg,still\n")
    a, b = read_yolo_folder(tmp_path, {1})
    assert a.positive and not b.positive and a.group == "video_01"
    (box,) = a.boxes(32, 24)
    assert (box.x1, box.y1, box.x2, box.y2) == (8, 6, 24, 18)
    items = read_items(tmp_path)
    assert [i.label for i in items] == ["smoke", "smoke"]  # class 0 is smoke by default


@pytest.mark.skipif(not (SHARED / "real-sample" / "manifest.csv").exists(), reason="../shared/data/real-sample is absent")
def test_real_sample_manifest_reads_with_per_frame_boxes():
    items = read_manifest(SHARED / "real-sample")
    figlib = items[0]
    assert figlib.smoke_from == 42 and figlib.frame_count == 81 and figlib.boxes_dir is not None
    assert frame_boxes(figlib, 41, 1280, 853) == []
    assert len(frame_boxes(figlib, 60, 1280, 853)) == 1
