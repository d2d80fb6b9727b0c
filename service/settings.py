"""Settings of the HTTP service, read from ``SMOKEWATCH_*`` environment variables and an optional ``.env``.

They come from one cached function, :func:`get_settings`, which every route reaches through
``Depends(get_settings)``: a test (or ``smokewatch serve``) replaces them with
``app.dependency_overrides[get_settings]`` or by passing them to ``create_app(settings)``, and
never has to touch the process environment.

Pipeline settings (sampling rate, thresholds, ...) are not here: they belong to the model bundle's
``config.yaml``; a request may override the few that are safe per clip (``fps``, ``head``,
``threshold``).
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

MiB = 1 << 20

PREFIX = "SMOKEWATCH_"

# SMOKEWATCH_* names that are not settings of the service but may sit in the same .env file:
# docker-compose.yml reads these for itself (ports, image tag, mounted folders, the GPU service's
# device), and SMOKEWATCH_HOME is read by pipeline/yolo_env.py (the Dockerfile sets it).
# tests/service/test_settings.py checks that every SMOKEWATCH_ name in those files is known.
NOT_SETTINGS = frozenset(
    {"SMOKEWATCH_HOST_PORT", "SMOKEWATCH_GPU_HOST_PORT", "SMOKEWATCH_GPU_DEVICE", "SMOKEWATCH_MODELS_DIR",
     "SMOKEWATCH_CONFIG_DIR", "SMOKEWATCH_TAG", "SMOKEWATCH_HOME"}
)


class _CheckedDotEnv(PydanticBaseSettingsSource):
    """The .env source, refusing SMOKEWATCH_* names that are not settings (a misspelt name would
    otherwise be dropped without a word) and ignoring every other name (a .env file is often
    shared with docker compose and other tools)."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, "", False  # (unused: __call__ reads every field at once)

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        known = {PREFIX + name.upper() for name in fields}
        errors = []
        for key, value in self.dotenv.env_vars.items():
            name = key.upper()
            if name.startswith(PREFIX) and name not in known and name not in NOT_SETTINGS:
                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]}?" if close else " (see service/settings.py for the names)"
                errors.append({
                    "type": PydanticCustomError("unknown_setting", "not a smokewatch setting, in {file}{hint}",
                                                {"file": str(self.dotenv.env_file), "hint": hint}),
                    "loc": (name,),
                    "input": value,
                })
        if errors:
            raise ValidationError.from_exception_data(self.settings_cls.__name__, errors)
        # Only the values of fields: EnvSettingsSource's reading, without the .env source's extras.
        return EnvSettingsSource.__call__(self.dotenv)


class Settings(BaseSettings):
    """Everything an operator may tune; every field can be set as ``SMOKEWATCH_<FIELD>``.

    An unknown ``SMOKEWATCH_*`` name in the .env file, or an unknown keyword argument, is refused
    (ValidationError) rather than dropped; process environment variables are not checked."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(dotenv_settings, EnvSettingsSource)
        return init_settings, env_settings, _CheckedDotEnv(settings_cls, dotenv_settings), file_secret_settings

    # --- where and what -----------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address `smokewatch serve` binds to (0.0.0.0 for every interface).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `smokewatch serve` listens on.")
    model: Path | None = Field(
        None, description="Model bundle folder to load; unset: the bundle shipped with smokewatch."
    )
    device: str | None = Field(
        None, description="Device the engines run on ('cpu', 'cuda', 'cuda:N', 'auto'); unset: the bundle's choice."
    )

    # --- concurrency --------------------------------------------------------------------------
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Inference threads, each with its own engine holding its own copy of the networks, so memory "
        "grows with every worker. On a CPU, workers x torch_threads should not exceed the cores.",
    )
    queue_size: int = Field(
        4,
        ge=0,
        description="Accepted requests and jobs that may wait for a free worker; beyond it the "
        "service answers 503 with Retry-After instead of queueing without bound.",
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads for the whole process; unset: torch's default."
    )
    retry_after_s: int = Field(5, ge=1, description="Seconds a client is told to wait (Retry-After) when the queue is full.")

    # --- upload limits ------------------------------------------------------------------------
    max_upload_bytes: int = Field(
        512 * MiB, ge=1, description="Largest uploaded file, in bytes; larger uploads get 413."
    )
    upload_chunk_bytes: int = Field(
        1 * MiB, ge=4096, description="Upload bytes buffered in memory before they are written to disk."
    )
    upload_timeout_s: float = Field(
        300.0, gt=0, description="Longest time an upload may take to arrive; slower ones get 408."
    )
    upload_dir: Path | None = Field(
        None, description="Folder for uploads while they are processed; unset: the system's temporary folder."
    )
    max_pixels: int = Field(
        40_000_000, ge=1, description="Largest frame (width x height) decoded; larger frames get 413."
    )

    # --- clip limits --------------------------------------------------------------------------
    max_duration_s: float = Field(
        120.0, gt=0, description="Longest clip POST /detect accepts, in seconds; longer ones get 422."
    )
    max_frames: int = Field(
        3600,
        ge=1,
        description="Most frames a clip may hold for POST /detect (decoded frames, when the file says); "
        "also caps the frames kept by the sampler when the file does not say.",
    )
    job_max_duration_s: float = Field(
        1800.0, gt=0, description="Longest clip POST /jobs accepts, in seconds; longer ones get 422."
    )
    job_max_frames: int = Field(54_000, ge=1, description="Like max_frames, for POST /jobs.")

    # --- jobs ---------------------------------------------------------------------------------
    job_ttl_s: float = Field(
        3600.0, gt=0, description="Seconds a finished job's result is kept after it finishes, polled or not."
    )
    max_finished_jobs: int = Field(
        1000, ge=1, description="Most finished jobs kept at once; beyond it the oldest are forgotten early."
    )

    # --- access -------------------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None,
        description="When set, every route but /healthz and /readyz needs this value in the "
        "X-API-Key header; missing or wrong keys get 401.",
    )

    # --- stream monitoring (lists and mappings are given as JSON in the environment) -----------
    data_dir: Path | None = Field(
        None,
        description="Folder for the event database, snapshots and clips (one smokewatch process per folder); "
        "unset: $XDG_DATA_HOME/smokewatch or ~/.local/share/smokewatch.",
    )
    streams_file: Path | None = Field(
        None, description="YAML file of streams to watch from the start (a 'streams' list; see StreamSpec)."
    )
    stream_folders: list[Path] = Field(
        default_factory=list,
        description="Folders file sources may read from (JSON list); a file elsewhere is refused. Empty: no file sources.",
    )
    stream_workers: int = Field(
        1, ge=1, le=64, description="Inference lanes for streams, each with its own engine (its own copy of the networks: "
        "memory grows with every lane), sharing the streams round-robin."
    )
    stream_queue_size: int = Field(
        2, ge=1, le=64, description="Sampled frames that may wait per stream; when inference lags, the oldest is dropped and counted."
    )
    stream_interval_s: float = Field(5.0, gt=0, le=3600, description="Seconds between frames taken from a stream, unless the stream sets its own.")
    stream_timeout_s: float = Field(10.0, gt=0, le=600, description="Seconds to wait for a connection or data before a source counts as failed.")
    stream_stall_s: float = Field(
        20.0, gt=0, description="Watchdog: a stream that delivers no frame for this long is marked offline (Frigate uses 20 s)."
    )
    stream_backoff_s: float = Field(1.0, gt=0, description="First wait before reconnecting a failed stream; doubles with each failure.")
    stream_backoff_max_s: float = Field(60.0, gt=0, description="Longest wait between reconnection attempts.")
    stream_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Pipeline config overrides for monitoring, as dotted keys (JSON object), e.g. "
        '{"decision.threshold": 0.6, "detector.conf": 0.1}.',
    )
    alert_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="p(smoke) at or above which a window counts for the alert rule; unset: the "
        "bundle's confirming threshold. With a track scorer (decision.scorer_threshold, as in the default bundle) a "
        "window's p is the scorer's p for its region and the default is decision.scorer_threshold; without one, the "
        "deciding head's p and decision.threshold."
    )
    alert_confirm_k: int = Field(2, ge=1, description="An alert opens when k of the last n processed frames had a counting window.")
    alert_confirm_n: int = Field(3, ge=1, description="n of the k-of-n alert rule.")
    alert_hold_factor: float = Field(
        0.8, gt=0.0, le=1.0, description="While an alert is open, windows count from threshold x this factor (hysteresis, as Pyronear)."
    )
    alert_clear_s: float = Field(120.0, gt=0, description="An open alert closes after this many seconds without a counting window.")
    alert_cooldown_s: float = Field(
        600.0, ge=0, description="Smoke confirmed again within this many seconds after an alert closed reopens the same event."
    )
    dark_level: float = Field(20.0, ge=0, le=255, description="Mean grey level (0-255) below which a camera is reported dark (night).")
    frozen_diff: float = Field(
        1.0, ge=0, description="Largest grey-level change at any sampled pixel for two consecutive frames to count as the same "
        "image (a frozen camera repeats its image exactly)."
    )
    condition_frames: int = Field(
        12, ge=2, description="Consecutive sampled frames before a camera is reported dark or frozen (reported only; "
        "frames still go through the detector)."
    )
    clip_frames_before: int = Field(8, ge=1, le=300, description="Processed frames before the confirming one kept in an event's clip.")
    clip_frames_after: int = Field(8, ge=0, le=300, description="Processed frames after the confirming one added to an event's clip.")
    clip_fps: float = Field(2.0, gt=0, le=60, description="Playback rate of event clips, frames per second.")
    clip_max_side: int = Field(640, ge=64, le=4096, description="Longer side of event clip frames, in pixels (snapshots keep full size).")
    event_retention_days: float = Field(90.0, gt=0, description="Closed events older than this are deleted with their media.")
    event_max_media_mb: int = Field(
        2048, ge=1, description="When snapshots and clips weigh more than this (MiB), the media of the oldest closed events is dropped."
    )
    retention_interval_s: float = Field(3600.0, gt=0, description="Seconds between retention passes (one runs at start).")
    webhook_urls: list[str] = Field(
        default_factory=list, description="URLs that receive every event as a JSON POST (JSON list); streams may add their own."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="When set, webhook requests carry X-Smokewatch-Signature: sha256=<HMAC-SHA256 of the body>."
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Seconds a webhook receiver has to answer.")
    webhook_backoff_s: float = Field(2.0, gt=0, description="First wait before retrying a failed webhook; doubles with each failure.")
    webhook_backoff_max_s: float = Field(600.0, gt=0, description="Longest wait between webhook retries.")
    webhook_max_client_errors: int = Field(
        3, ge=1, description="A webhook refused with a 4xx (other than 408/425/429) this many times is given up."
    )
    webhook_give_up_s: float = Field(
        7 * 86400.0, gt=0, description="A webhook still undelivered (receiver down, 5xx) this long after its event is given up."
    )
    public_url: str | None = Field(
        None, description="Base URL of this service as webhook receivers reach it (for snapshot links); unset: http://host:port."
    )
    sse_max_s: float = Field(
        30.0, gt=0, description="Seconds a GET /events/live response stays open; clients reconnect with Last-Event-ID and miss nothing."
    )

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        xdg = os.environ.get("XDG_DATA_HOME")
        return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "smokewatch"

    @model_validator(mode="after")
    def _job_limits_cover_detect(self) -> "Settings":
        # /jobs exists for the long clips /detect refuses; a smaller job limit would be a trap.
        if self.job_max_duration_s < self.max_duration_s or self.job_max_frames < self.max_frames:
            raise ValueError("job_max_duration_s and job_max_frames must not be below max_duration_s and max_frames")
        return self


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
