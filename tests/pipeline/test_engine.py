import pytest
import torch

from pipeline.bundle import ModelBundle
from pipeline.config import HEAD_NAMES
from pipeline.engine import Engine, NaiveSession


@pytest.fixture(scope="module")
def engine(tiny_bundle_dir):
    return Engine(ModelBundle.load(tiny_bundle_dir), device="cpu")


def test_detect_returns_a_consistent_clip_result(engine, clip_path):
    result = engine.detect(clip_path, progress=False)
    assert result.frames_read == 24
    assert result.frames_processed == 16  # 24 frames at 12 fps, kept at 8 fps
    assert result.windows, "an untrained detector at conf 0 still proposes candidates"
    for w in result.windows:
        assert 0.0 <= w.smoke_prob <= 1.0
        assert set(w.head_probs) == set(HEAD_NAMES)
        assert w.smoke_prob == w.head_probs[engine.primary]
        assert w.verified == (w.smoke_prob >= engine.config.decision.threshold)
        assert 0 <= w.region.x1 < w.region.x2 <= 160 and 0 <= w.region.y1 < w.region.y2 <= 96
    confirmed = [w for w in result.windows if w.confirmed]
    assert result.verdict == ("smoke" if confirmed else "no_smoke")
    if confirmed:
        assert result.first_smoke_frame == confirmed[0].frame_index
        assert result.first_smoke_time_s == pytest.approx(confirmed[0].time_s)
    assert result.s_per_frame > 0
    assert set(result.stage_times.heads) == set(HEAD_NAMES)


def test_each_crop_is_computed_once_and_matches_the_naive_loop(engine, clip_path):
    fast = engine.detect(clip_path, progress=False)
    naive = engine.detect(clip_path, progress=False, session=NaiveSession(engine))
    assert [(w.frame_index, w.track_id) for w in fast.windows] == [(w.frame_index, w.track_id) for w in naive.windows]
    for a, b in zip(fast.windows, naive.windows):
        assert a.smoke_prob == pytest.approx(b.smoke_prob, abs=1e-4)
    assert fast.verdict == naive.verdict
    window = engine.config.tubes.window
    assert naive.crops_computed == window * len(naive.windows)
    assert fast.crops_computed < naive.crops_computed / 2
    assert fast.crops_computed + fast.crops_reused == naive.crops_computed


def test_threshold_decides_the_verdict(tiny_bundle_dir, clip_path):
    bundle = ModelBundle.load(tiny_bundle_dir)
    always = Engine(bundle, config=bundle.config.with_overrides({"decision.threshold": 0.0}))
    never = Engine(bundle, config=bundle.config.with_overrides({"decision.threshold": 1.0}))
    yes, no = always.detect(clip_path, progress=False), never.detect(clip_path, progress=False)
    assert yes.verdict == "smoke" and yes.first_smoke_frame == 0
    assert no.verdict == "no_smoke" and no.first_smoke_frame is None


def test_max_frames_stops_early(tiny_bundle_dir, clip_path):
    bundle = ModelBundle.load(tiny_bundle_dir)
    engine = Engine(bundle, config=bundle.config.with_overrides({"sampling.max_frames": 3}))
    result = engine.detect(clip_path, progress=False)
    assert result.frames_processed == 3
    assert result.frames_read < 24


def test_single_image_is_verified_with_a_padded_window(engine, tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "x.jpg")
    result = engine.detect(tmp_path / "x.jpg", progress=False)
    assert result.frames_processed == 1
    assert result.windows and all(w.frame_index == 0 for w in result.windows)


def test_session_streams_frames_one_at_a_time_like_a_clip(engine, clip_path):
    from pipeline.sampler import Sampler

    source = engine.open(clip_path)
    sampler = Sampler(engine.config.sampling, by_time=True)
    session = engine.session()
    streamed = [w for frame in source.frames(sampler.keep) for r in session.process([frame]) for w in r.windows]
    whole = engine.detect(clip_path, progress=False).windows
    assert [(w.frame_index, w.track_id) for w in streamed] == [(w.frame_index, w.track_id) for w in whole]
    assert all(a.smoke_prob == pytest.approx(b.smoke_prob, abs=1e-4) for a, b in zip(streamed, whole))
