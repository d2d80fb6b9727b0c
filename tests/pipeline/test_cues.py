import numpy as np
import pytest
import torch

from pipeline.bundle import ModelBundle
from pipeline.cues import CLIP, CUE_DIM, GRID, THUMB, thumbnail, window_cues
from pipeline.engine import Engine, NaiveSession
from pipeline.errors import BundleError

CELLS = GRID * GRID


def _parts(cues: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signed since first, absolute since first, absolute since previous), each (T, GRID, GRID)."""
    return tuple(cues[:, i * CELLS : (i + 1) * CELLS].reshape(len(cues), GRID, GRID) for i in range(3))


def _textured(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.3, 0.7, (THUMB, THUMB)).astype(np.float32)


def test_a_still_region_gives_no_cues():
    frames = np.stack([_textured()] * 6)
    cues = window_cues(frames)
    assert cues.shape == (6, CUE_DIM) and cues.dtype == np.float32
    assert np.all(cues == 0)


def test_growth_from_one_corner_shows_in_that_corner_and_grows():
    """A plume rising from the bottom-left cell: change there first, spreading, nowhere else at first."""
    frames = np.stack([_textured()] * 5)
    cell = THUMB // GRID
    for t in range(1, 5):
        frames[t, THUMB - cell * t :, :cell] += 0.2  # a column one cell wide, t cells tall
    signed, absolute, step = _parts(window_cues(frames))
    assert np.all(signed[0] == 0)
    assert signed[1, GRID - 1, 0] > 0 and np.count_nonzero(signed[1]) == 1
    lit = [np.count_nonzero(absolute[t] > 1e-6) for t in range(5)]
    assert lit == [0, 1, 2, 3, 4]
    assert np.all(signed[:, :, 1:] == 0), "cells beside the column never change"
    # since the previous frame, only the newly covered cell changes
    assert np.count_nonzero(step[3] > 1e-6) == 1 and step[3, 0, 0] == 0 and step[3, 1, 0] > 0


def test_fog_or_light_change_moves_every_cell_alike():
    frames = np.stack([_textured() + 0.03 * t for t in range(4)])
    signed, _, step = _parts(window_cues(frames))
    assert np.allclose(signed[3], signed[3].mean(), atol=1e-5) and signed[3].mean() > 0
    assert np.allclose(step[1:], step[1, 0, 0], atol=1e-5)


def test_the_same_change_counts_more_on_a_flat_sky_than_on_forest():
    flat = np.full((THUMB, THUMB), 0.6, np.float32)
    forest = _textured()
    change = np.zeros((THUMB, THUMB), np.float32)
    change[:4, :4] = 0.02  # a faint wisp in the top-left cell
    on_flat = window_cues(np.stack([flat, flat + change]))
    on_forest = window_cues(np.stack([forest, forest + change]))
    assert on_flat[1, 0] > 3 * on_forest[1, 0] > 0


def test_cues_are_clipped_so_a_flash_cannot_dominate():
    dark = np.zeros((THUMB, THUMB), np.float32)
    cues = window_cues(np.stack([dark, dark + 1.0]))
    assert cues.max() == pytest.approx(CLIP) and cues.min() >= -CLIP


def test_thumbnail_is_grey_of_the_region():
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:30, 20:60] = 255
    thumb = thumbnail(image, (20, 10, 60, 30))
    assert thumb.shape == (THUMB, THUMB) and thumb.dtype == np.float32
    assert np.allclose(thumb, 1.0)
    assert np.all(thumbnail(image, (0, 40, 80, 60)) == 0)
    assert np.all(thumbnail(image, (5, 5, 5, 9)) == 0), "an empty region gives a blank thumbnail, not an error"


@pytest.fixture(scope="module")
def cue_bundle_dir(tmp_path_factory, tiny_config):
    torch.manual_seed(1)
    config = tiny_config.with_overrides({"extractor.change_cues": True})
    bundle = ModelBundle.create(config, heads=["lstm", "gru"], name="tiny-cues")
    return bundle.save(tmp_path_factory.mktemp("bundle") / "cues")


def test_heads_of_a_cue_bundle_read_features_and_cues(cue_bundle_dir, clip_path):
    bundle = ModelBundle.load(cue_bundle_dir)
    assert bundle.window_dim == bundle.feature_dim + CUE_DIM
    assert all(head.spec.input_dim == bundle.window_dim for head in bundle.heads.values())
    engine = Engine(bundle, device="cpu")
    session = engine.session()
    seen = []
    original = session.window_features

    def spy(requests, member=None):
        stacked = original(requests, member)
        seen.append(stacked)
        return stacked

    session.window_features = spy
    fast = engine.detect(clip_path, progress=False, session=session)
    assert fast.windows and seen
    stacked = torch.cat(seen)
    assert stacked.shape[1:] == (engine.config.tubes.window, bundle.window_dim)
    assert stacked[:, :, bundle.feature_dim :].abs().sum() > 0, "the plume in the clip changes its region"
    assert stacked[:, 0, bundle.feature_dim + CELLS :].abs().sum() == 0, "nothing changed at a window's first frame"
    # the one-crop-at-a-time loop appends the same cues and so gives the same answers
    naive = engine.detect(clip_path, progress=False, session=NaiveSession(engine))
    assert [w.smoke_prob for w in fast.windows] == pytest.approx([w.smoke_prob for w in naive.windows], abs=1e-4)


def test_heads_trained_without_cues_are_refused_under_a_config_with_them(tiny_bundle_dir, tmp_path):
    bundle = ModelBundle.load(tiny_bundle_dir)
    bundle.config = bundle.config.with_overrides({"extractor.change_cues": True})
    bundle.save(tmp_path / "mixed")
    with pytest.raises(BundleError, match="change cues"):
        ModelBundle.load(tmp_path / "mixed")


def test_cues_cannot_be_switched_at_run_time(tiny_bundle_dir):
    """The heads were trained with or without them: a --set that flips them must be refused, not
    reach the heads as vectors of the wrong length."""
    from pipeline.config import override_bundle_config
    from pipeline.errors import ConfigError

    config = ModelBundle.load(tiny_bundle_dir).config
    with pytest.raises(ConfigError, match="extractor.change_cues cannot be overridden"):
        override_bundle_config(config, {"extractor.change_cues": True})
