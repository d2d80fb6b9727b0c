"""Optical flow inside candidate regions: does the picture there rise, or drift past?

Smoke is warm: it rises from its source and spreads, while clouds and fog banks mostly drift
sideways with the wind, and a camera's shake moves everything at once. The heads judge what a
region looks like from one small crop per frame; they do not see the motion of the texture inside
it. On the windows of our 160 held-out synthetic clips (measured with a whole-frame flow at 320 px,
the first version of this module), the mean upward motion in a region alone ranked windows on a
plume above the rest with an AUC of 0.84, for reasons of its own, so a track scorer trained with
`train decision --flow` reads these figures beside the heads' probabilities. On real footage it has
not yet earned its place (training/EXPERIMENTS.md: off by default).

Each region is measured at its own scale: cut from two consecutive kept frames and resized to
`flow.size` pixels, as the backbone's crops are, so a 30 px region in a 2 MP lookout frame is not
lost in a whole-frame flow at 320 px (where it would be 6 px wide and its "motion" noise). The
camera's own motion is measured once per frame on a small copy of the whole picture (the median
flow) and taken out. Frames further apart than `flow.max_gap_s` are not compared.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import FlowConfig
from .records import RegionFlow

Region = tuple[int, int, int, int]


def _farneback(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 9, 3, 5, 1.1, 0)


class FlowMeter:
    """Per-source state: grey copies of the recent kept frames, the camera's motion into each, and
    the flow of every (frame, region) pair measured so far (regions are held still across windows,
    so each pair is measured once). Feed frames in order."""

    def __init__(self, config: FlowConfig) -> None:
        self.config = config
        self._grey: dict[int, np.ndarray] = {}
        self._small: np.ndarray | None = None
        self._last_time: float | None = None  # of the previous frame
        self._camera: dict[int, tuple[float, float, float]] = {}  # seq -> (dx, dy, mean speed), full-frame px
        self._steps: dict[tuple[int, Region], tuple[float, ...] | None] = {}

    def push(self, seq: int, image: np.ndarray, time_s: float) -> None:
        """Keep this frame and measure the camera's motion since the previous one (nothing for the
        first frame, after a change of size, or after a gap longer than max_gap_s)."""
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        h, w = grey.shape
        scale = min(1.0, self.config.camera_width / max(w, 1))
        small = cv2.resize(grey, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        previous, last_time = self._small, self._last_time
        self._grey[seq], self._small, self._last_time = grey, small, time_s
        if previous is None or previous.shape != small.shape or time_s - last_time > self.config.max_gap_s:
            return
        flow = _farneback(previous, small)
        dx, dy = np.median(flow.reshape(-1, 2), axis=0)
        speed = float(np.hypot(flow[..., 0] - dx, flow[..., 1] - dy).mean())
        self._camera[seq] = (float(dx) / scale, float(dy) / scale, speed / scale)

    def measure(self, region: Region, seqs: tuple[int, ...]) -> RegionFlow | None:
        """The region's motion over the window's frames, averaged over the frame pairs measured;
        None when no pair could be (frames too far apart, the first frame, a region off the picture).
        Kept apart from "nothing moved": a camera sending a frame a minute is not a still picture."""
        rows = [row for seq in dict.fromkeys(seqs) if (row := self._step(seq, region)) is not None]
        if not rows:
            return None
        mean = np.asarray(rows).mean(axis=0)
        return RegionFlow(rise=float(mean[0]), drift=abs(float(mean[1])), speed=float(mean[2]),
                          contrast=float(mean[3]), rising_share=float(mean[4]), moving_share=float(mean[5]))

    def _step(self, seq: int, region: Region) -> tuple[float, ...] | None:
        key = (seq, region)
        if key not in self._steps:
            self._steps[key] = self._measure_step(seq, region)
        return self._steps[key]

    def _measure_step(self, seq: int, region: Region) -> tuple[float, ...] | None:
        camera, previous, current = self._camera.get(seq), self._grey.get(seq - 1), self._grey.get(seq)
        if camera is None or previous is None or current is None:
            return None
        x1, y1, x2, y2 = region
        height, width = current.shape
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        size = self.config.size
        cut = [cv2.resize(g[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA) for g in (previous, current)]
        flow = _farneback(*cut)
        dx, dy, frame_speed = camera
        vx = flow[..., 0] - dx * size / (x2 - x1)
        vy = flow[..., 1] - dy * size / (y2 - y1)
        speed = np.hypot(vx, vy)
        moving = speed > self.config.min_speed
        return (
            -float(vy.mean()) / size,
            float(vx.mean()) / size,
            float(speed.mean()),
            float(speed.mean()) * (x2 - x1) / size / (frame_speed + 0.05),  # in full-frame pixels, as frame_speed
            float(((vy < 0) & moving).sum()) / max(1, int(moving.sum())),
            float(moving.mean()),
        )

    def evict_before(self, seq: int) -> None:
        """Forget frames and flows no window can still ask for (a window's oldest frame is compared
        with the one before it, so that one is kept too)."""
        for old in [s for s in self._grey if s < seq - 1]:
            del self._grey[old]
        for old in [s for s in self._camera if s < seq]:
            del self._camera[old]
        for key in [k for k in self._steps if k[0] < seq]:
            del self._steps[key]
