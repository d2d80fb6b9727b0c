"""Static scenery as a fixed lookout camera sees it: sky, sun, ridges at several depths.

Ridges are painted back to front; each farther ridge is paler and bluer (aerial perspective) and
flatter in texture. The landscape is split at the ridge a plume rises from, so the plume can be
painted *between* far and near ridges: young plumes often appear from behind a ridge line.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .noise import fractal_noise, noise_1d

DAY_ZENITH = [(70, 120, 200), (90, 140, 215), (110, 160, 220), (140, 170, 200)]
DAY_HORIZON = [(180, 205, 230), (200, 215, 230), (190, 200, 210), (210, 220, 225)]
DUSK_ZENITH = [(60, 70, 120), (80, 80, 130), (50, 60, 100)]
DUSK_HORIZON = [(230, 150, 100), (220, 170, 130), (240, 190, 150), (200, 140, 120)]
NEAR_COLOURS = [(55, 75, 40), (70, 85, 45), (95, 90, 60), (120, 105, 70), (60, 65, 50), (85, 80, 65)]


@dataclass
class Landscape:
    """Sky and ridge layers of one clip; rgb arrays are float32 in 0..255, premultiplied by alpha."""

    height: int
    width: int
    sky: np.ndarray  # H x W x 3
    layer_rgb: list[np.ndarray]  # per layer, H x W x 3, premultiplied
    layer_alpha: list[np.ndarray]  # per layer, H x W
    profiles: list[np.ndarray]  # per layer, ridge line y for every x
    haze_colour: np.ndarray  # (3,)
    dusk: bool

    def stack(self, layers: range) -> tuple[np.ndarray, np.ndarray]:
        """Premultiplied rgb and alpha of some consecutive layers painted back to front."""
        rgb = np.zeros((self.height, self.width, 3), np.float32)
        alpha = np.zeros((self.height, self.width), np.float32)
        for i in layers:
            a = self.layer_alpha[i]
            rgb = rgb * (1 - a[..., None]) + self.layer_rgb[i]
            alpha = alpha * (1 - a) + a
        return rgb, alpha

    def ground_y(self, x: int, layer: int) -> float:
        return float(self.profiles[layer][int(np.clip(x, 0, self.width - 1))])


def _lerp(a, b, t):
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def build_sky(height: int, width: int, rng: np.random.Generator, dusk: bool, horizon_y: float,
              glare: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """`glare` whitens the horizon: seen from a summit, the sky just above a distant horizon is
    washed out to near white, and that is where lookout cameras see new plumes."""
    zenith = np.array(DUSK_ZENITH[rng.integers(len(DUSK_ZENITH))] if dusk else DAY_ZENITH[rng.integers(len(DAY_ZENITH))], np.float32)
    horizon = np.array(DUSK_HORIZON[rng.integers(len(DUSK_HORIZON))] if dusk else DAY_HORIZON[rng.integers(len(DAY_HORIZON))], np.float32)
    zenith += rng.normal(0, 8, 3)
    horizon += rng.normal(0, 6, 3)
    if glare:
        horizon = _lerp(horizon, (246, 246, 244), glare)
    ys = np.arange(height, dtype=np.float32)[:, None]
    t = np.clip(ys / max(horizon_y, 1.0), 0, 1) ** rng.uniform(0.6, 1.6)
    sky = zenith[None, None, :] * (1 - t[..., None]) + horizon[None, None, :] * t[..., None]
    sky = np.broadcast_to(sky, (height, width, 3)).copy()
    # the sun, or its glow from just outside the frame
    sx, sy = rng.uniform(-0.2, 1.2) * width, rng.uniform(-0.3, 0.6) * horizon_y
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dist = np.hypot(xx - sx, yy - sy) / max(height, width)
    glow = np.exp(-dist / rng.uniform(0.05, 0.25)) * rng.uniform(0.2, 0.7)
    sun_colour = np.array((255, 200, 150) if dusk else (255, 250, 235), np.float32)
    sky = sky * (1 - glow[..., None]) + sun_colour * glow[..., None]
    sky += (fractal_noise(height, width, rng, base_cells=3, octaves=3)[..., None] - 0.5) * 6
    return sky, horizon


def build_landscape(height: int, width: int, rng: np.random.Generator, lookout: bool = False) -> Landscape:
    """`lookout`: the view from a summit camera (HPWREN, ALERTWildfire): more, flatter distant
    layers under a washed-out horizon, and a near slope of rock and scrub that fills the bottom of
    the frame. Without it, the draws are those of every earlier version (same seed, same clips)."""
    dusk = rng.random() < (0.1 if lookout else 0.25)
    n_layers = int(rng.integers(3, 6) if lookout else rng.integers(2, 5))
    horizon_y = height * (rng.uniform(0.32, 0.5) if lookout else rng.uniform(0.25, 0.6))
    sky, horizon_colour = build_sky(height, width, rng, dusk, horizon_y, glare=float(rng.uniform(0.3, 0.75)) if lookout else 0.0)
    haze = horizon_colour * rng.uniform(0.9, 1.05)
    near_base = height * (rng.uniform(0.75, 0.95) if lookout else rng.uniform(0.62, 0.9))
    bases = np.linspace(horizon_y, near_base, n_layers)
    rugged = rng.uniform(0.3, 1.0)

    layer_rgb, layer_alpha, profiles = [], [], []
    xs = np.arange(width)
    ys = np.arange(height, dtype=np.float32)[:, None]
    for i, base in enumerate(bases):
        depth = 1.0 - i / max(n_layers - 1, 1)  # 1 = farthest
        amplitude = height * rng.uniform(0.03, 0.16) * rugged * (1.0 - 0.4 * depth)
        if lookout:  # from above, distant ranges lie flat and the summit's own slope rises steeply
            amplitude *= 1.8 if i == n_layers - 1 else 0.45
        profile = base - amplitude * (0.6 + 0.6 * noise_1d(width, rng, base_cells=rng.uniform(1.5, 5), octaves=6))
        profile = np.clip(profile, height * 0.1, height - 2)
        # anti-aliased coverage: 1 below the ridge line
        alpha = np.clip(ys - profile[None, :] + 0.5, 0, 1).astype(np.float32)

        colour = np.array(NEAR_COLOURS[rng.integers(len(NEAR_COLOURS))], np.float32) + rng.normal(0, 8, 3)
        if dusk:
            colour *= 0.6
        colour = _lerp(colour, haze, 0.25 + 0.65 * depth**1.2)
        fine = fractal_noise(height, width, rng, base_cells=rng.uniform(60, 160), octaves=2)
        coarse = fractal_noise(height, width, rng, base_cells=rng.uniform(3, 8), octaves=3)
        texture_strength = 0.55 * (1 - depth) + 0.08
        shade = 1 + texture_strength * ((fine - 0.5) * 0.9 + (coarse - 0.5) * 0.8)
        # tree speckles on near slopes
        if depth < 0.6:
            speckle = fractal_noise(height, width, rng, base_cells=width / rng.uniform(2.5, 5), octaves=1)
            clumps = fractal_noise(height, width, rng, base_cells=rng.uniform(10, 30), octaves=2)
            trees = speckle + 0.35 * clumps > rng.uniform(0.85, 1.0)
            rocks = speckle - 0.3 * clumps < rng.uniform(0.0, 0.15)
            shade = shade * np.where(trees, rng.uniform(0.5, 0.75), 1.0) * np.where(rocks, rng.uniform(1.15, 1.4), 1.0)
        # slopes get darker further below the ridge line (distance from crest), lighter at the crest
        below = np.clip((ys - profile[None, :]) / (height * 0.25), 0, 1)
        shade = shade * (1.05 - 0.2 * below * (1 - depth))
        rgb = colour[None, None, :] * shade[..., None]
        layer_rgb.append((rgb * alpha[..., None]).astype(np.float32))
        layer_alpha.append(alpha)
        profiles.append(profile.astype(np.float32))
    del xs
    return Landscape(height, width, sky.astype(np.float32), layer_rgb, layer_alpha, profiles, haze.astype(np.float32), dusk)


def soft_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0.2 else image
