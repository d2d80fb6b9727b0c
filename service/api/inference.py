"""What happens to an accepted upload, off the event loop: check it, then run the pipeline on it.

A check (:func:`plan`) opens the file only far enough to learn what it is and how long it lasts,
so a clip that breaks a limit is refused before it takes an inference worker. The run
(:func:`run`) happens on a worker thread with that worker's engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig, override_bundle_config
from pipeline.engine import Engine
from pipeline.errors import ConfigError, SourceError
from pipeline.records import FrameResult, SourceInfo
from pipeline.sources import expected_kept_frames, open_source

from .errors import ApiError, from_source_error
from .pool import Cancelled
from .schemas import DetectOptions
from .uploads import Upload


@dataclass(frozen=True)
class Limits:
    """How long a clip one route accepts may be."""

    duration_s: float
    frames: int
    hint: str = ""  # appended to the refusal, e.g. where longer clips may go


@dataclass
class Plan:
    """An upload that passed every check, and the config it will run with."""

    upload: Upload
    config: PipelineConfig
    info: SourceInfo
    expected_frames: int | None
    max_pixels: int


def request_config(bundle: ModelBundle, options: DetectOptions, limits: Limits) -> PipelineConfig:
    """The bundle's config with the request's overrides; the frame limit also caps the sampler, so a
    file that hides its length still cannot run longer than the route allows."""
    if options.head is not None and options.head not in bundle.heads:
        raise ApiError("invalid_field", f"head '{options.head}' is not in the loaded bundle (it has {', '.join(bundle.heads)})")
    overrides = options.overrides()
    cap = bundle.config.sampling.max_frames
    overrides["sampling.max_frames"] = min(cap, limits.frames) if cap else limits.frames
    try:
        return override_bundle_config(bundle.config, overrides)
    except ConfigError as exc:
        raise ApiError("invalid_field", str(exc)) from None


def plan(upload: Upload, config: PipelineConfig, limits: Limits, max_pixels: int) -> Plan:
    """Open the upload by content and check it against the limits (blocking: run it in a thread)."""
    try:
        with open_source(upload.path, folder_interval_s=config.sampling.folder_interval_s, max_pixels=max_pixels) as source:
            info = source.info
    except SourceError as exc:
        raise from_source_error(exc) from None
    if info.duration_s is not None and info.duration_s > limits.duration_s:
        raise ApiError(
            "too_long",
            f"{upload.filename} lasts {info.duration_s:.1f} s; this route accepts up to {limits.duration_s:g} s{limits.hint}",
        )
    if info.frame_count is not None and info.frame_count > limits.frames:
        raise ApiError(
            "too_long", f"{upload.filename} holds {info.frame_count} frames; this route accepts up to {limits.frames}{limits.hint}"
        )
    video = info.kind == "video"
    expected = expected_kept_frames(info, config.sampling.fps if video else None, config.sampling.folder_stride)
    if expected is not None and config.sampling.max_frames:
        expected = min(expected, config.sampling.max_frames)
    return Plan(upload, config, info, expected, max_pixels)


def engine_view(engine: Engine, config: PipelineConfig) -> Engine:
    """The worker's engine under one request's config, sharing its networks. Only the deciding
    head runs: the answer reports no other head."""
    return engine.with_config(config, heads=[config.verifier.head])


def run(
    engine: Engine,
    plan: Plan,
    on_frame: Callable[[FrameResult], None],
    should_stop: Callable[[], bool],
) -> dict:
    """Run the pipeline on a planned upload and return the answer document; the upload is deleted
    afterwards whatever happens, since nobody else will. Blocking: runs on a worker thread."""

    def frame_done(result: FrameResult) -> None:
        if should_stop():
            raise Cancelled("the service is shutting down")
        on_frame(result)

    try:
        source = open_source(
            plan.upload.path, folder_interval_s=plan.config.sampling.folder_interval_s, max_pixels=plan.max_pixels
        )
        result = engine_view(engine, plan.config).detect(source, on_frame=frame_done, progress=False)
    except SourceError as exc:  # a file can pass the check and still be cut short further in
        raise from_source_error(exc) from None
    finally:
        plan.upload.discard()
    document = result.to_json()
    document["source"]["path"] = plan.upload.filename  # a server path is neither the client's business nor useful
    return document
