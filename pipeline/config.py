"""Configuration of the whole pipeline, one pydantic model per stage.

A config is what a model bundle carries in ``config.yaml`` and what a user edits. Unknown keys
are refused so that a typo (``treshold:``) fails loudly instead of silently running defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

HeadName = Literal["lstm", "deep-lstm", "bilstm", "deep-bilstm", "gru", "deep-gru"]
HEAD_NAMES: tuple[str, ...] = ("lstm", "deep-lstm", "bilstm", "deep-bilstm", "gru", "deep-gru")
BackboneName = Literal[
    "resnet50", "resnet34", "resnet18", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0"
]


class StrictModel(BaseModel):
    """Base for every config record: unknown keys are an error, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SamplingConfig(StrictModel):
    """Which decoded frames enter the pipeline."""

    fps: float | None = Field(
        4.0,
        gt=0,
        description="Frames per second kept from video files and streams (by timestamp); "
        "null keeps every decoded frame. Clips at 25-30 fps need only a few per second.",
    )
    folder_stride: int = Field(
        1, ge=1, description="Keep every n-th image of a folder of frames (1 keeps every frame)."
    )
    folder_interval_s: float = Field(
        1.0,
        gt=0,
        description="Seconds between consecutive images of a folder of frames, used to give "
        "them times (FIgLib lookout sequences: 60).",
    )
    max_frames: int | None = Field(
        None, ge=1, description="Stop after this many kept frames; null reads the whole source."
    )


class TileConfig(StrictModel):
    """Overlapping tiles for large lookout frames, where a young plume is a few dozen pixels."""

    size: int = Field(640, ge=64, description="Tile side in source pixels (tiles are square).")
    overlap: int = Field(64, ge=0, description="Overlap between neighbouring tiles in source pixels.")
    include_full_frame: bool = Field(
        True, description="Also run the detector on the whole frame, for plumes larger than a tile."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "TileConfig":
        if self.overlap >= self.size:
            raise ValueError("tiles.overlap must be smaller than tiles.size")
        return self


class DetectorConfig(StrictModel):
    """The YOLO stage that proposes smoke candidates in each frame (recall first)."""

    arch: str = Field(
        "yolov3-tinyu.yaml",
        description="ultralytics model yaml the detector is built from (yolov3u.yaml, "
        "yolov3-tinyu.yaml, yolov8n.yaml, yolo11n.yaml, ...), or a path to a custom yaml.",
    )
    weights: Path | None = Field(
        None,
        description="Local weights file: an ultralytics .pt checkpoint or a smokewatch detector.pt. "
        "In a bundle this is set by the bundle; null builds an untrained model from `arch`.",
    )
    imgsz: int = Field(640, ge=32, description="Detector input side in pixels (a multiple of 32).")
    rect: bool = Field(
        True,
        description="Letterbox to the smallest multiple of 32 that holds the frame at `imgsz` (as ultralytics "
        "predicts) instead of an imgsz x imgsz square: a 16:9 frame costs about 40 % less to detect on.",
    )
    conf: float = Field(
        0.05, ge=0.0, le=1.0, description="Lowest box confidence kept; low, since the verifier filters."
    )
    iou: float = Field(0.5, gt=0.0, le=1.0, description="IoU above which overlapping boxes are suppressed (NMS).")
    max_det: int = Field(20, ge=1, description="Most boxes kept per frame, highest confidence first.")
    smoke_class: int | str = Field(
        "smoke",
        description="Class of the detector that means smoke: its name, or its index. Other classes "
        "(fire, ...) are ignored.",
    )
    tiles: TileConfig | None = Field(
        None, description="Run the detector on overlapping tiles of each frame; null runs it on the whole frame."
    )

    @field_validator("imgsz")
    @classmethod
    def _stride_multiple(cls, v: int) -> int:
        if v % 32:
            raise ValueError("detector.imgsz must be a multiple of 32")
        return v


class TubeConfig(StrictModel):
    """Linking boxes across frames into candidate regions and cutting their windows ("smoke tubes")."""

    window: int = Field(8, ge=1, le=64, description="T: number of frames in each verified window.")
    stride: int = Field(
        1, ge=1, description="A candidate gets a new window every `stride` kept frames."
    )
    margin: float = Field(
        0.25, ge=0.0, le=3.0, description="Box expansion on each side, as a fraction of its size."
    )
    square: bool = Field(
        True, description="Make crop regions square (around the box centre) so thin plumes are not stretched."
    )
    min_size: int = Field(32, ge=8, description="Smallest crop region side in source pixels.")
    grid: int = Field(
        8,
        ge=1,
        description="Region corners snap to this many pixels, so a jittering box keeps its region "
        "and its cached crop features.",
    )
    keep_cover: float = Field(
        0.85,
        gt=0.0,
        le=1.0,
        description="A region is kept while this fraction of the new expanded box lies inside it "
        "(and it is not far larger); otherwise it moves to the new box.",
    )
    link_iou: float = Field(0.2, ge=0.0, le=1.0, description="Lowest IoU that links a box to an existing candidate.")
    max_missed: int = Field(
        2, ge=0, description="Frames a candidate may go without a box before it is dropped."
    )
    max_tracks: int = Field(16, ge=1, description="Most candidates followed at once (highest confidence first).")
    pad_short: bool = Field(
        True,
        description="At the start of a source, fewer than T frames exist: repeat the oldest one "
        "to fill the window instead of waiting (lets a short clip or a single image be verified).",
    )


class ExtractorConfig(StrictModel):
    """The CNN that turns each crop into one feature vector."""

    backbone: BackboneName = Field(
        "resnet50", description="torchvision backbone used without its classifier (resnet50 gives 2048 values)."
    )
    input_size: int = Field(224, ge=32, le=512, description="Crop side fed to the backbone, in pixels.")
    weights: str = Field(
        "none",
        description="'none' (random, to be trained), 'imagenet' (torchvision's ImageNet weights; "
        "needs them in the torch cache or a network), or a path to a state_dict file.",
    )
    change_cues: bool = Field(
        False,
        description="Append to each crop's features 48 values saying how its region changed since the "
        "window's first frame and since the previous frame (signed and absolute grey-level change on a "
        "4x4 grid). Shapes the heads' input: a bundle's heads are trained with it on or off.",
    )


class EnsembleMember(StrictModel):
    """Another crop-feature network with heads of its own, a second opinion for the track scorer.

    Heads that read different crop features err on different regions (a cloud one backbone is sure
    of, the other doubts), so a scorer that reads both kinds can tell apart some regions that either
    kind alone cannot (training/EXPERIMENTS.md, "Two backbones in one bundle"). A member's heads are
    read only by the track scorer, never chosen as the deciding head, and each member costs one more
    backbone pass per crop."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Short name (lower-case letters, digits, - and _); its heads are called NAME/HEAD (c160/gru) "
        "and are stored in the bundle's ensemble/NAME/ folder.",
    )
    extractor: ExtractorConfig = Field(description="The member's crop-feature network.")


class VerifierConfig(StrictModel):
    """The recurrent head that reads T feature vectors and gives p(smoke)."""

    head: HeadName = Field("deep-bilstm", description="Which of the six recurrent heads decides.")
    hidden_size: int = Field(256, ge=4, description="Units per recurrent layer (per direction).")
    num_layers: int | None = Field(
        None, ge=1, le=8, description="Recurrent layers; null means 1 for single heads and 3 for deep ones."
    )
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout between layers and before the classifier.")
    proj_dim: int | None = Field(
        None, ge=4, description="Project features to this size before the recurrent layers (keeps heads small)."
    )


class DecisionConfig(StrictModel):
    """How window probabilities become verified regions and a clip verdict."""

    threshold: float = Field(0.5, ge=0.0, le=1.0, description="p(smoke) at or above which a window is verified.")
    confirm_k: int = Field(1, ge=1, description="A region is confirmed when k of its last n windows are verified.")
    confirm_n: int = Field(1, ge=1, description="n in the k-of-n confirmation rule.")
    scorer_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="When set, a region is confirmed when the bundle's track scorer (decision/track_scorer.json, "
        "trained by `smokewatch train decision`) gives its history so far at least this p(smoke), instead of the "
        "k-of-n rule; windows are still verified at `threshold`. null: the k-of-n rule.",
    )
    scorer_min_heads: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With the track scorer: a region is confirmed only while the mean p(smoke) of the heads the scorer "
        "reads, on its current window, is at least this; otherwise its score is 0. The scorer weighs a region's "
        "history and motion too, and must not alarm on them alone when the heads no longer see smoke. null: no gate.",
    )
    fallback_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With a track scorer that reads the flow: the p(smoke) at which its fallback (the scorer without flow "
        "it carries) confirms a window whose flow could not be measured, such as a camera sending a frame a minute "
        "(frames further apart than flow.max_gap_s). null: the flow scorer decides such windows as if the picture "
        "stood still.",
    )
    fallback_veto: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With a track scorer that reads the flow: a window whose flow was measured is confirmed only when "
        "the fallback also gives the region at least this p(smoke). Real fog can rise past a building as a plume rises; "
        "the scorer without flow judges the region on its shape and history alone. null: no veto.",
    )

    @model_validator(mode="after")
    def _k_le_n(self) -> "DecisionConfig":
        if self.confirm_k > self.confirm_n:
            raise ValueError("decision.confirm_k must not exceed decision.confirm_n")
        return self


class RuntimeConfig(StrictModel):
    """Where and how the models run."""

    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    half: bool = Field(True, description="Use half precision on CUDA (ignored on CPU).")
    batch_frames: int = Field(
        8, ge=1, description="Kept frames processed together (features of a whole chunk run as one batch)."
    )
    feature_batch: int = Field(64, ge=1, description="Most crops sent through the backbone at once.")
    backend: Literal["torch", "onnx"] = Field(
        "torch",
        description="Inference backend of the detector and the backbone: 'torch' (PyTorch, the default) or "
        "'onnx' (ONNX Runtime, using detector.onnx and extractor.onnx written into the bundle by "
        "`smokewatch export --format onnx`; fastest on small CPU boxes). Verifier heads always run in PyTorch.",
    )
    prefetch: int = Field(
        1,
        ge=0,
        le=8,
        description="Chunks of frames decoded (and letterboxed for the detector) ahead on a background "
        "thread while the current chunk is inferred; 0 decodes on the inference thread.",
    )


class MotionConfig(StrictModel):
    """Motion proposals for fixed cameras: changed regions become extra, low-confidence candidates."""

    enabled: bool = Field(
        False, description="Add motion proposals to the detector's boxes (fixed cameras only; a moving camera changes everywhere)."
    )
    width: int = Field(320, ge=32, description="Width in pixels the frame is shrunk to for comparison.")
    blur: float = Field(1.5, gt=0.0, description="Gaussian blur (pixels at that width) against sensor noise.")
    alpha: float = Field(
        0.15, gt=0.0, le=1.0, description="How fast the background follows the picture, per kept frame."
    )
    min_diff: float = Field(6.0, ge=0.0, description="Smallest grey-level change counted as motion.")
    sigmas: float = Field(4.0, ge=0.0, description="Changes must also exceed the usual change by this many spreads (see `spread`).")
    spread: Literal["std", "mad"] = Field(
        "std",
        description="How the usual change over the picture and its spread are measured: mean and standard deviation, or "
        "median and median absolute deviation (scaled to a deviation), which a fog bank or cloud moving over part "
        "of the picture does not raise, so a faint plume elsewhere still stands out.",
    )
    min_area: int = Field(4, ge=1, description="Smallest changed region, in pixels at the comparison width.")
    edge_shift: float = Field(
        0.0,
        ge=0.0,
        description="Camera shake, in pixels at the comparison width, whose change along the background's edges is not "
        "counted: a pixel must change by more than this times the background's gradient there (a shaking ridge line "
        "otherwise joins a young plume at its foot into one wide region). 0 counts every change.",
    )
    max_cover: float = Field(
        0.25, gt=0.0, le=1.0, description="If more of the frame than this changed (light, exposure), propose nothing."
    )
    max_moving: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="If more of the frame than this changed by at least min_diff (a camera carried, panned or "
        "refocused), propose nothing and restart the background from this frame.",
    )
    settle_frames: int = Field(
        2, ge=0, description="Kept frames without proposals after the camera moved, while the new background settles."
    )
    max_boxes: int = Field(4, ge=1, description="Most proposals per frame, strongest first.")
    conf: float = Field(0.1, gt=0.0, le=1.0, description="Confidence given to the strongest proposals (below real detections).")


class FlowConfig(StrictModel):
    """Optical flow inside each region, for a track scorer that reads it (pipeline.flow)."""

    enabled: bool = Field(
        False,
        description="Measure how the picture moves inside each window's region (smoke rises and spreads; clouds and "
        "fog mostly drift sideways). Needed by a track scorer trained with `train decision --flow`; costs about "
        "10 ms a kept frame on a 2-core CPU with up to 8 regions.",
    )
    size: int = Field(
        48, ge=16, description="Side in pixels each region is resized to before its flow is measured, so near and "
        "far regions are measured at the same resolution."
    )
    camera_width: int = Field(
        160, ge=32, description="Width in pixels the whole frame is shrunk to for measuring the camera's own motion."
    )
    min_speed: float = Field(
        0.2, ge=0.0, description="Slowest motion, in pixels a kept frame at `size`, for a pixel to count as moving."
    )
    max_gap_s: float = Field(
        2.0, gt=0.0, description="Frames further apart than this (a sequence of one image a minute) are not compared: "
        "what moved between them is no longer motion a flow can follow."
    )


class PipelineConfig(StrictModel):
    """Everything the engine needs besides weights."""

    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Frame sampling.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Candidate detector.")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion proposals beside the detector.")
    tubes: TubeConfig = Field(default_factory=TubeConfig, description="Candidate linking and windows.")
    flow: FlowConfig = Field(default_factory=FlowConfig, description="Optical flow inside regions, for the track scorer.")
    extractor: ExtractorConfig = Field(default_factory=ExtractorConfig, description="Crop feature extractor.")
    verifier: VerifierConfig = Field(default_factory=VerifierConfig, description="Recurrent verifier.")
    ensemble: list[EnsembleMember] = Field(
        default_factory=list,
        description="Further crop-feature networks whose heads the track scorer reads beside the main ones "
        "(`smokewatch train ensemble` adds one); empty: the main extractor alone.",
    )
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Verification decision.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Device and batching.")

    @model_validator(mode="after")
    def _members_named_once(self) -> "PipelineConfig":
        names = [m.name for m in self.ensemble]
        clash = sorted({n for n in names if names.count(n) > 1} | {n for n in names if n in HEAD_NAMES})
        if clash:
            raise ValueError(f"ensemble member names must be unique and not a head's name: {', '.join(clash)}")
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> "PipelineConfig":
        """Copy with dotted-key overrides applied (``{"decision.threshold": 0.7}``), validated.

        A mapping given for a section (``{"decision": {"threshold": 0.7}}``) is merged key by key, so
        the section's other settings (a bundle's tuned k of n, say) are kept, not reset to defaults.
        An optional section left unset (``detector.tiles: null``) is switched on by setting one of its
        keys; its other keys take their defaults."""
        data = self.model_dump(mode="json")
        for dotted, value in flatten_overrides(overrides).items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                if key in node and node[key] is None:
                    node[key] = {}
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"unknown config section '{key}' in override '{dotted}'")
                node = node[key]
            node[leaf] = value
        return parse_config(data, origin="overrides")


def flatten_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"a": {"b": 1}, "c.d": 2}`` -> ``{"a.b": 1, "c.d": 2}``: every override down to its leaf keys."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):  # an empty mapping changes nothing
            flat.update({f"{key}.{k}": v for k, v in flatten_overrides(value).items()})
        else:
            flat[key] = value
    return flat


# Settings the networks of a bundle were built with: changing them needs a different bundle.
FIXED_BY_BUNDLE = frozenset(
    {
        "detector.arch",
        "detector.weights",
        "extractor.backbone",
        "extractor.weights",
        "extractor.change_cues",
        "ensemble",
        "verifier.hidden_size",
        "verifier.num_layers",
        "verifier.dropout",
        "verifier.proj_dim",
    }
)


def head_member(name: str) -> tuple[str | None, str]:
    """Which crop features a head reads and its own name: 'c160/gru' -> ('c160', 'gru'), 'gru' -> (None, 'gru')."""
    member, sep, head = name.rpartition("/")
    return (member, head) if sep else (None, name)


def override_bundle_config(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """Apply run-time overrides to a bundle's config, refusing those that would not fit its networks."""
    fixed = sorted(k for k in flatten_overrides(overrides) if k in FIXED_BY_BUNDLE or k.startswith("ensemble."))
    if fixed:
        raise ConfigError(f"{', '.join(fixed)} cannot be overridden: the model bundle's networks fix it")
    return config.with_overrides(overrides) if overrides else config


def parse_config(data: dict[str, Any] | None, origin: str = "config") -> PipelineConfig:
    """Validate a mapping into a PipelineConfig, turning pydantic errors into one readable ConfigError."""
    try:
        return PipelineConfig.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {origin}: {problems}") from None


def load_config(path: str | Path) -> PipelineConfig:
    """Read a YAML config file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return parse_config(data, origin=f"config file {path}")


def dump_config(config: PipelineConfig) -> str:
    """YAML text of a config, in declaration order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
