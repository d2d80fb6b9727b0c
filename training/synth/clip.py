"""One synthetic clip: its plan (everything drawn from the seed) and its rendering, frame by frame.

A plan is fully determined by (seed, index), so any clip of a dataset can be re-rendered alone,
with or without its smoke, which is how tests check that labels match what is drawn. Boxes are
measured on the finished frame, as the difference smoke makes to it once nearer ridges, fog in
front, haze, light, shake, lens and blur have had their say, so a label never claims smoke that
cannot be seen (a plume lost in fog is no smoke, and a clip that shows none is a negative).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from .effects import EFFECT_SAMPLERS, EFFECT_WEIGHTS, Effect, PaleLandmarks
from .landscape import Landscape, build_landscape
from .plume import Plume

SIZES = [(640, 360), (640, 480), (768, 432), (800, 450), (960, 540), (1024, 576), (800, 600)]
KINDS = ("smoke", "smoke+negatives", "negatives")
STYLES = ("classic", "lookout")
KIND_WEIGHTS = (0.3, 0.2, 0.5)  # half the clips hold smoke, half are hard negatives
VISIBLE_CONTRAST = 0.06  # opacity x colour difference a person would call visible smoke (~15 grey levels)
MIN_BOX_SIDE = 1
MIN_VISIBLE_PIXELS = 1  # label every visible pixel: a box never hides smoke from the truth
LANDMARK_STREAM = 1  # the third seed word of the landmarks' own random stream


@dataclass
class Camera:
    """Per-clip camera character: shake, sensor noise, softness, vignetting, a caption banner, and
    for lookout cameras a fisheye lens circle, captions printed over the picture and a pixelated
    privacy block."""

    shake: float
    noise: float
    blur: float
    vignette: float
    banner: bool
    offsets: np.ndarray  # (frames, 2) shake offsets in pixels
    crf: int
    lens: float = 0.0  # radius of the fisheye image circle as a fraction of the frame width; 0 = none
    overlay: bool = False  # caption printed over the sky, no black bar
    privacy: tuple[float, float, float, float] | None = None  # pixelated block (x, y, w, h) as fractions

    @classmethod
    def sample(cls, rng: np.random.Generator, frames: int, lookout: bool = False) -> "Camera":
        shake = float(rng.choice([0.0, rng.uniform(0.2, 1.0), rng.uniform(1.0, 2.5)], p=[0.3, 0.5, 0.2]))
        steps = rng.normal(0, 1, (frames, 2))
        walk = np.cumsum(steps, axis=0) * 0.3 + steps * 0.7
        walk -= walk.mean(axis=0)
        scale = np.abs(walk).max() or 1.0
        camera = cls(
            shake=shake,
            noise=float(rng.uniform(0.8, 5.0)),
            blur=float(rng.uniform(0.0, 0.9)),
            vignette=float(rng.uniform(0.0, 0.35)),
            banner=bool(rng.random() < 0.3),
            offsets=(walk / scale * shake).astype(np.float32),
            crf=int(rng.integers(20, 34)),
        )
        if lookout:  # drawn after the classic draws, so classic clips stay what they were
            camera.lens = float(rng.uniform(0.5, 0.62)) if rng.random() < 0.6 else 0.0
            camera.overlay = bool(rng.random() < 0.6)
            camera.banner = camera.banner and not camera.overlay
            if rng.random() < 0.2:
                w, h = rng.uniform(0.1, 0.3), rng.uniform(0.08, 0.2)
                camera.privacy = (float(rng.uniform(0.05, 0.95 - w)), float(rng.uniform(0.7, 0.98 - h)), float(w), float(h))
        return camera


@dataclass
class ClipPlan:
    """Everything about one clip, drawn from its seed."""

    index: int
    seed: int
    width: int
    height: int
    frames: int
    fps: float
    kind: str
    scene: Landscape
    plumes: list[Plume]
    effects: list[Effect]
    camera: Camera
    caption: str = ""
    effect_names: list[str] = field(default_factory=list)
    style: str = "classic"
    landmarks: float = 0.0  # the share of the set's clips asked to show pale landmarks

    @property
    def label(self) -> str:
        return "smoke" if self.plumes else "no_smoke"

    def describe(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "size": [self.width, self.height],
            "style": self.style,
            "frames": self.frames,
            "fps": self.fps,
            "kind": self.kind,
            "dusk": self.scene.dusk,
            "effects": self.effect_names,
            "plumes": [
                {
                    "source": [round(p.source_x, 1), round(p.source_y, 1)],
                    "start_frame": p.start_frame,
                    "max_height": round(p.max_height, 1),
                    "colour": p.colour_name,
                    "opacity": round(p.opacity, 2),
                }
                for p in self.plumes
            ],
            "camera": {"shake": round(self.camera.shake, 2), "noise": round(self.camera.noise, 2), "crf": self.camera.crf,
                       "lens": round(self.camera.lens, 3)},
            **({"landmarks": self.landmarks} if self.landmarks else {}),  # sets made before landmarks name none
        }


def plan_clip(
    seed: int,
    index: int,
    size: tuple[int, int] | None = None,
    frames: int = 48,
    fps: float = 8.0,
    kind: str | None = None,
    style: str = "classic",
    landmarks: float = 0.0,
) -> ClipPlan:
    """`style` "lookout" draws summit-camera scenes (see `build_landscape`) with fisheye lenses,
    and plumes sheared by wind and paled by distance, as lookout networks see them.

    `landmarks` is the share of clips that also get pale landmarks (`PaleLandmarks`), smoke or
    not. They are drawn from a random stream of their own, so with 0 (the default) every clip is
    what it was before they existed, and with more the other clips do not change."""
    if style not in STYLES:
        raise ValueError(f"unknown synthetic style '{style}'; choose from {', '.join(STYLES)}")
    lookout = style == "lookout"
    rng = np.random.default_rng([seed, index])
    width, height = size or SIZES[int(rng.integers(len(SIZES)))]
    kind = kind or str(rng.choice(KINDS, p=KIND_WEIGHTS))
    scene = build_landscape(height, width, rng, lookout)

    plumes = []
    if kind.startswith("smoke"):
        for _ in range(1 if rng.random() < 0.9 else 2):
            layer = int(rng.integers(len(scene.profiles)))
            x = float(rng.uniform(0.08, 0.92) * width)
            y = scene.ground_y(int(x), layer) + float(rng.uniform(0.0, 0.04) * height)
            start = int(rng.integers(0, max(1, frames // 2)))
            plume = Plume.sample(rng, x, min(y, height - 2), layer, height, frames, start)
            if lookout:
                if rng.random() < 0.5:  # wind shear: the column bends over and streams sideways
                    plume.lean *= float(rng.uniform(1.5, 2.8))
                # aerial perspective: a plume over a far ridge takes on the haze colour like the ridge
                depth = 1.0 - layer / max(len(scene.profiles) - 1, 1)
                mix = 0.5 * depth * float(rng.uniform(0.2, 1.0))
                plume.colour = tuple(float(c) for c in np.asarray(plume.colour) * (1 - mix) + scene.haze_colour * mix)
            plumes.append(plume)

    names = list(EFFECT_WEIGHTS)
    weights = np.array([EFFECT_WEIGHTS[n] for n in names])
    if kind == "negatives":
        count = int(rng.integers(1, 4))
    elif kind == "smoke+negatives":
        count = int(rng.integers(1, 3))
    else:
        count = int(rng.random() < 0.3)
    chosen = list(rng.choice(names, size=min(count, len(names)), replace=False, p=weights / weights.sum())) if count else []
    effects = [EFFECT_SAMPLERS[name](rng, scene, frames) for name in chosen]
    camera = Camera.sample(rng, frames, lookout)
    caption = f"CAM {int(rng.integers(1, 99)):02d}  {int(rng.integers(2015, 2026))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
    if landmarks > 0:
        extra = np.random.default_rng([seed, index, LANDMARK_STREAM])
        if extra.random() < landmarks:
            effects.append(PaleLandmarks.sample(extra, scene))
            chosen.append(effects[-1].name)
    return ClipPlan(index, seed, width, height, frames, fps, kind, scene, plumes, effects, camera, caption,
                    [str(c) for c in chosen], style, landmarks)


class ClipRenderer:
    """Renders a plan's frames; precomputes the static layers once."""

    def __init__(self, plan: ClipPlan, with_smoke: bool = True) -> None:
        self.plan = plan
        self.with_smoke = with_smoke
        scene = plan.scene
        n = len(scene.profiles)
        # The ridge the first plume stands on splits the landscape into far (behind it) and near.
        split = plan.plumes[0].layer + 1 if plan.plumes else n
        self.far_rgb, self.far_alpha = scene.stack(range(0, split))
        self.near_rgb, self.near_alpha = scene.stack(range(split, n))
        self.far_keep = (1 - self.far_alpha)[..., None]
        self.near_keep = (1 - self.near_alpha)[..., None]
        H, W = plan.height, plan.width
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r = np.hypot((xx - W / 2) / (W / 2), (yy - H / 2) / (H / 2)) / np.sqrt(2)
        self.vignette = (1 - plan.camera.vignette * r**2)[..., None].astype(np.float32)
        # the fisheye image circle is fixed to the camera: the scene shakes, the black border does not
        self.lens = None
        if plan.camera.lens:
            radius = plan.camera.lens * W
            d = np.hypot(xx - W / 2, yy - H / 2)
            edge = np.clip((radius - d) / max(1.5, 0.012 * W), 0, 1) * (1 - 0.45 * np.clip(d / radius, 0, 1) ** 6)
            self.lens = edge.astype(np.float32)
        self.stages = {stage: [e for e in plan.effects if e.stage == stage] for stage in ("sky", "mid", "front", "global")}
        # Without effects in the sky, sky and far ridges never change: composite them once.
        self.static_far = None if self.stages["sky"] else plan.scene.sky * self.far_keep + self.far_rgb

    def frames(self) -> Iterator[tuple[np.ndarray, list[tuple[float, float, float, float]]]]:
        for t in range(self.plan.frames):
            yield self.render(t)

    def render(self, t: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
        """(RGB uint8 frame, smoke boxes as (x1, y1, x2, y2) pixels) of frame t."""
        plan = self.plan
        H, W = plan.height, plan.width
        if self.static_far is not None:
            canvas = self.static_far.copy()
        else:
            canvas = plan.scene.sky.copy()
            for effect in self.stages["sky"]:
                effect.apply(canvas, t)
            canvas *= self.far_keep
            canvas += self.far_rgb
        for effect in self.stages["mid"]:
            effect.apply(canvas, t)

        # Smoke is composited onto this canvas; `clean` follows the same steps without it, so the
        # label is measured on what the frame finally shows: nearer ridges, fog rolling in front,
        # haze, light, vignette, shake, lens and blur all change how much of a plume can be seen.
        clean, regions = None, []
        if self.with_smoke:
            for plume in plan.plumes:
                drawn = plume.render(t, W, H)
                if drawn is None:
                    continue
                if clean is None:
                    clean = canvas.copy()
                (x1, y1, x2, y2), alpha, rgb = drawn
                region = canvas[y1:y2, x1:x2]
                region *= 1 - alpha[..., None]
                region += alpha[..., None] * rgb
                regions.append((x1, y1, x2, y2))
        layers = [canvas] if clean is None else [canvas, clean]

        cam = plan.camera
        dx, dy = (float(v) for v in cam.offsets[t])
        for i, layer in enumerate(layers):
            layer *= self.near_keep
            layer += self.near_rgb
            for effect in self.stages["front"]:
                effect.apply(layer, t)
            for effect in self.stages["global"]:
                effect.apply(layer, t)
            layer *= self.vignette
            if dx or dy:
                matrix = np.float32([[1, 0, dx], [0, 1, dy]])
                layer = cv2.warpAffine(layer, matrix, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            if self.lens is not None:
                layer *= self.lens[..., None]
            if cam.blur > 0.3:
                layer = cv2.GaussianBlur(layer, (0, 0), cam.blur)
            layers[i] = layer
        canvas = layers[0]
        boxes = self._visible_boxes(canvas, layers[1], regions, dx, dy) if clean is not None else []

        # sensor noise, seeded per frame so it is the same with or without smoke
        noise = np.empty_like(canvas)
        cv2.setRNGSeed(int(plan.seed * 1_000_003 + plan.index * 7919 + t) % (2**31 - 1))
        cv2.randn(noise, 0.0, cam.noise)
        canvas += noise
        image = np.clip(canvas, 0, 255).astype(np.uint8)
        if cam.banner:
            bar = max(10, H // 30)
            image[:bar] = 0
            cv2.putText(image, f"{plan.caption}  {t:04d}", (4, bar - 3), cv2.FONT_HERSHEY_SIMPLEX, bar / 30, (255, 255, 255), 1, cv2.LINE_AA)
            boxes = [b for b in boxes if b[3] > bar]
            boxes = [(a, max(b, float(bar)), c, d) for a, b, c, d in boxes]
        if cam.privacy is not None:  # mosaic over a house or a road, as public camera feeds do
            px, py, pw, ph = self._privacy_block()
            block = image[py : py + ph, px : px + pw]
            if block.size:
                cell = max(4, W // 60)
                small = cv2.resize(block, (max(1, block.shape[1] // cell), max(1, block.shape[0] // cell)), interpolation=cv2.INTER_AREA)
                image[py : py + ph, px : px + pw] = cv2.resize(small, (block.shape[1], block.shape[0]), interpolation=cv2.INTER_NEAREST)
        if cam.overlay:
            size = max(0.3, H / 1400)
            cv2.putText(image, f"{plan.caption}  {t:04d}  http://lookout.example", (4, max(10, int(28 * size))),
                        cv2.FONT_HERSHEY_SIMPLEX, size, (235, 235, 120), 1, cv2.LINE_AA)
        return image, boxes

    def _privacy_block(self) -> tuple[int, int, int, int]:
        return tuple(int(f * s) for f, s in zip(self.plan.camera.privacy, (self.plan.width, self.plan.height) * 2))

    def _visible_boxes(self, smoky: np.ndarray, clean: np.ndarray, regions, dx: float, dy: float) -> list[tuple[float, float, float, float]]:
        """One box per plume around the pixels where its smoke changes the frame by at least
        VISIBLE_CONTRAST, looked for where shake and blur can have moved it."""
        H, W = smoky.shape[:2]
        margin = int(np.ceil(3 * self.plan.camera.blur + abs(dx) + abs(dy))) + 1
        boxes = []
        for x1, y1, x2, y2 in regions:
            X1, Y1, X2, Y2 = max(0, x1 - margin), max(0, y1 - margin), min(W, x2 + margin), min(H, y2 + margin)
            visible = np.abs(smoky[Y1:Y2, X1:X2] - clean[Y1:Y2, X1:X2]).max(axis=2) >= VISIBLE_CONTRAST * 255
            if self.plan.camera.privacy is not None:  # the mosaic smears smoke below visibility
                px, py, pw, ph = self._privacy_block()
                visible[max(0, py - Y1) : max(0, py + ph - Y1), max(0, px - X1) : max(0, px + pw - X1)] = False
            ys, xs = np.nonzero(visible)
            if len(xs) >= MIN_VISIBLE_PIXELS and xs.max() - xs.min() + 1 >= MIN_BOX_SIDE and ys.max() - ys.min() + 1 >= MIN_BOX_SIDE:
                boxes.append((float(X1 + xs.min()), float(Y1 + ys.min()), float(X1 + xs.max() + 1), float(Y1 + ys.max() + 1)))
        return boxes
