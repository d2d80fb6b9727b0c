"""Motion proposals: candidate regions where a fixed camera's picture changes.

A young plume is small, faint and easy for a detector to miss, but it is also new: it was not
there a few frames ago and it keeps growing. On a fixed camera, comparing each frame with a slowly
updated background finds such changes cheaply (a few milliseconds at 320 px). They join the
detector's boxes as extra candidates at a low confidence; most are clouds, shadows or birds, and
rejecting those is exactly the verifier's job. Off by default: a moving camera changes everywhere
(frames where most of the picture changed propose nothing, so a carried or panning camera is not
a stream of false candidates).
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import MotionConfig
from .records import Box, Detection


class MotionProposer:
    """Per-source state: the background model. Feed frames in order."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self._settling = 0  # kept frames left before proposing again after the camera moved

    def propose(self, image: np.ndarray) -> list[Detection]:
        cfg = self.config
        h, w = image.shape[:2]
        scale = min(1.0, cfg.width / max(w, 1))
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        gray = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32)
        gray = cv2.GaussianBlur(gray, (0, 0), cfg.blur)
        if self._background is None or self._size != size:
            self._background, self._size = gray, size
            return []
        diff = np.abs(gray - self._background)
        if (diff >= cfg.min_diff).mean() > cfg.max_moving:
            # The camera itself moved: everything differs from the background, and the few spots
            # that stand out from that are texture, not news. Start over from this view, and wait
            # for it to hold still (a walking camera differs less from one frame ago than from
            # a settled background, so one still-looking frame is not enough).
            self._background, self._settling = gray, cfg.settle_frames
            return []
        cv2.accumulateWeighted(gray, self._background, cfg.alpha)
        if self._settling:
            self._settling -= 1
            return []
        level = max(cfg.min_diff, _usual_change(diff, cfg.spread, cfg.sigmas))
        mask = diff >= level
        if cfg.edge_shift > 0:
            mask &= diff > cfg.edge_shift * _gradient(self._background)
        mask = mask.astype(np.uint8)
        if mask.mean() > cfg.max_cover:  # the whole picture changed: light, exposure, a moving camera
            return []
        # join nearby changed pixels into regions, but judge a region by its changed pixels alone
        joined = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
        changed = np.bincount(labels[mask > 0], minlength=count)
        found = []
        for index, (x, y, bw, bh, _) in enumerate(stats[1:count], start=1):
            area = int(changed[index])
            if area < cfg.min_area:
                continue
            strength = float(diff[y : y + bh, x : x + bw].max())
            found.append((strength * area, strength, x, y, bw, bh))
        found.sort(reverse=True)
        out = []
        for _, strength, x, y, bw, bh in found[: cfg.max_boxes]:
            conf = cfg.conf * min(1.0, strength / 64.0)
            out.append(Detection(Box(x / scale, y / scale, (x + bw) / scale, (y + bh) / scale), max(conf, 1e-3)))
        return out


def _gradient(image: np.ndarray) -> np.ndarray:
    """Grey levels per pixel of slope: what a shift of one pixel changes at each point."""
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return cv2.magnitude(gx, gy)


MAD_TO_STD = 1.4826  # a normal distribution's standard deviation in median absolute deviations


def _usual_change(diff: np.ndarray, spread: str, sigmas: float) -> float:
    """The change a pixel must exceed to stand out from the rest of the picture."""
    if spread == "mad":
        median = float(np.median(diff))
        return median + sigmas * MAD_TO_STD * float(np.median(np.abs(diff - median)))
    return float(diff.mean() + sigmas * diff.std())


def merge(detections: list[Detection], proposals: list[Detection], iou: float = 0.3) -> list[Detection]:
    """Detector boxes plus the motion proposals that do not duplicate one of them."""
    kept = [p for p in proposals if all(p.box.iou(d.box) < iou for d in detections)]
    return list(detections) + kept
