"""Optical flow inside regions: rising texture, drifting texture, a panning camera, real clips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import FlowConfig
from pipeline.flow import FlowMeter
from pipeline.records import Box
from training.synth.clip import ClipRenderer, plan_clip

REGION = (80, 40, 160, 120)  # 80 x 80 px, inside a 240 x 160 frame


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random texture: structure at a few pixels' scale that flow can follow."""
    noise = rng.random((height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _frames(move_patch: tuple[int, int], move_all: tuple[int, int], count: int = 5) -> list[np.ndarray]:
    """A still textured scene with a second texture under REGION, seen through a window that moves
    by `move_patch` (dx, dy) a frame (so that texture moves the opposite way), the whole picture
    moving by `move_all` (a panning camera)."""
    rng = np.random.default_rng(3)
    scene = _texture(rng, 260, 340)
    patch = _texture(rng, 200, 200)
    frames = []
    for t in range(count):
        canvas = scene.copy()
        px, py = 70 + move_patch[0] * t, 70 + move_patch[1] * t  # where the region looks into the patch
        canvas[90:170, 130:210] = patch[py : py + 80, px : px + 80]  # REGION, shifted by the scene margin (50, 50)
        x0, y0 = 50 - move_all[0] * t, 50 - move_all[1] * t
        view = canvas[y0 : y0 + 160, x0 : x0 + 240]
        frames.append(np.repeat((view * 255).astype(np.uint8)[..., None], 3, axis=2))
    return frames


def _measure(frames: list[np.ndarray]):
    meter = FlowMeter(FlowConfig(enabled=True))
    for seq, image in enumerate(frames):
        meter.push(seq, image, seq / 4)
    return meter.measure(REGION, tuple(range(len(frames))))


def test_texture_rising_in_a_region_reads_as_rise_and_texture_blowing_sideways_as_drift():
    # the patch's content moves up 2 px a frame when its window into the patch moves down
    rising = _measure(_frames(move_patch=(0, 2), move_all=(0, 0)))
    assert rising.rise == pytest.approx(2 / 80, rel=0.4)
    assert rising.drift < 0.3 * rising.rise and rising.rising_share > 0.8
    assert rising.contrast > 2  # the rest of the picture stands still

    drifting = _measure(_frames(move_patch=(2, 0), move_all=(0, 0)))
    assert drifting.drift == pytest.approx(2 / 80, rel=0.4)
    assert abs(drifting.rise) < 0.3 * drifting.drift


def test_a_panning_camera_is_not_motion_inside_a_region():
    panned = _measure(_frames(move_patch=(0, 0), move_all=(3, 1)))
    assert abs(panned.rise) < 0.003 and panned.drift < 0.005 and panned.moving_share < 0.2


def test_a_region_with_no_comparable_frames_is_unmeasured_not_still_and_old_flows_are_forgotten():
    meter = FlowMeter(FlowConfig(enabled=True))
    frames = _frames(move_patch=(0, 2), move_all=(0, 0), count=3)
    meter.push(0, frames[0], 0.0)
    assert meter.measure(REGION, (0,)) is None  # the first frame has nothing to compare with
    meter.push(1, frames[1], 0.25)
    meter.push(2, frames[2], 0.5)
    assert meter.measure(REGION, (1, 2)).rise > 0
    meter.evict_before(2)
    assert meter.measure(REGION, (0, 1)) is None
    assert meter.measure((300, 300, 340, 340), (2,)) is None  # outside the picture

    slow = FlowMeter(FlowConfig(enabled=True, max_gap_s=2.0))
    for seq, image in enumerate(frames):
        slow.push(seq, image, seq * 60.0)  # one image a minute: nothing to follow from one to the next
    assert slow.measure(REGION, (1, 2)) is None


def test_a_small_region_in_a_large_frame_is_measured_at_its_own_scale():
    """Scaled up fourfold, the same scene gives the same figures: the region is cut at full
    resolution and resized, not looked at in a whole-frame flow where it would be a few pixels."""
    frames = _frames(move_patch=(0, 2), move_all=(0, 0))
    large = [cv2.resize(f, (960, 640), interpolation=cv2.INTER_CUBIC) for f in frames]
    meter = FlowMeter(FlowConfig(enabled=True))
    for seq, image in enumerate(large):
        meter.push(seq, image, seq / 4)
    big = meter.measure(tuple(4 * v for v in REGION), tuple(range(len(large))))
    assert big.rise == pytest.approx(_measure(frames).rise, rel=0.25)


def test_a_synthetic_plume_rises_where_the_sky_around_it_does_not():
    plan = plan_clip(5, 3, (480, 270), frames=24, kind="smoke")
    plan.camera.offsets[:] = 0
    plan.camera.banner = False
    renderer = ClipRenderer(plan)
    meter = FlowMeter(FlowConfig(enabled=True))
    boxes = []
    for t in range(plan.frames):
        image, frame_boxes = renderer.render(t)
        meter.push(t, image, t / plan.fps)
        boxes.append(frame_boxes)
    last = plan.frames - 1
    x1, y1, x2, y2 = (int(v) for v in boxes[last][0])
    on_plume = meter.measure((x1, y1, x2, y2), tuple(range(last - 7, last + 1)))
    width = x2 - x1
    beside = meter.measure((max(0, x1 - 2 * width), y1, max(8, x1 - width), y2), tuple(range(last - 7, last + 1)))
    assert on_plume.rise > 0 and on_plume.rise > beside.rise


def test_windows_carry_the_flow_when_it_is_measured(tiny_bundle_dir, clip_path):
    from pipeline.bundle import ModelBundle
    from pipeline.engine import Engine

    bundle = ModelBundle.load(tiny_bundle_dir)
    plain = Engine(bundle).detect(clip_path)
    measured = Engine(bundle, config=bundle.config.with_overrides({"flow.enabled": True})).detect(clip_path)
    assert plain.windows and all(w.flow is None for w in plain.windows)
    assert len(measured.windows) == len(plain.windows)
    # a window on the clip's first frame has nothing to compare with; every later one is measured
    assert all((w.flow is None) == (w.frame_index == 0) for w in measured.windows)
    assert "flow" not in measured.windows[0].to_json()
    # the flow is evidence beside the heads; it changes no probability
    assert [w.smoke_prob for w in measured.windows] == pytest.approx([w.smoke_prob for w in plain.windows])
    assert set(measured.windows[-1].to_json()["flow"]) == {"rise", "drift", "speed", "contrast", "rising_share", "moving_share"}
    assert Box(*measured.windows[-1].to_json()["region"]).width > 0
