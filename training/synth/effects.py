"""Things that fool single-frame smoke detectors: clouds, fog, haze, mist, dust, light, birds, vehicles,
and pale landmarks (bare trunks, rock and snow, masts) that stand still.

Each effect paints itself onto the canvas at one stage of the frame: `sky` (behind every ridge),
`mid` (in front of the far ridges, behind the plume and the near ridges), `front` (in front of
everything) or `global` (whole-frame changes). They move the way the real things move: clouds
drift as a whole, fog rises and rolls, dust follows its vehicle, light changes everywhere at
once; none grows from a fixed point, which is what the verifier must learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .landscape import Landscape
from .noise import fractal_noise, noise_1d


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _blend(canvas: np.ndarray, alpha: np.ndarray, colour, x: int = 0, y: int = 0) -> None:
    """Alpha-blend a colour (or an rgb patch) into canvas[y:, x:] in place, clipped to the canvas."""
    h, w = alpha.shape
    H, W = canvas.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x2 <= x1 or y2 <= y1:
        return
    a = alpha[y1 - y : y2 - y, x1 - x : x2 - x][..., None]
    col = colour[y1 - y : y2 - y, x1 - x : x2 - x] if isinstance(colour, np.ndarray) and colour.ndim == 3 else np.asarray(colour, np.float32)
    region = canvas[y1:y2, x1:x2]
    region -= a * (region - col)


@dataclass
class Effect:
    stage: str
    name: str

    def apply(self, canvas: np.ndarray, frame: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class CloudSprites(Effect):
    """Cumulus clouds drifting as wholes; low ones pass in front of ridges."""

    sprites: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (alpha, rgb)
    starts: list[tuple[float, float]] = field(default_factory=list)
    speed: float = 0.5

    @classmethod
    def sample(cls, rng, scene: Landscape, low: bool) -> "CloudSprites":
        H, W = scene.height, scene.width
        horizon = float(np.mean(scene.profiles[0]))
        sprites, starts = [], []
        for _ in range(int(rng.integers(1, 4 if not low else 3))):
            w = int(W * rng.uniform(0.1, 0.45))
            h = int(max(8, w * rng.uniform(0.25, 0.6)))
            n = fractal_noise(h, w, rng, base_cells=rng.uniform(3, 6), octaves=5)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            ell = 1 - (((xx - w / 2) / (w / 2)) ** 2 + ((yy - h * 0.6) / (h * 0.6)) ** 2)
            alpha = _smoothstep((n * 0.8 + ell * 0.9 - 0.55) * 3.0) * _smoothstep(ell * 4.0) * rng.uniform(0.5, 0.95)
            base = rng.uniform(200, 250) if not scene.dusk else rng.uniform(170, 230)
            shade = base * (1.05 - 0.3 * (yy / h)) * (0.9 + 0.2 * n)
            tint = np.array((1.0, 0.85, 0.75) if scene.dusk else (1.0, 1.0, 1.02), np.float32)
            rgb = np.clip(shade[..., None] * tint, 0, 255).astype(np.float32)
            sprites.append((alpha.astype(np.float32), rgb))
            y = rng.uniform(horizon - h * 0.8, horizon + h * 0.3) if low else rng.uniform(-h * 0.3, max(horizon - h, 1))
            starts.append((rng.uniform(-w, W), y))
        return cls("front" if low else "sky", "low cloud" if low else "cumulus", sprites, starts, float(rng.uniform(0.2, 2.0) * rng.choice([-1, 1])))

    def apply(self, canvas, frame):
        for (alpha, rgb), (x0, y0) in zip(self.sprites, self.starts):
            _blend(canvas, alpha, rgb, int(round(x0 + self.speed * frame)), int(round(y0)))


@dataclass
class Cirrus(Effect):
    """High streaky cloud, scrolling slowly."""

    texture: np.ndarray = None
    opacity: float = 0.3
    speed: float = 0.3
    limit: float = 0.5

    @classmethod
    def sample(cls, rng, scene: Landscape) -> "Cirrus":
        H, W = scene.height, scene.width
        texture = fractal_noise(H, W * 2, rng, base_cells=rng.uniform(2, 5), octaves=5, aspect=rng.uniform(4, 10))
        return cls("sky", "cirrus", texture, float(rng.uniform(0.2, 0.55)), float(rng.uniform(0.2, 1.5)), float(np.mean(scene.profiles[0]) / H))

    def apply(self, canvas, frame):
        H, W = canvas.shape[:2]
        off = int(self.speed * frame) % W
        n = self.texture[:, off : off + W]
        fade = np.clip(1.2 - np.arange(H, dtype=np.float32)[:, None] / (self.limit * H), 0, 1)
        alpha = _smoothstep((n - 0.45) * 3) * self.opacity * fade
        _blend(canvas, alpha.astype(np.float32), (240, 242, 245))


@dataclass
class FogBank(Effect):
    """A fog layer whose ragged top rises, sinks and rolls over the ridges."""

    profile: np.ndarray = None
    texture: np.ndarray = None
    base_y: float = 0.0
    rise: float = 0.0
    roll: float = 0.5
    amplitude: float = 10.0
    thickness: float = 20.0
    opacity: float = 0.7
    colour: tuple = (220, 222, 225)

    @classmethod
    def sample(cls, rng, scene: Landscape, frames: int) -> "FogBank":
        H, W = scene.height, scene.width
        near = float(np.mean(scene.profiles[-1]))
        far = float(np.mean(scene.profiles[0]))
        base = rng.uniform(far, near)
        colour = tuple(np.clip(np.array((225, 226, 228)) * rng.uniform(0.85, 1.05), 0, 255))
        return cls(
            "mid" if rng.random() < 0.5 else "front",
            "fog bank",
            noise_1d(W * 3, rng, base_cells=rng.uniform(4, 12)),
            fractal_noise(H, W * 2, rng, base_cells=rng.uniform(3, 8), octaves=4, aspect=2.5),
            base,
            float(rng.uniform(-0.25, 0.25) * H / max(frames, 1)),
            float(rng.uniform(0.3, 2.5) * rng.choice([-1, 1])),
            float(H * rng.uniform(0.01, 0.06)),
            float(H * rng.uniform(0.03, 0.15)),
            float(rng.uniform(0.45, 0.9)),
            colour,
        )

    def apply(self, canvas, frame):
        H, W = canvas.shape[:2]
        off = int(abs(self.roll) * frame) % W
        top = self.base_y - self.rise * frame + self.amplitude * self.profile[off : off + W]
        ys = np.arange(H, dtype=np.float32)[:, None]
        body = _smoothstep((ys - top[None, :]) / self.thickness)
        tex = self.texture[:, off : off + W]
        alpha = (body * (0.7 + 0.3 * tex) * self.opacity).astype(np.float32)
        _blend(canvas, alpha, self.colour)


@dataclass
class ValleyMist(Effect):
    """Bright mist pooled above a nearer ridge line, shifting slowly."""

    layer_profile: np.ndarray = None
    texture: np.ndarray = None
    thickness: float = 10.0
    opacity: float = 0.6
    speed: float = 0.3

    @classmethod
    def sample(cls, rng, scene: Landscape) -> "ValleyMist":
        H, W = scene.height, scene.width
        layer = int(rng.integers(1, len(scene.profiles))) if len(scene.profiles) > 1 else 0
        return cls("mid", "valley mist", scene.profiles[layer], fractal_noise(H, W * 2, rng, base_cells=6, octaves=4, aspect=3),
                   float(H * rng.uniform(0.02, 0.08)), float(rng.uniform(0.4, 0.85)), float(rng.uniform(0.1, 1.0)))

    def apply(self, canvas, frame):
        H, W = canvas.shape[:2]
        off = int(self.speed * frame) % W
        ys = np.arange(H, dtype=np.float32)[:, None]
        above = self.layer_profile[None, :] - ys
        band = np.where(above >= 0, np.exp(-above / self.thickness), 0.0)
        alpha = band * (0.6 + 0.4 * self.texture[:, off : off + W]) * self.opacity
        _blend(canvas, alpha.astype(np.float32), (232, 234, 236))


@dataclass
class Haze(Effect):
    """Uniform haze thickening or clearing over the clip, stronger toward the horizon."""

    start: float = 0.0
    end: float = 0.3
    frames: int = 1
    colour: np.ndarray = None
    horizon: float = 0.5

    @classmethod
    def sample(cls, rng, scene: Landscape, frames: int) -> "Haze":
        a, b = sorted(rng.uniform(0.0, 0.55, 2))
        if rng.random() < 0.5:
            a, b = b, a
        return cls("global", "haze", float(a), float(b), frames, scene.haze_colour * rng.uniform(0.95, 1.1), float(np.mean(scene.profiles[0])))

    def apply(self, canvas, frame):
        H = canvas.shape[0]
        level = self.start + (self.end - self.start) * frame / max(self.frames - 1, 1)
        ys = np.arange(H, dtype=np.float32)
        weight = np.exp(-np.abs(ys - self.horizon) / (0.5 * H))[:, None] * level
        canvas *= 1 - weight[..., None]
        canvas += weight[..., None] * self.colour


@dataclass
class LightChange(Effect):
    """Sunlight brightening or dimming, and cloud shadows sweeping over the ground."""

    gain_start: float = 1.0
    gain_end: float = 1.0
    frames: int = 1
    shadow: np.ndarray = None
    shadow_speed: float = 1.0
    shadow_strength: float = 0.0
    ground: np.ndarray = None

    @classmethod
    def sample(cls, rng, scene: Landscape, frames: int) -> "LightChange":
        H, W = scene.height, scene.width
        ground = np.clip(sum(scene.layer_alpha), 0, 1).astype(np.float32)
        shadow = fractal_noise(H, W * 2, rng, base_cells=rng.uniform(2, 4), octaves=3)
        return cls("global", "light change", float(rng.uniform(0.7, 1.2)), float(rng.uniform(0.7, 1.2)), frames,
                   _smoothstep((shadow - 0.5) * 4).astype(np.float32), float(rng.uniform(1, 4) * rng.choice([-1, 1])),
                   float(rng.uniform(0.0, 0.45)), ground)

    def apply(self, canvas, frame):
        W = canvas.shape[1]
        gain = self.gain_start + (self.gain_end - self.gain_start) * frame / max(self.frames - 1, 1)
        off = int(abs(self.shadow_speed) * frame) % W
        shade = 1 - self.shadow_strength * self.shadow[:, off : off + W] * self.ground
        canvas *= (gain * shade)[..., None]


@dataclass
class DustTrail(Effect):
    """A vehicle on a dirt road trailing dust: brownish like smoke, but its source moves."""

    y: float = 0.0
    x0: float = 0.0
    speed: float = 2.0
    size: float = 6.0
    opacity: float = 0.6
    colour: tuple = (170, 150, 120)
    memory: int = 18
    jitter: np.ndarray = None

    @classmethod
    def sample(cls, rng, scene: Landscape, frames: int) -> "DustTrail":
        H, W = scene.height, scene.width
        layer = len(scene.profiles) - 1
        x0 = rng.uniform(0.1, 0.9) * W
        y = float(scene.ground_y(int(x0), layer) + rng.uniform(0.02, 0.12) * H)
        y = min(y, H - 4)
        speed = float(rng.uniform(1.0, 4.0) * rng.choice([-1, 1]) * W / 640)
        return cls("front", "dust", y, float(x0), speed, float(rng.uniform(3, 10) * H / 360), float(rng.uniform(0.35, 0.75)),
                   tuple(np.array((175, 152, 120)) + rng.normal(0, 10, 3)), int(rng.integers(10, 30)), rng.normal(0, 1, (frames + 64, 2)))

    def apply(self, canvas, frame):
        H, W = canvas.shape[:2]
        for k in range(self.memory, -1, -1):
            t = frame - k
            if t < 0:
                continue
            x = self.x0 + self.speed * t
            r = self.size * (0.6 + 0.12 * k)
            a = self.opacity * np.exp(-k / (self.memory * 0.45))
            cx, cy = x + self.jitter[t, 0] * r * 0.2, self.y - 0.4 * r - 0.05 * k * self.size + self.jitter[t, 1]
            x1, y1 = int(cx - 2 * r), int(cy - 2 * r)
            size = int(4 * r) + 1
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            blob = np.exp(-(((xx - 2 * r) / (1.4 * r)) ** 2 + ((yy - 2 * r) / r) ** 2)) * a
            _blend(canvas, blob.astype(np.float32), self.colour, x1, y1)
        x = int(self.x0 + self.speed * frame)
        cv2.rectangle(canvas, (x - 2, int(self.y) - 2), (x + 2, int(self.y) + 1), (40, 40, 45), -1)


@dataclass
class Birds(Effect):
    """A few dark specks flapping across the sky."""

    paths: np.ndarray = None  # (n, 4): x0, y0, vx, vy

    @classmethod
    def sample(cls, rng, scene: Landscape) -> "Birds":
        H, W = scene.height, scene.width
        n = int(rng.integers(1, 6))
        paths = np.stack([rng.uniform(0, W, n), rng.uniform(0.05, 0.6, n) * H, rng.uniform(-4, 4, n), rng.uniform(-0.6, 0.6, n)], 1)
        return cls("front", "birds", paths)

    def apply(self, canvas, frame):
        for i, (x0, y0, vx, vy) in enumerate(self.paths):
            x, y = x0 + vx * frame, y0 + vy * frame + 2 * np.sin(frame * 0.9 + i)
            span = 2 + (frame + i) % 3
            cv2.line(canvas, (int(x - span), int(y - 1)), (int(x), int(y)), (30, 30, 35), 1)
            cv2.line(canvas, (int(x), int(y)), (int(x + span), int(y - 1)), (30, 30, 35), 1)


@dataclass
class Vehicles(Effect):
    """Small cars moving along a road, glinting in the sun."""

    y: float = 0.0
    cars: np.ndarray = None  # (n, 3): x0, speed, brightness

    @classmethod
    def sample(cls, rng, scene: Landscape) -> "Vehicles":
        H, W = scene.height, scene.width
        n = int(rng.integers(1, 4))
        return cls("front", "vehicles", float(rng.uniform(0.8, 0.97) * H),
                   np.stack([rng.uniform(0, W, n), rng.uniform(-5, 5, n), rng.uniform(40, 250, n)], 1))

    def apply(self, canvas, frame):
        y = int(self.y)
        cv2.line(canvas, (0, y + 3), (canvas.shape[1], y + 3), (95, 90, 85), 2)
        for x0, speed, brightness in self.cars:
            x = int(x0 + speed * frame) % canvas.shape[1]
            cv2.rectangle(canvas, (x - 3, y - 1), (x + 3, y + 2), (float(brightness),) * 3, -1)


@dataclass
class PaleLandmarks(Effect):
    """Pale things that stand still in the near field: bare or birch trunks, rock faces and snow
    patches, masts. Seen through a 50-pixel crop a white trunk is a soft pale column, which is what
    a plume looks like too; what gives it away is that it never changes, only shakes with the camera.
    Drawn once, blended every frame."""

    alpha: np.ndarray = None  # H x W
    rgb: np.ndarray = None  # H x W x 3
    kinds: list[str] = field(default_factory=list)

    @classmethod
    def sample(cls, rng, scene: Landscape) -> "PaleLandmarks":
        H, W = scene.height, scene.width
        alpha = np.zeros((H, W), np.float32)
        rgb = np.zeros((H, W, 3), np.float32)
        kinds = []
        near = len(scene.profiles) - 1
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["trunk", "rock", "mast"], p=[0.55, 0.3, 0.15]))
            shade = float(rng.uniform(175, 240))
            tint = np.array([shade + rng.uniform(-5, 12), shade + rng.uniform(-8, 4), shade + rng.uniform(-14, 6)], np.float32)
            x = float(rng.uniform(0.05, 0.95) * W)
            if kind == "trunk":  # from below the frame or the near ground, often up out of the frame
                width = float(rng.uniform(0.012, 0.05) * W)
                top = float(rng.uniform(-0.3, 0.45) * H)
                bottom = float(H + 5 if rng.random() < 0.6 else min(H - 1.0, scene.ground_y(int(x), near) + rng.uniform(0.05, 0.3) * H))
                a, c = _column(H, W, x, top, bottom, width, float(rng.uniform(-0.12, 0.12)), tint, rng, marks=True)
            elif kind == "mast":
                width = float(rng.uniform(0.004, 0.01) * W)
                bottom = min(H - 1.0, scene.ground_y(int(x), near) + float(rng.uniform(0.0, 0.1) * H))
                top = bottom - float(rng.uniform(0.15, 0.45) * H)
                a, c = _column(H, W, x, top, bottom, width, 0.0, tint, rng, marks=False)
            else:  # a rock face or snow patch lying on the near ground
                a, c = _patch(H, W, x, min(H - 2.0, scene.ground_y(int(x), near) + float(rng.uniform(0.02, 0.2) * H)), tint, rng)
            alpha = a + alpha * (1 - a)
            rgb = a[..., None] * c + (1 - a[..., None]) * rgb  # premultiplied until all are drawn
            kinds.append(kind)
        rgb /= np.maximum(alpha, 1e-6)[..., None]  # the colour itself, as `apply` blends it by alpha
        return cls("front", "pale landmarks", alpha, rgb, kinds)

    def apply(self, canvas, frame):
        _blend(canvas, self.alpha, self.rgb)


def _column(H, W, x, top, bottom, width, lean, tint, rng, marks: bool) -> tuple[np.ndarray, np.ndarray]:
    """A round, pale, slightly leaning column: lit on one side, darker on the other, soft-edged."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    centre = x + lean * (yy - bottom)
    along = np.clip((bottom - yy) / max(bottom - top, 1.0), 0, 1)
    half = 0.5 * width * (1.0 - 0.35 * along)  # tapering upwards
    u = (xx - centre) / np.maximum(half, 0.5)  # -1..1 across the column
    edge = np.clip((1.0 - np.abs(u)) * np.maximum(half, 0.5) / 1.2, 0, 1)
    inside = ((yy >= top) & (yy <= bottom)).astype(np.float32)
    alpha = edge * inside
    light = 1.0 - 0.2 * np.clip(u, -1, 1) ** 2 - 0.15 * float(rng.choice([-1, 1])) * np.clip(u, -1, 1)
    grain = 0.85 + 0.15 * fractal_noise(H, W, rng, base_cells=float(rng.uniform(20, 60)), octaves=3)
    rgb = np.asarray(tint, np.float32) * (light * grain)[..., None]
    if marks:  # the dark horizontal lenticels of a birch
        bands = fractal_noise(H, 1, rng, base_cells=float(rng.uniform(30, 80)), octaves=2)
        dark = np.clip((bands - 0.7) / 0.3, 0, 1)
        rgb *= (1.0 - 0.6 * dark)[..., None]
    return alpha.astype(np.float32), np.clip(rgb, 0, 255).astype(np.float32)


def _patch(H, W, x, y, tint, rng) -> tuple[np.ndarray, np.ndarray]:
    """An irregular pale blob (rock face, snow) with a hard, rough outline and blotchy texture."""
    rx, ry = float(rng.uniform(0.02, 0.09) * W), float(rng.uniform(0.015, 0.06) * H)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    d = ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2
    rough = fractal_noise(H, W, rng, base_cells=float(rng.uniform(8, 20)), octaves=4)
    alpha = np.clip((1.0 + 0.6 * (rough - 0.5) - d) * 4.0, 0, 1)
    blotch = 0.75 + 0.25 * fractal_noise(H, W, rng, base_cells=float(rng.uniform(15, 40)), octaves=3)
    return alpha.astype(np.float32), (np.asarray(tint, np.float32) * blotch[..., None]).astype(np.float32)


EFFECT_SAMPLERS = {
    "cumulus": lambda rng, scene, frames: CloudSprites.sample(rng, scene, low=False),
    "low cloud": lambda rng, scene, frames: CloudSprites.sample(rng, scene, low=True),
    "cirrus": lambda rng, scene, frames: Cirrus.sample(rng, scene),
    "fog bank": lambda rng, scene, frames: FogBank.sample(rng, scene, frames),
    "valley mist": lambda rng, scene, frames: ValleyMist.sample(rng, scene),
    "haze": lambda rng, scene, frames: Haze.sample(rng, scene, frames),
    "light change": lambda rng, scene, frames: LightChange.sample(rng, scene, frames),
    "dust": lambda rng, scene, frames: DustTrail.sample(rng, scene, frames),
    "birds": lambda rng, scene, frames: Birds.sample(rng, scene),
    "vehicles": lambda rng, scene, frames: Vehicles.sample(rng, scene),
}
# How often each kind appears in a hard-negative clip (relative weights).
EFFECT_WEIGHTS = {
    "cumulus": 3.0, "low cloud": 2.5, "cirrus": 1.5, "fog bank": 3.0, "valley mist": 2.0,
    "haze": 2.0, "light change": 1.5, "dust": 2.0, "birds": 1.0, "vehicles": 0.7,
}
