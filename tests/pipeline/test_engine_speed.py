"""The engine's speed path changes no answer: prefetch thread, batched detector post-processing,
several clips or streams batched through the detector together."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torchvision

from engine_helpers import decode_threads, same_answers
from pipeline.bundle import ModelBundle
from pipeline.config import DetectorConfig, TileConfig
from pipeline.detector import Detector, Prepared
from pipeline.engine import Engine, SessionStep, prefetched
from pipeline.models import build_detector_network, fuse_for_inference, smoke_class_index
from pipeline.sampler import Sampler


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    return ModelBundle.load(tiny_bundle_dir)


# --- prefetched ------------------------------------------------------------------------------


def test_prefetched_keeps_order_and_raises_where_the_generator_did():
    def numbers():
        yield from range(5)
        raise ValueError("cut short")

    got = []
    with pytest.raises(ValueError, match="cut short"):
        for item in prefetched(numbers(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert not decode_threads()


def test_closing_prefetched_early_stops_the_thread_and_closes_the_generator():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = prefetched(endless(), depth=1)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    assert closed.is_set(), "the generator is closed (its source released) before close() returns"
    assert not decode_threads()


# --- engine ----------------------------------------------------------------------------------


def test_prefetch_changes_no_answer(bundle, clip_path):
    inline = Engine(bundle, config=bundle.config.with_overrides({"runtime.prefetch": 0})).detect(clip_path, progress=False)
    ahead = Engine(bundle, config=bundle.config.with_overrides({"runtime.prefetch": 3})).detect(clip_path, progress=False)
    same_answers(inline, ahead)
    assert ahead.stage_times.decode > 0 and ahead.stage_times.detect > 0


def test_a_failing_callback_stops_the_decoding_thread(bundle, clip_path):
    engine = Engine(bundle)

    def cancel(result):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        engine.detect(clip_path, on_frame=cancel, progress=False)
    assert not decode_threads()


def test_detect_many_gives_each_clip_its_own_answer(bundle, clip_path, make_clip, tmp_path):
    other = make_clip(tmp_path / "other.mp4", frames=20, seed=3, size=(128, 96))
    engine = Engine(bundle)
    alone = [engine.detect(clip_path, progress=False), engine.detect(other, progress=False)]
    together = engine.detect_many([clip_path, other, clip_path])
    for a, b in zip(alone + alone[:1], together):
        same_answers(a, b)
        assert b.crops_computed == a.crops_computed
    assert not decode_threads()


def test_process_many_batches_streams_through_the_detector(bundle, clip_path, make_clip, tmp_path):
    """Two camera streams stepped together match each stream stepped alone."""
    other = make_clip(tmp_path / "cam2.mp4", frames=16, seed=5)
    engine = Engine(bundle)

    def frames_of(path):
        with engine.open(path) as source:
            return list(source.frames(Sampler(engine.config.sampling, by_time=True).keep))

    a, b = frames_of(clip_path), frames_of(other)
    alone = []
    for frames in (a, b):
        session = engine.session()
        alone.append([w for i in range(0, len(frames), 3) for r in session.process(frames[i : i + 3]) for w in r.windows])
    sessions = [engine.session(), engine.session()]
    together: list[list] = [[], []]
    for i in range(0, max(len(a), len(b)), 3):
        work = [SessionStep(s, f[i : i + 3]) for s, f in zip(sessions, (a, b)) if f[i : i + 3]]
        for step, results in zip(work, engine.process_many(work)):
            together[sessions.index(step.session)].extend(w for r in results for w in r.windows)
    for x, y in zip(alone, together):
        assert [(w.frame_index, w.track_id, w.region) for w in x] == [(w.frame_index, w.track_id, w.region) for w in y]
        assert all(p.smoke_prob == pytest.approx(q.smoke_prob, abs=1e-4) for p, q in zip(x, y))
    assert all(s.times.detect > 0 for s in sessions)


# --- detector post-processing ------------------------------------------------------------------


def per_frame_reference(detector: Detector, images: list[np.ndarray]) -> list[list[tuple]]:
    """The post-processing as it was written first: one view, then one frame at a time."""
    prepared = detector.prepare(images)
    raw = detector._raw(prepared)
    merged = [[] for _ in images]
    for view, pred in zip(prepared.views, raw):
        scores = pred[4 + detector.class_index]
        keep = scores >= detector.config.conf
        xywh = pred[:4, keep].T
        boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), dim=1)
        if boxes.numel():
            merged[view.frame].append((view.to_source(boxes), scores[keep]))
    out = []
    for image, parts in zip(images, merged):
        h, w = image.shape[:2]
        if not parts:
            out.append([])
            continue
        boxes, scores = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, h)
        valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[valid], scores[valid]
        keep = torchvision.ops.nms(boxes, scores, detector.config.iou)[: detector.config.max_det]
        out.append([(*b, s) for b, s in zip(boxes[keep].tolist(), scores[keep].tolist())])
    return out


@pytest.mark.parametrize(
    "tiles,conf", [(None, 0.0), (TileConfig(size=96, overlap=16), 0.0), (None, 0.5), (None, 1.0)]
)
def test_batched_post_processing_matches_the_per_frame_one(tiles, conf):
    torch.manual_seed(1)
    config = DetectorConfig(arch="yolov8n.yaml", imgsz=64, conf=conf, max_det=6, tiles=tiles)
    built = build_detector_network(config)
    network, names = built.network, built.names
    detector = Detector(fuse_for_inference(network), config, smoke_class_index(names, "smoke"), torch.device("cpu"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(90, 200), (150, 120), (64, 64)]]
    with torch.inference_mode():
        expected = per_frame_reference(detector, images)
    got = detector.detect(images)
    assert [len(d) for d in got] == [len(e) for e in expected]
    for dets, ref in zip(got, expected):
        for det, (x1, y1, x2, y2, s) in zip(dets, ref):
            assert [det.box.x1, det.box.y1, det.box.x2, det.box.y2, det.conf] == pytest.approx([x1, y1, x2, y2, s], abs=1e-4)
    if conf == 1.0:
        assert got == [[], [], []]


def test_prepared_parts_concatenate_like_one_list():
    torch.manual_seed(0)
    config = DetectorConfig(arch="yolov8n.yaml", imgsz=64, conf=0.0, max_det=3, tiles=TileConfig(size=96, overlap=16))
    built = build_detector_network(config)
    network, names = built.network, built.names
    detector = Detector(fuse_for_inference(network), config, 0, torch.device("cpu"))
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(90, 200), (60, 80), (150, 120)]]
    whole = detector.prepare(images)
    parts = Prepared.concat([detector.prepare(images[:1]), detector.prepare(images[1:])])
    assert parts.views == whole.views
    assert all(np.array_equal(a, b) for a, b in zip(parts.canvases, whole.canvases, strict=True))
    assert detector.detect(images, parts) == detector.detect(images)


def test_a_frames_boxes_do_not_depend_on_its_batch_even_with_tied_scores():
    """Untrained heads give many exactly equal scores; ties must break the same way whatever else
    shares the batch, or the engine and a one-frame-at-a-time loop would follow other candidates."""
    torch.manual_seed(0)
    config = DetectorConfig(arch="yolov8n.yaml", imgsz=128, conf=0.0, max_det=4)
    built = build_detector_network(config)
    network, names = built.network, built.names
    detector = Detector(fuse_for_inference(network), config, 0, torch.device("cpu"))
    images = [np.full((72 + 8 * i, 128, 3), 40 * i, np.uint8) for i in range(6)]  # flat frames: tied scores
    batch = detector.detect(images)
    assert any(len({d.conf for d in dets}) < len(dets) for dets in batch), "the case has ties"
    for dets, alone in zip(batch, [detector.detect([image])[0] for image in images]):
        flat = lambda ds: [v for d in ds for v in (d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.conf)]  # noqa: E731
        assert flat(dets) == pytest.approx(flat(alone), abs=1e-3)  # the same boxes, up to the last bits

