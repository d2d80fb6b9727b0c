"""Typed records of the HTTP API: what requests may set and what answers hold.

The detection answer mirrors ``ClipResult.to_json()`` (the JSON of ``smokewatch detect``) field
for field; the records allow extra fields so that a field the pipeline adds later reaches clients
instead of being filtered out here (tests compare the two documents).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import HeadName

# --- requests ---------------------------------------------------------------------------------


class DetectOptions(BaseModel):
    """Form fields sent beside ``file``; each overrides the loaded bundle's config for this clip only."""

    model_config = ConfigDict(extra="forbid")

    fps: float | None = Field(
        None, gt=0, le=120, description="Frames per second kept from a video (sampling.fps); unset: the bundle's."
    )
    head: HeadName | None = Field(
        None,
        description="Verifier head whose p(smoke) each window reports, and which decides under the k-of-n rule (a "
        "bundle with a track scorer, like the default one, decides with the scorer); must be in the loaded bundle; "
        "unset: the bundle's.",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="p(smoke) at or above which a window is verified (decision.threshold)."
    )

    def overrides(self) -> dict[str, Any]:
        """Dotted config overrides, as ``smokewatch detect --set`` takes them."""
        keys = {"fps": "sampling.fps", "head": "verifier.head", "threshold": "decision.threshold"}
        return {keys[name]: value for name, value in self.model_dump().items() if value is not None}


OPTION_FIELDS = frozenset(DetectOptions.model_fields)

# --- detection answer -------------------------------------------------------------------------

_Open = ConfigDict(extra="allow")


class Region(BaseModel):
    model_config = _Open

    frame: int = Field(description="Index of the source frame the window ends on.")
    time_s: float = Field(description="Time of that frame in the source, seconds.")
    track_id: int = Field(description="Candidate (smoke tube) the window belongs to.")
    box: list[float] = Field(description="Latest detector box [x1, y1, x2, y2] in source pixels.")
    region: list[float] = Field(description="Crop region the window was cut from [x1, y1, x2, y2].")
    detector_conf: float = Field(description="Detector confidence in this frame (0 when it missed).")
    smoke_prob: float = Field(description="p(smoke) from the verifier head (the bundle's, or the one asked for).")
    verified: bool = Field(description="smoke_prob reached the threshold.")
    confirmed: bool = Field(
        description="The decision (the track scorer, or the k-of-n rule without one) confirmed the region at this window."
    )


class StageSeconds(BaseModel):
    model_config = _Open

    decode: float
    detect: float
    features: float
    heads: dict[str, float]
    other: float


class Timing(BaseModel):
    model_config = _Open

    seconds: float = Field(description="Wall time of the pipeline for this clip (upload and queueing excluded).")
    s_per_frame: float
    device: str
    stages: StageSeconds
    crops_computed: int
    crops_reused: int


class SourceDescription(BaseModel):
    model_config = _Open

    path: str = Field(description="The uploaded file's name (made safe); never a path on the server.")
    kind: Literal["video", "frames", "image"]
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    duration_s: float | None


class DetectResult(BaseModel):
    """The verdict on one clip: the same document ``smokewatch detect`` prints."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "verdict": "smoke",
                    "score": 0.9132,
                    "first_smoke_frame": 36,
                    "first_smoke_time_s": 1.44,
                    "frames_read": 250,
                    "frames_processed": 41,
                    "regions": [
                        {
                            "frame": 36,
                            "time_s": 1.44,
                            "track_id": 0,
                            "box": [402.0, 188.5, 451.0, 240.0],
                            "region": [384.0, 176.0, 472.0, 264.0],
                            "detector_conf": 0.412,
                            "smoke_prob": 0.9132,
                            "verified": True,
                            "confirmed": True,
                        }
                    ],
                    "timing": {
                        "seconds": 6.2,
                        "s_per_frame": 0.1512,
                        "device": "cpu",
                        "stages": {"decode": 0.21, "detect": 3.1, "features": 2.6, "heads": {"deep-bilstm": 0.2}, "other": 0.09},
                        "crops_computed": 80,
                        "crops_reused": 240,
                    },
                    "model": {"detector": "yolov3-tinyu", "extractor": "resnet50@224", "verifier": "deep-bilstm", "bundle": "default"},
                    "source": {"path": "ridge.mp4", "kind": "video", "width": 640, "height": 360, "fps": 25.0, "frame_count": 250, "duration_s": 10.0},
                }
            ]
        },
    )

    verdict: Literal["smoke", "no_smoke"]
    score: float = Field(
        description="Clip score of the bundle's decision, so that the verdict is smoke exactly when it reaches the "
        "confirming threshold. With a track scorer (decision.scorer_threshold set, as in the default bundle): the "
        "highest p(smoke) the scorer gave any region's history. Under the k-of-n rule (decision.confirm_k of "
        "decision.confirm_n): for each region, the k-th highest p(smoke) among its last n windows, taken at every "
        "frame, the best of these over all regions and frames (0 when no region had k windows); only with k = 1 is it "
        "the highest p(smoke) of any window (regions[].smoke_prob)."
    )
    first_smoke_frame: int | None = Field(description="Frame where smoke was first confirmed; null without smoke.")
    first_smoke_time_s: float | None = Field(description="Its time in the source, seconds.")
    frames_read: int = Field(description="Frames decoded from the source.")
    frames_processed: int = Field(description="Frames kept by the sampler and run through the pipeline.")
    regions: list[Region] = Field(description="One entry per verified candidate window, in order.")
    timing: Timing
    model: dict[str, str] = Field(description="Names of the detector, extractor, verifier head and bundle.")
    source: SourceDescription


# --- jobs -------------------------------------------------------------------------------------

JobState = Literal["queued", "running", "done", "failed"]


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobStatus(BaseModel):
    """A clip processed in the background: poll ``GET /jobs/{id}`` until status is done or failed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2b6c0e9a8d4f1e8b7a6c5d4e3f2a1b",
                    "status": "running",
                    "progress": 0.35,
                    "frames_processed": 84,
                    "frames_expected": 241,
                    "filename": "lookout-0612.mp4",
                    "created_at": 1795772400.12,
                    "started_at": 1795772401.02,
                    "finished_at": None,
                    "expires_at": None,
                    "result": None,
                    "error": None,
                }
            ]
        }
    )

    id: str = Field(description="Job id, as returned by POST /jobs.")
    status: JobState = Field(description="queued (waiting for a worker), running, done or failed.")
    progress: float = Field(ge=0, le=1, description="Share of the expected frames processed; 1 when done.")
    frames_processed: int = Field(description="Frames run through the pipeline so far.")
    frames_expected: int | None = Field(description="Frames the sampler will keep, when the file says how long it is.")
    filename: str = Field(description="The uploaded file's name (made safe).")
    created_at: float = Field(description="Unix time the upload was accepted.")
    started_at: float | None = Field(description="Unix time a worker took the job.")
    finished_at: float | None = Field(description="Unix time the job ended.")
    expires_at: float | None = Field(description="Unix time after which a finished job is forgotten (404).")
    result: DetectResult | None = Field(description="The verdict, once status is done.")
    error: ErrorInfo | None = Field(description="Why the job failed, in the API's error shape, once status is failed.")


# --- operations -------------------------------------------------------------------------------


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "model": "default", "workers": 1, "queue_capacity": 4, "monitoring": "running", "monitoring_error": None}
            ]
        }
    )

    status: Literal["ready"]
    model: str = Field(description="Name of the loaded bundle.")
    workers: int = Field(description="Inference worker threads.")
    queue_capacity: int = Field(description="Requests and jobs that may wait for a worker.")
    monitoring: Literal["starting", "running", "unavailable"] = Field(
        description="Stream monitoring: starting (building its engines), running, or unavailable (see monitoring_error; "
        "the /streams routes answer 503 monitor_unavailable). Clips are verified either way."
    )
    monitoring_error: str | None = Field(description="Why stream monitoring is unavailable; null otherwise.")


class ModelInfo(BaseModel):
    """What the service has loaded: enough to tell which model answered and how good it was measured to be."""

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "name": "default",
                    "description": "yolov3-tiny + ResNet50 + six verifier heads trained on synthetic plumes",
                    "path": "/srv/smokewatch/bundles/default",
                    "created_at": "2026-11-27T08:00:00+00:00",
                    "smokewatch_version": "0.1.0",
                    "format_version": 1,
                    "stages": {"detector": "yolov3-tinyu", "extractor": "resnet50@224", "verifier": "deep-bilstm", "bundle": "default"},
                    "heads": ["lstm", "deep-lstm", "bilstm", "deep-bilstm", "gru", "deep-gru"],
                    "default_head": "deep-bilstm",
                    "parameters": {"detector": 12134336, "extractor": 23508032, "head:deep-bilstm": 6826497},
                    "metrics": {"deep-bilstm": {"precision": 0.89, "recall": 0.84, "f1": 0.87}},
                    "provenance": {"data": "synthetic plumes, seed 0", "command": "smokewatch train default"},
                    "sampling_fps": 4.0,
                    "threshold": 0.5,
                    "device": "cpu",
                    "load_seconds": 2.4,
                }
            ]
        },
    )

    name: str
    description: str
    path: str | None = Field(description="Folder the bundle was loaded from.")
    created_at: str
    smokewatch_version: str = Field(description="smokewatch version that wrote the bundle.")
    format_version: int
    stages: dict[str, str] = Field(description="Names of the detector, extractor, default verifier head and bundle.")
    heads: list[str] = Field(description="Verifier heads a request may choose with the `head` field.")
    default_head: str
    parameters: dict[str, int] = Field(description="Parameter count of each network.")
    metrics: dict[str, Any] = Field(description="Scores the bundle's training measured on validation data.")
    provenance: dict[str, Any] = Field(description="How the models were made: data, seeds, commands, attribution.")
    sampling_fps: float | None = Field(description="Frames per second kept from videos unless a request sets fps.")
    threshold: float = Field(description="Verification threshold unless a request sets one.")
    device: str = Field(description="Device the engines run on.")
    load_seconds: float = Field(description="Seconds it took to load the bundle and build the engines.")
