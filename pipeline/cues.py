"""Change cues: how a candidate's region changed over its window, beside what each crop looks like.

The backbone sees one crop at a time, so whatever the heads learn about motion they must read
from the drift of 576 appearance values, and a crop of fog or dust that looks like smoke scores
like smoke in every frame. A fixed camera makes the change itself cheap to measure: the region's
grey levels against the window's first frame and against the previous frame, pooled on a coarse
grid. A plume grows out of one part of its region and spreads; a cloud crosses the whole region;
fog, haze and a change of light shift every cell at once. These 48 numbers per frame are appended
to the backbone features when ``extractor.change_cues`` is on.

Differences are divided by the contrast of the window's first thumbnail (plus a floor), so a faint
plume on a flat sky registers as strongly as a dark one on forest, and clipped so that a bird or a
flash cannot dominate the vector.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = 4  # cells per side of the pooling grid
THUMB = 16  # thumbnail side in pixels (a multiple of GRID)
CUE_DIM = 3 * GRID * GRID  # signed and absolute change since the first frame, absolute change since the previous
CONTRAST_FLOOR = 0.02  # grey levels (0-1) added to the first thumbnail's spread before dividing by it
CLIP = 4.0
VERSION = 1  # bump when the cues change: cached training windows that hold them are then recomputed

Region = tuple[int, int, int, int]


def thumbnail(image: np.ndarray, region: Region) -> np.ndarray:
    """The region of an RGB frame as a THUMB x THUMB grey image in [0, 1] (float32)."""
    x1, y1, x2, y2 = region
    patch = image[y1:y2, x1:x2]
    if patch.size == 0:
        return np.zeros((THUMB, THUMB), np.float32)
    grey = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _pool(x: np.ndarray) -> np.ndarray:
    cell = THUMB // GRID
    return x.reshape(len(x), GRID, cell, GRID, cell).mean(axis=(2, 4)).reshape(len(x), GRID * GRID)


def window_cues(thumbs: np.ndarray) -> np.ndarray:
    """(T, THUMB, THUMB) thumbnails of one region, oldest first -> (T, CUE_DIM) float32 cues."""
    thumbs = np.asarray(thumbs, np.float32)
    first = thumbs[0]
    scale = float(first.std()) + CONTRAST_FLOOR
    since_first = (thumbs - first) / scale
    previous = np.concatenate([thumbs[:1], thumbs[:-1]])
    step = np.abs(thumbs - previous) / scale
    cues = np.concatenate([_pool(since_first), _pool(np.abs(since_first)), _pool(step)], axis=1)
    return np.clip(cues, -CLIP, CLIP).astype(np.float32)


def cue_dim(enabled: bool) -> int:
    """Values the cues add to each frame's vector."""
    return CUE_DIM if enabled else 0
