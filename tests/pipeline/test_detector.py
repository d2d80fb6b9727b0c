import numpy as np
import pytest
import torch

from pipeline.config import DetectorConfig, TileConfig
from pipeline.detector import Detector, _View, letterbox, tile_rects
from pipeline.models import build_detector_network, fuse_for_inference, smoke_class_index
from pipeline.errors import ConfigError


@pytest.mark.parametrize("rect", [False, True])
@pytest.mark.parametrize("shape", [(480, 640), (853, 1280), (100, 60)])
def test_letterbox_and_back_recover_source_pixels(shape, rect):
    h, w = shape
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = w // 4, h // 3, w // 4 + w // 5, h // 3 + h // 6
    image[y1:y2, x1:x2] = 255
    canvas, scale, pad_x, pad_y = letterbox(image, 320, rect)
    if rect:  # the long side fills the size, the short one is padded to the next multiple of 32
        long_side = 1 if w >= h else 0
        assert canvas.shape[long_side] == 320 and canvas.shape[1 - long_side] % 32 == 0
        assert canvas.shape[1 - long_side] - round(min(h, w) * scale) < 32
    else:
        assert canvas.shape == (320, 320, 3)
    ys, xs = np.nonzero(canvas[..., 0] > 128)
    found = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    back = _View(0, 0, 0, scale, pad_x, pad_y).to_source(found)[0].tolist()
    assert back == pytest.approx([x1, y1, x2, y2], abs=2 / scale + 1)


def test_tiles_cover_the_frame_with_overlap():
    rects = tile_rects(1392, 1856, TileConfig(size=640, overlap=64, include_full_frame=True))
    assert rects[0] == (0, 0, 1392, 1856)
    covered = np.zeros((1856, 1392), bool)
    for x0, y0, x1, y1 in rects[1:]:
        assert x1 - x0 == 640 and y1 - y0 == 640
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert tile_rects(320, 240, TileConfig(size=640)) == [(0, 0, 320, 240)]
    assert tile_rects(1000, 500, None) == [(0, 0, 1000, 500)]


@pytest.mark.parametrize("tiles", [None, TileConfig(size=96, overlap=16)])
def test_real_network_gives_boxes_inside_frames(tiles):
    torch.manual_seed(0)
    config = DetectorConfig(arch="yolov8n.yaml", imgsz=64, conf=0.0, max_det=5, tiles=tiles)
    built = build_detector_network(config)
    network, names = built.network, built.names
    detector = Detector(fuse_for_inference(network), config, smoke_class_index(names, "smoke"), torch.device("cpu"))
    images = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i, (h, w) in enumerate([(90, 200), (150, 120)])]
    results = detector.detect(images)
    assert len(results) == 2
    for image, dets in zip(images, results):
        h, w = image.shape[:2]
        assert 0 < len(dets) <= 5
        confs = [d.conf for d in dets]
        assert confs == sorted(confs, reverse=True)
        for d in dets:
            assert 0 <= d.box.x1 < d.box.x2 <= w and 0 <= d.box.y1 < d.box.y2 <= h
    assert detector.detect([]) == []


def test_smoke_class_lookup():
    assert smoke_class_index({0: "fire", 1: "smoke"}, "smoke") == 1
    assert smoke_class_index({0: "Smoke"}, "smoke") == 0
    assert smoke_class_index({0: "fire", 1: "smoke"}, 1) == 1
    with pytest.raises(ConfigError, match="no class named"):
        smoke_class_index({0: "fire", 1: "person"}, "smoke")
