import numpy as np

from pipeline.config import TubeConfig
from pipeline.features import cut_crop
from pipeline.records import Box, Detection
from pipeline.tubes import TubeBuilder, expand_region

W, H = 640, 480


def det(x1, y1, x2, y2, conf=0.5):
    return Detection(Box(x1, y1, x2, y2), conf)


def test_jittering_box_stays_one_candidate_with_a_still_region():
    tubes = TubeBuilder(TubeConfig(window=4, link_iou=0.2))
    regions = set()
    for seq, dx in enumerate([0, 2, -1, 3, 1, 0]):
        requests = tubes.update(seq, [det(100 + dx, 200, 160 + dx, 260)], W, H)
        assert [r.track_id for r in requests] == [0]
        regions.add(requests[0].region)
    assert len(tubes.tracks) == 1
    assert len(regions) == 1, "a jittering box must keep its crop region so crop features are reused"


def test_far_boxes_start_separate_candidates_and_missed_ones_expire():
    tubes = TubeBuilder(TubeConfig(window=4, max_missed=1))
    tubes.update(0, [det(10, 10, 50, 50), det(400, 300, 450, 350)], W, H)
    assert sorted(t.id for t in tubes.tracks) == [0, 1]
    requests = tubes.update(1, [det(12, 10, 52, 50)], W, H)
    assert {r.track_id: r.detector_conf for r in requests} == {0: 0.5, 1: 0.0}  # 1 missed, still verified
    tubes.update(2, [det(12, 10, 52, 50)], W, H)
    assert [t.id for t in tubes.tracks] == [0]


def test_windows_reach_back_before_the_first_detection_and_pad_at_the_start():
    tubes = TubeBuilder(TubeConfig(window=4))
    for seq in range(5):
        assert tubes.update(seq, [], W, H) == []
    (request,) = tubes.update(5, [det(100, 100, 140, 140)], W, H)
    assert request.frame_seqs == (2, 3, 4, 5)
    fresh = TubeBuilder(TubeConfig(window=4))
    (request,) = fresh.update(0, [det(100, 100, 140, 140)], W, H)
    assert request.frame_seqs == (0, 0, 0, 0)
    (request,) = fresh.update(1, [det(100, 100, 140, 140)], W, H)
    assert request.frame_seqs == (0, 0, 0, 1)
    strict = TubeBuilder(TubeConfig(window=4, pad_short=False))
    assert strict.update(0, [det(100, 100, 140, 140)], W, H) == []


def test_stride_spaces_windows():
    tubes = TubeBuilder(TubeConfig(window=2, stride=3))
    due = [bool(tubes.update(seq, [det(100, 100, 140, 140)], W, H)) for seq in range(7)]
    assert due == [True, False, False, True, False, False, True]


def test_region_moves_when_the_plume_outgrows_it():
    tubes = TubeBuilder(TubeConfig(window=2, margin=0.25))
    (first,) = tubes.update(0, [det(300, 300, 320, 320)], W, H)
    (second,) = tubes.update(1, [det(295, 280, 335, 322)], W, H)
    assert second.track_id == first.track_id
    assert second.region != first.region
    x1, y1, x2, y2 = second.region
    assert x1 <= 295 and y1 <= 280 and x2 >= 335 and y2 >= 322


def test_region_is_square_expanded_on_grid_and_inside_the_frame():
    cfg = TubeConfig(margin=0.5, grid=8, min_size=32)
    x1, y1, x2, y2 = expand_region(Box(600, 10, 640, 30), cfg, W, H)
    assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
    assert x1 % 8 == 0 and y1 % 8 == 0
    assert abs((x2 - x1) - (y2 - y1)) <= 8
    assert (x2 - x1) >= 80  # 40 px box + 50 % on each side
    tiny = expand_region(Box(100, 100, 102, 102), cfg, W, H)
    assert tiny[2] - tiny[0] >= 32


def test_crop_cuts_the_same_region_from_each_frame():
    frames = [np.full((H, W, 3), i * 10, np.uint8) for i in range(3)]
    for f in frames:
        f[100:140, 200:240] = 255
    region = (200, 100, 240, 140)
    crops = [cut_crop(f, region, 16) for f in frames]
    assert all(c.shape == (16, 16, 3) for c in crops)
    assert all((c == 255).all() for c in crops)
    outside = cut_crop(frames[2], (0, 0, 40, 40), 16)
    assert (outside == 20).all()
