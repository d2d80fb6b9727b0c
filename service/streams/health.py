"""Is the camera seeing anything? Night (too dark) and frozen (the same image again and again).

Pure logic on the frames a stream samples, judged on a strided subsample of the grey image.
*Frozen* means no sampled pixel changed by more than ``frozen_diff`` grey levels between
consecutive sampled frames, ``frames`` times in a row: a stuck encoder or a snapshot URL serving
a cached file repeats its image exactly. A very still scene can look the same (H.264 skips blocks
that did not change, so a calm, low-noise picture decodes to identical frames), which is why the
condition needs a run of frames spanning a minute or more by default, and why it is only
reported: frames of a "frozen" camera still go through the detector, so a misjudged still scene
never hides a plume. *Dark* means the mean grey level stayed below ``dark_level``.
A condition is cleared by the first frame that does not show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Condition = Literal["ok", "dark", "frozen"]


@dataclass(frozen=True)
class HealthConfig:
    dark_level: float = 20.0  # mean grey level (0-255) below which a frame is dark
    frozen_diff: float = 1.0  # largest grey change at any sampled pixel for two frames to count as the same
    frames: int = 12  # consecutive frames before a condition is reported (a minute at one frame every 5 s)
    stride: int = 4  # pixels between samples in each direction


def grey_sample(image: np.ndarray, stride: int) -> np.ndarray:
    """Every `stride`-th pixel of an RGB (or grey) image, as float32 grey levels."""
    sub = image[::stride, ::stride]
    if sub.ndim == 3:
        sub = sub[..., 0] * 0.299 + sub[..., 1] * 0.587 + sub[..., 2] * 0.114
    return sub.astype(np.float32)


@dataclass
class FrameHealth:
    config: HealthConfig = field(default_factory=HealthConfig)
    condition: Condition = "ok"
    _previous: np.ndarray | None = field(default=None, init=False, repr=False)
    _dark_run: int = field(default=0, init=False)
    _frozen_run: int = field(default=0, init=False)
    last_level: float = field(default=0.0, init=False)
    last_change: float | None = field(default=None, init=False)

    def update(self, image: np.ndarray) -> Condition:
        """Judge one frame; returns the stream's condition after it."""
        c = self.config
        grey = grey_sample(image, c.stride)
        self.last_level = float(grey.mean())
        self._dark_run = self._dark_run + 1 if self.last_level < c.dark_level else 0
        previous, self._previous = self._previous, grey
        if previous is not None and previous.shape == grey.shape:
            self.last_change = float(np.abs(grey - previous).max())
            self._frozen_run = self._frozen_run + 1 if self.last_change <= c.frozen_diff else 0
        else:
            self.last_change = None
            self._frozen_run = 0
        # The first frame of a run has no predecessor: a frozen stream of `frames` frames shows frames-1 repeats.
        if self._frozen_run >= max(1, c.frames - 1):
            self.condition = "frozen"
        elif self._dark_run >= c.frames:
            self.condition = "dark"
        else:
            self.condition = "ok"
        return self.condition

    @property
    def frozen(self) -> bool:
        return self.condition == "frozen"
