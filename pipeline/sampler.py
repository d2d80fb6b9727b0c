"""Which frames enter the pipeline.

Videos are sampled by timestamp (a clip at 30 fps needs a few frames per second; variable frame
rate clips stay correct because we never assume a constant rate). Folders of frames, such as a
lookout camera's one-per-minute images, are already sparse, so they are taken by count.
"""

from __future__ import annotations

from .config import SamplingConfig


class Sampler:
    """Stateful keep/drop decision; create one per source."""

    def __init__(self, config: SamplingConfig, by_time: bool) -> None:
        self.by_time = by_time and config.fps is not None
        self.period = 1.0 / config.fps if config.fps else 0.0
        self.stride = 1 if by_time else config.folder_stride
        self.max_frames = config.max_frames
        self.kept = 0
        self._next_time = 0.0

    @property
    def exhausted(self) -> bool:
        return self.max_frames is not None and self.kept >= self.max_frames

    def keep(self, index: int, time_s: float) -> bool:
        if self.exhausted:
            return False
        if self.by_time:
            # A small tolerance keeps frames whose timestamps jitter just below the grid.
            if time_s + 1e-3 * self.period < self._next_time:
                return False
            steps = int((time_s - self._next_time) / self.period) + 1 if self.period else 1
            self._next_time += steps * self.period
        elif index % self.stride:
            return False
        self.kept += 1
        return True
