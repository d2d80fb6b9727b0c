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

import functools
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class Settings(BaseSettings):
    """Everything an operator may tune; every field can be set as ``SMOKEWATCH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SMOKEWATCH_", env_file=".env", extra="ignore")

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
        description="Inference threads, each with its own engine (networks are shared read-only). "
        "On a CPU, workers x torch_threads should not exceed the cores.",
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
