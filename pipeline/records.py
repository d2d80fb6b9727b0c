"""Records that travel between stages.

Frames move forward through source -> sampler -> detector -> tubes -> features -> verifier ->
decision; each hop hands over one of these typed records rather than tuples, so a stage can be
read (and replaced) on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass(frozen=True, slots=True)
class Box:
    """Axis-aligned box in source pixels, corners (x1, y1) top-left and (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    def intersection(self, other: "Box") -> float:
        w = min(self.x2, other.x2) - max(self.x1, other.x1)
        h = min(self.y2, other.y2) - max(self.y1, other.y1)
        return w * h if w > 0 and h > 0 else 0.0

    def iou(self, other: "Box") -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def clip(self, width: int, height: int) -> "Box":
        return Box(
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
            min(max(self.x2, 0.0), width),
            min(max(self.y2, 0.0), height),
        )

    def as_list(self, ndigits: int = 1) -> list[float]:
        return [round(v, ndigits) for v in (self.x1, self.y1, self.x2, self.y2)]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image. `index` counts every frame of the source in its own order, kept or not."""

    index: int
    time_s: float
    image: np.ndarray  # H x W x 3, uint8, RGB

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What a source says about itself before it is read; fields it cannot know are None."""

    path: str
    kind: str  # "video", "frames" (a folder of images) or "image"
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    duration_s: float | None


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector box for class smoke."""

    box: Box
    conf: float


@dataclass(frozen=True, slots=True)
class WindowRequest:
    """A candidate region to verify on the window of kept frames ending at `seq`.

    `frame_seqs` lists the T kept-frame sequence numbers the crops come from, oldest first
    (repeated at the start of a source when fewer than T frames exist yet).
    """

    track_id: int
    seq: int
    region: tuple[int, int, int, int]
    frame_seqs: tuple[int, ...]
    box: Box  # the candidate's latest detector box
    detector_conf: float  # confidence of the box in this frame; 0 when the detector missed it


@dataclass(frozen=True, slots=True)
class RegionFlow:
    """How the picture moves inside one window's region (pipeline.flow), the camera's own motion
    taken out; per kept frame, rise and drift in fractions of the region's size so near and far
    plumes compare."""

    rise: float  # mean upward motion, in region heights
    drift: float  # size of the mean sideways motion, in region widths
    speed: float  # mean motion, in pixels of the region resized to flow.size
    contrast: float  # mean motion inside the region over that of the whole frame (both in source pixels)
    rising_share: float  # share of the region's moving pixels that move up
    moving_share: float  # share of the region's pixels that move at all

    def as_list(self) -> list[float]:
        return [getattr(self, name) for name in FLOW_FIELDS]


FLOW_FIELDS = tuple(f.name for f in fields(RegionFlow))
# What a flow-reading track scorer's history takes for a window whose flow could not be measured
# (pipeline.scorer); with decision.fallback_threshold set, the fallback decides such a window instead.
STILL = RegionFlow(rise=0.0, drift=0.0, speed=0.0, contrast=1.0, rising_share=0.5, moving_share=0.0)


@dataclass(frozen=True, slots=True)
class WindowResult:
    """The verifier's answer for one candidate window."""

    track_id: int
    frame_index: int
    time_s: float
    box: Box
    region: Box
    detector_conf: float
    smoke_prob: float
    verified: bool
    confirmed: bool
    head_probs: dict[str, float] = field(default_factory=dict)
    # the decision's score of the region at this window: the track scorer's p when it decides,
    # else the k-of-n rule's k-th highest p; `confirmed` is this score reaching its threshold
    score: float = 0.0
    flow: RegionFlow | None = None  # when the config's flow section is enabled and frames close enough in time to compare

    def to_json(self) -> dict:
        return {
            "frame": self.frame_index,
            "time_s": round(self.time_s, 3),
            "track_id": self.track_id,
            "box": self.box.as_list(),
            "region": self.region.as_list(),
            "detector_conf": round(self.detector_conf, 4),
            "smoke_prob": round(self.smoke_prob, 4),
            "verified": self.verified,
            "confirmed": self.confirmed,
            **({"flow": {k: round(v, 5) for k, v in zip(FLOW_FIELDS, self.flow.as_list())}} if self.flow else {}),
        }


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything the pipeline concluded about one kept frame."""

    frame: Frame
    seq: int
    detections: list[Detection]
    windows: list[WindowResult]


@dataclass(slots=True)
class StageTimes:
    """Seconds spent per stage; `heads` holds each verifier head separately so heads compare fairly."""

    decode: float = 0.0
    detect: float = 0.0
    features: float = 0.0
    heads: dict[str, float] = field(default_factory=dict)
    other: float = 0.0

    def total(self, head: str | None = None) -> float:
        """Decode + detection + features + one head (or all heads when `head` is None) + bookkeeping."""
        head_time = sum(self.heads.values()) if head is None else self.heads.get(head, 0.0)
        return self.decode + self.detect + self.features + head_time + self.other

    def to_json(self) -> dict:
        return {
            "decode": round(self.decode, 4),
            "detect": round(self.detect, 4),
            "features": round(self.features, 4),
            "heads": {k: round(v, 4) for k, v in self.heads.items()},
            "other": round(self.other, 4),
        }


@dataclass(slots=True)
class ClipResult:
    """A verdict on a whole source."""

    source: SourceInfo
    verdict: str  # "smoke" or "no_smoke"
    score: float
    first_smoke_frame: int | None
    first_smoke_time_s: float | None
    frames_read: int
    frames_processed: int
    windows: list[WindowResult]
    seconds: float
    device: str
    model: dict[str, str]
    stage_times: StageTimes
    crops_computed: int = 0
    crops_reused: int = 0

    @property
    def s_per_frame(self) -> float:
        return self.seconds / self.frames_processed if self.frames_processed else 0.0

    def to_json(self) -> dict:
        s = self.source
        return {
            "verdict": self.verdict,
            "score": round(self.score, 4),
            "first_smoke_frame": self.first_smoke_frame,
            "first_smoke_time_s": None if self.first_smoke_time_s is None else round(self.first_smoke_time_s, 3),
            "frames_read": self.frames_read,
            "frames_processed": self.frames_processed,
            "regions": [w.to_json() for w in self.windows],
            "timing": {
                "seconds": round(self.seconds, 4),
                "s_per_frame": round(self.s_per_frame, 5),
                "device": self.device,
                "stages": self.stage_times.to_json(),
                "crops_computed": self.crops_computed,
                "crops_reused": self.crops_reused,
            },
            "model": dict(self.model),
            "source": {
                "path": s.path,
                "kind": s.kind,
                "width": s.width,
                "height": s.height,
                "fps": s.fps,
                "frame_count": s.frame_count,
                "duration_s": s.duration_s,
            },
        }
