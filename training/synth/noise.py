"""Cheap fractal noise: sums of upsampled random grids.

Perlin-quality gradients are not needed: the camera blurs, compresses and adds its own noise.
What matters is speed (a 640x360 field in about a millisecond per octave with OpenCV's resize)
and that fields can be scrolled and sampled at arbitrary offsets to animate smoke and clouds.
"""

from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(
    height: int,
    width: int,
    rng: np.random.Generator,
    base_cells: float = 4.0,
    octaves: int = 5,
    persistence: float = 0.5,
    aspect: float = 1.0,
) -> np.ndarray:
    """A (height, width) float32 field in [0, 1].

    `base_cells` is how many features the coarsest octave has across the longer side; `aspect`
    > 1 stretches features horizontally (cirrus, fog streaks).
    """
    field = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    longer = max(height, width)
    for octave in range(octaves):
        cells = base_cells * (2**octave)
        gw = max(2, int(round(cells * width / longer / aspect)) + 2)
        gh = max(2, int(round(cells * height / longer)) + 2)
        grid = rng.random((gh, gw), dtype=np.float32)
        field += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= persistence
    field /= total
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def noise_1d(length: int, rng: np.random.Generator, base_cells: float = 3.0, octaves: int = 5, persistence: float = 0.5) -> np.ndarray:
    """A 1-D fractal profile in [-1, 1], for ridge lines and fog tops."""
    return fractal_noise(1, length, rng, base_cells, octaves, persistence)[0] * 2.0 - 1.0


def sample_wrapped(field: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of a field at float coordinates, wrapping around its edges (for scrolling)."""
    h, w = field.shape
    map_x = np.mod(xs, w - 1).astype(np.float32)
    map_y = np.mod(ys, h - 1).astype(np.float32)
    return cv2.remap(field, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
