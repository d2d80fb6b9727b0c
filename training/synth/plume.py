"""Smoke plumes: a column rising from a fixed ground source, growing, bending downwind and thinning.

The plume is a density field evaluated only inside its bounding region each frame:
a Gaussian cross-section around a centreline that leans with the wind and meanders, widening
with height, fading toward its top, with a turbulent texture advected upward and downwind so it
*moves* the way smoke does (rising from a fixed base), not the way clouds do (drifting whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .noise import fractal_noise, sample_wrapped

SMOKE_COLOURS = {
    "white": (236, 236, 234),
    "grey": (185, 185, 190),
    "brown": (150, 128, 100),
    "black": (62, 58, 55),
}


@dataclass
class Plume:
    """One plume's parameters; all lengths in pixels, speeds in pixels per frame."""

    source_x: float
    source_y: float
    layer: int  # ridge layer the source stands on: nearer ridges hide the plume's base
    start_frame: int
    growth_frames: float
    max_height: float
    base_width: float
    spread: float
    lean: float  # horizontal offset at max height, as a fraction of max height (signed: wind side)
    lean_power: float
    rise_speed: float
    drift_speed: float
    opacity: float  # optical thickness of the core (alpha = 1 - exp(-opacity * density))
    colour: tuple[float, float, float]
    colour_name: str
    meander: float
    meander_wavelength: float
    meander_speed: float
    decay: float  # height (as a fraction of max height) over which density falls by 1/e
    texture_scale: float
    noise: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, source_x: float, source_y: float, layer: int,
               frame_height: int, frames: int, start_frame: int) -> "Plume":
        # log-uniform size: distant wisps are as important as big columns
        max_height = float(np.exp(rng.uniform(np.log(0.05), np.log(0.6))) * frame_height)
        max_height = min(max_height, source_y * 0.95)
        max_height = max(max_height, 12.0)
        colour_name = rng.choice(["white", "white", "grey", "grey", "brown", "black"])
        colour = np.array(SMOKE_COLOURS[colour_name], np.float32) + rng.normal(0, 6, 3)
        dark = colour_name == "black"
        return cls(
            source_x=source_x,
            source_y=source_y,
            layer=layer,
            start_frame=start_frame,
            growth_frames=float(rng.uniform(0.15, 0.6) * max(frames - start_frame, 4)),
            max_height=max_height,
            base_width=float(max(1.2, max_height * rng.uniform(0.03, 0.1))),
            spread=float(rng.uniform(0.12, 0.45)),
            lean=float(rng.choice([-1, 1]) * rng.uniform(0.0, 1.2)),
            lean_power=float(rng.uniform(1.2, 2.2)),
            rise_speed=float(max_height * rng.uniform(0.01, 0.04)),
            drift_speed=float(rng.uniform(-0.5, 0.5)),
            opacity=float(rng.uniform(1.5, 4.0) if dark else rng.uniform(0.9, 3.5)),
            colour=tuple(float(c) for c in np.clip(colour, 0, 255)),
            colour_name=str(colour_name),
            meander=float(rng.uniform(0.0, 0.12)),
            meander_wavelength=float(rng.uniform(0.3, 0.8)),
            meander_speed=float(rng.uniform(0.01, 0.05)),
            decay=float(rng.uniform(0.5, 2.0)),
            texture_scale=float(max(0.6, max_height * rng.uniform(0.012, 0.025))),
            noise=fractal_noise(256, 256, rng, base_cells=8, octaves=4, persistence=0.6),
        )

    def height_at(self, frame: int) -> float:
        age = frame - self.start_frame
        if age < 0:
            return 0.0
        return self.max_height * (1.0 - np.exp(-(age + 1.0) / self.growth_frames))

    def _centre(self, h: np.ndarray, frame: int) -> np.ndarray:
        rel = np.clip(h / self.max_height, 0, None)
        wave = np.sin(2 * np.pi * (rel / self.meander_wavelength - frame * self.meander_speed))
        return self.source_x + self.lean * self.max_height * rel**self.lean_power + self.meander * self.max_height * rel * wave

    def region(self, frame: int, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (x1, y1, x2, y2) that can hold this frame's plume, or None before it starts."""
        top = self.height_at(frame)
        if top < 1.0:
            return None
        hs = np.linspace(0, top, 16)
        xs = self._centre(hs, frame)
        half = (self.base_width + self.spread * top) * 2.6 + 2
        x1 = int(max(0, np.floor(xs.min() - half)))
        x2 = int(min(width, np.ceil(xs.max() + half)))
        y1 = int(max(0, np.floor(self.source_y - 1.35 * top - half * 0.5 - 2)))
        y2 = int(min(height, np.ceil(self.source_y + self.base_width + 2)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            return None
        return x1, y1, x2, y2

    def render(self, frame: int, width: int, height: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
        """(region, alpha (h, w), premultiplied-free rgb (h, w, 3)) of the plume at `frame`."""
        box = self.region(frame, width, height)
        if box is None:
            return None
        x1, y1, x2, y2 = box
        top = self.height_at(frame)
        age = frame - self.start_frame
        ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float32)
        h = self.source_y - ys
        centre = self._centre(h, frame)
        s = self.texture_scale
        # texture rises with the smoke and drifts downwind; a second octave gives ragged edges
        rise = self.rise_speed * age
        # billows: a coarse field that rises with the smoke swells and pinches the column
        billow = sample_wrapped(self.noise, (ys + rise) / (2.5 * s) + 11, (xs - centre) / (4.0 * s) + 23)
        n1 = sample_wrapped(self.noise, (ys + rise) / s, (xs - self.drift_speed * age) / s)
        n2 = sample_wrapped(self.noise, (ys + 1.6 * rise) / (0.4 * s) + 37, xs / (0.4 * s) + 53)
        hp = np.clip(h, 0, None)
        width_h = (self.base_width + self.spread * hp) * (0.55 + 0.9 * billow) * (0.85 + 0.3 * n2)
        cross = np.exp(-0.5 * ((xs - centre) / width_h) ** 2)
        top_fade = 1.0 / (1.0 + np.exp(-(top - h) / (0.1 * top + 1.0)))
        base_fade = np.clip((h + 1.5) / 2.5, 0, 1)
        decay = np.exp(-hp / (self.decay * self.max_height))
        texture = np.clip((0.55 * n1 + 0.45 * n2) * 1.8 - 0.45, 0.0, 1.0)
        body = cross * top_fade * base_fade * decay * (0.4 + 0.6 * texture)
        # a soft threshold gives billows defined edges instead of a Gaussian glow
        edge = np.clip((body - 0.1) / 0.45, 0.0, 1.0)
        density = edge * edge * (3 - 2 * edge)
        # Beer-Lambert: thick cores saturate, thin edges stay translucent
        alpha = (1.0 - np.exp(-self.opacity * density)).astype(np.float32)
        shade = (0.8 + 0.25 * n2 + 0.15 * billow)[..., None]
        rgb = np.clip(np.asarray(self.colour, np.float32)[None, None, :] * shade, 0, 255)
        return box, alpha, rgb.astype(np.float32)
