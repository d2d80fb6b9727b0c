"""Records that cross the evaluation's modules: what the runner keeps per item, what each row
decides per item, and what scoring concludes per row.

The runner's :class:`ItemTrace` holds everything a decision needs and nothing more (boxes and
probabilities, not images), so all rows are computed afterwards from the same evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from pipeline.records import Detection, SourceInfo, StageTimes, WindowResult
from training.datasets import ManifestItem
from training.metrics import BinaryScores, DelaySummary, DetectionDelay
from training.windows import smoke_share

from . import DEFAULT_VOTE_THRESHOLD, LEVELS  # noqa: F401 - LEVELS is re-exported for the other modules

Level = Literal["window", "item"]
RowKind = Literal["verifier", "baseline"]

DETECTOR_ROW = "detector"
VOTE_ROW = "frame-vote"
SCORER_ROW = "track-scorer"
SCORER_LABEL = "track scorer"


@dataclass(frozen=True)
class VoteOptions:
    """The Pyronear-style frame vote (DESIGN.md, "The bar set by others").

    A region passes at a frame when boxes overlap it in at least `min_fraction` of the last
    `frames` kept frames and their mean confidence (summed best overlapping confidence per frame,
    divided by `frames`) reaches `threshold`; while an alert is open (the previous frame passed)
    the threshold is multiplied by `alert_factor`, as in pyro-engine. 0.15 is pyro-engine's
    default confidence threshold.
    """

    frames: int = 8
    min_fraction: float = 0.5
    threshold: float = DEFAULT_VOTE_THRESHOLD
    alert_factor: float = 0.8
    iou: float = 0.0  # boxes "overlap" when their IoU is above this (pyro-engine: any overlap)

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError("the frame vote needs at least one frame")
        if not 0.0 < self.min_fraction <= 1.0:
            raise ValueError("the frame vote's min_fraction must be in (0, 1]")
        if not 0.0 < self.alert_factor <= 1.0:
            raise ValueError("the frame vote's alert_factor must be in (0, 1]")

    @property
    def min_votes(self) -> int:
        return max(1, math.ceil(self.frames * self.min_fraction - 1e-9))


@dataclass(frozen=True)
class RowSpec:
    """One row of the table: a verifier head or a baseline."""

    key: str  # head name ("deep-bilstm") or baseline key ("detector", "frame-vote")
    label: str  # as printed ("deep Bi-LSTM", "detector alone")
    kind: RowKind


@dataclass(frozen=True)
class FrameTrace:
    """One kept frame: its place in the item and the detector's boxes (images are not kept)."""

    index: int
    time_s: float
    detections: tuple[Detection, ...]


@dataclass
class ItemTrace:
    """What the engine saw and said on one item, with every head's probability per window."""

    item: ManifestItem
    source: SourceInfo
    frames: list[FrameTrace]
    windows: list[WindowResult]
    times: StageTimes
    engine_verdict: str  # the engine's own verdict with its primary head (a cross-check)
    primary_head: str
    frames_read: int
    seconds: float
    crops_computed: int = 0
    crops_reused: int = 0

    @property
    def frames_processed(self) -> int:
        return len(self.frames)

    @property
    def smoke_start(self) -> int | None:
        """First smoke frame: `smoke_from`, or 0 for a smoke item without it (smoke throughout)."""
        if not self.item.is_smoke:
            return None
        return self.item.smoke_from or 0

    @cached_property
    def smoke_shares(self) -> np.ndarray:
        """How much of each window's region the smoke fills at its last frame (`smoke_share`). Only
        what a miss is put down to reads it; the rows' window-level scores keep `window_truth`."""
        width, height = self.source.width, self.source.height
        return np.array([smoke_share(self.item, w, width, height) for w in self.windows], dtype=float)

    @property
    def on_smoke(self) -> np.ndarray:
        """Whether each window's region holds the smoke at its last frame, judged as the heads'
        training windows are (ground-truth boxes where the item has them, else the frame's truth)."""
        return self.smoke_shares > 0

    @property
    def smoke_in_sight(self) -> np.ndarray:
        """Windows on the smoke whose region it fills enough to be seen in the crop (MIN_SIGHT)."""
        return self.smoke_shares >= MIN_SIGHT

    def window_truth(self) -> np.ndarray:
        """Truth of each window: whether its last frame shows smoke."""
        return np.array([self.item.smoke_at(w.frame_index) for w in self.windows], dtype=bool)

    def time_of(self, frame_index: int) -> float:
        """Timestamp of a source frame, interpolated between kept frames (the sampler may skip it)."""
        if not self.frames:
            fps = self.source.fps or 1.0
            return frame_index / fps
        indices = np.array([f.index for f in self.frames], dtype=float)
        times = np.array([f.time_s for f in self.frames], dtype=float)
        if len(self.frames) == 1 or frame_index < indices[0] or frame_index > indices[-1]:
            fps = self.source.fps or 1.0
            nearest = 0 if frame_index < indices[0] else len(indices) - 1
            return float(times[nearest] + (frame_index - indices[nearest]) / fps)
        return float(np.interp(frame_index, indices, times))


@dataclass
class ItemDecision:
    """One row's decisions on one item.

    `window_pred` / `window_score` are aligned with the trace's windows (window level);
    `alarms` lists the kept frames at which the row says smoke (a confirmed region for a
    verifier, a box or a passing vote for a baseline), which gives the item verdict and the time
    to detection. `seconds` is the row's own compute on top of the shared stages.
    """

    row: str
    window_pred: np.ndarray
    window_score: np.ndarray
    alarms: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return "smoke" if self.alarms else "no_smoke"

    @property
    def first_alarm(self) -> tuple[int, float] | None:
        return min(self.alarms) if self.alarms else None


MissStage = Literal["proposals", "scores", "confirmation"]
MISS_STAGES: tuple[MissStage, ...] = ("proposals", "scores", "confirmation")
# Share of a region's area the smoke must fill for a miss not to be put down to the proposals: 1 % is
# an 11 px square in the backbone's 112 px crop; below it the heads were shown a speck (`smoke_share`).
MIN_SIGHT = 0.01
MISS_MEANINGS = {
    "proposals": "no window's region held the smoke, or held it only as a speck (under 1 % of its area): "
                 "the detector and motion proposals never put a region on it that shows it",
    "scores": "regions held the smoke, but the row's score there stayed below its threshold",
    "confirmation": "windows on the smoke passed the threshold, but never k of n in one region",
}


@dataclass(frozen=True)
class Miss:
    """Where a verifier row lost a smoke item, following the frame's path through the pipeline, so
    the stage to improve is named (the proposals, the heads or scorer, or the k-of-n rule)."""

    stage: MissStage
    windows_on_smoke: int  # windows whose region showed the smoke (filled at least MIN_SIGHT of it)
    regions_on_smoke: int
    best_score: float | None  # the row's highest score on those windows; None when there were none
    # track scorer only: the highest mean p of the heads it reads on those windows
    best_heads_mean: float | None = None
    speck_windows: int = 0  # windows whose region held the smoke but too small to see (not counted above)

    def to_json(self) -> dict:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"stage": self.stage, "windows_on_smoke": self.windows_on_smoke, "regions_on_smoke": self.regions_on_smoke,
                "best_score": rounded(self.best_score), "best_heads_mean": rounded(self.best_heads_mean),
                "speck_windows": self.speck_windows}


@dataclass
class ItemOutcome:
    """One row's result on one item, as reported per item."""

    row: str
    verdict: str
    correct: bool
    first_alarm: tuple[int, float] | None
    delay: DetectionDelay | None  # smoke items only
    window: BinaryScores
    miss: Miss | None = None  # a smoke item a verifier row missed: where it was lost


@dataclass
class RowResult:
    """Everything the table and results.json say about one row."""

    spec: RowSpec
    window: BinaryScores
    item: BinaryScores
    window_ap: float
    delays: DelaySummary
    seconds: float  # shared stages this row uses + its own compute, over all items
    frames: int
    pr_curve: tuple[np.ndarray, np.ndarray, np.ndarray]  # precision, recall, thresholds (window level)

    @property
    def s_per_frame(self) -> float:
        return self.seconds / self.frames if self.frames else 0.0

    def scores(self, level: Level) -> BinaryScores:
        return self.window if level == "window" else self.item


@dataclass
class RunInfo:
    """How the evaluation was run: everything results.json records besides the scores."""

    data_dir: str
    data_hash: str
    model_path: str | None
    model_hash: str
    model: dict[str, str]  # bundle.describe(): detector, extractor, primary verifier, bundle name
    head_files: dict[str, str]  # sha256 of each evaluated head's weight file, when saved
    config: dict  # the PipelineConfig the engine ran with
    level: Level  # level of table.md / table.csv
    environment: dict
    request: dict  # the evaluate request as given (data, model, heads, overrides, options)
    created_at: str
    trained_heads: dict | None = None  # per-head training reports, when --train-heads ran
    seconds: float = 0.0  # wall time of the whole evaluation
