"""Routes that take clips: ``POST /detect`` answers with the verdict, ``POST /jobs`` with a job to poll.

Both go through :func:`accept`: take a place in the pool, stream the upload to disk, read the
options, check the file against the route's limits. Only a clip that passed all of that reaches
an inference worker; anything refused gives its place and its file back at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError

from service.settings import Settings, get_settings

from . import inference
from .errors import ApiError, error_responses
from .inference import Limits, Plan
from .pool import Cancelled, Slot
from .schemas import DetectOptions, DetectResult, JobStatus, OPTION_FIELDS
from .security import require_api_key
from .state import ReadyState, ServiceState, get_ready, get_state
from .uploads import FILE_FIELD, receive_upload

log = logging.getLogger("smokewatch.service")

router = APIRouter(tags=["detection"], dependencies=[Depends(require_api_key)])

_options_schema = DetectOptions.model_json_schema()
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "A video clip (MP4, MKV, AVI, WebM, ...) or a single image, recognised by "
                            "content, not by file name.",
                        },
                        **_options_schema["properties"],
                    },
                },
                "encoding": {FILE_FIELD: {"contentType": "application/octet-stream"}},
                "example": {FILE_FIELD: "(binary) ridge.mp4", "fps": 2, "head": "gru", "threshold": 0.6},
            }
        },
    }
}
_UPLOAD_ERRORS = (
    "malformed_multipart", "unauthorized", "upload_timeout", "upload_too_large", "frame_too_large", "not_multipart",
    "unsupported_media", "missing_file", "invalid_field", "empty_file", "truncated", "unreadable", "too_long",
    "busy", "not_ready",
)


def detect_limits(settings: Settings) -> Limits:
    return Limits(
        settings.max_duration_s, settings.max_frames, f" (send longer clips to POST /jobs, up to {settings.job_max_duration_s:g} s)"
    )


def job_limits(settings: Settings) -> Limits:
    return Limits(settings.job_max_duration_s, settings.job_max_frames)


def parse_options(fields: dict[str, str]) -> DetectOptions:
    try:
        # An empty field is what an HTML form sends for "not set".
        return DetectOptions.model_validate({k: v for k, v in fields.items() if v != ""})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ApiError("invalid_field", problems) from None


async def accept(request: Request, ready: ReadyState, settings: Settings, limits: Limits) -> tuple[Plan, Slot]:
    """A place in the pool and a checked upload; on any refusal both are given back."""
    pool = ready.pool
    slot = pool.reserve()
    if slot is None:
        wait = settings.retry_after_s
        raise ApiError(
            "busy",
            f"all {pool.capacity} places are taken ({pool.workers} working, {pool.capacity - pool.workers} waiting); retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    upload = None
    try:
        upload = await receive_upload(request, settings, ready.state.upload_root, OPTION_FIELDS)
        ready.metrics.upload_bytes.inc(upload.size)
        config = inference.request_config(ready.bundle, parse_options(upload.fields), limits)
        plan = await anyio.to_thread.run_sync(inference.plan, upload, config, limits, settings.max_pixels)
    except BaseException:
        slot.release()
        if upload is not None:
            upload.discard()
        raise
    return plan, slot


def _shutting_down(plan: Plan) -> ApiError:
    plan.upload.discard()
    return ApiError("not_ready", "the service is shutting down")


@router.post(
    "/detect",
    summary="Verdict on one clip or image",
    response_model=DetectResult,
    openapi_extra=UPLOAD_BODY,
    responses=error_responses(*_UPLOAD_ERRORS),
)
async def detect(
    request: Request,
    ready: Annotated[ReadyState, Depends(get_ready)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> dict:
    """Upload a clip as multipart field `file` and wait for the verdict (the JSON of
    `smokewatch detect`). Optional fields `fps`, `head` and `threshold` override the bundle's
    settings for this clip.

        curl -F file=@ridge.mp4 -F fps=2 http://127.0.0.1:8000/detect

    Clips longer than `max_duration_s` are refused (422 `too_long`): send them to `POST /jobs`.
    When every worker and queue place is taken the answer is 503 `busy` with `Retry-After`."""
    plan, slot = await accept(request, ready, settings, detect_limits(settings))
    frames = ready.metrics.frames
    try:
        future = ready.pool.submit(
            slot,
            lambda engine: inference.run(engine, plan, lambda _: frames.inc(), ready.pool.stopping.is_set),
            on_drop=plan.upload.discard,
        )
    except Cancelled:
        raise _shutting_down(plan) from None
    try:
        return await asyncio.wrap_future(future)
    except Cancelled:
        raise ApiError("not_ready", "the service shut down before the clip was processed") from None


@router.post(
    "/jobs",
    summary="Start a background job for a long clip",
    status_code=202,
    response_model=JobStatus,
    openapi_extra=UPLOAD_BODY,
    responses=error_responses(*_UPLOAD_ERRORS),
)
async def create_job(
    request: Request,
    response: Response,
    ready: Annotated[ReadyState, Depends(get_ready)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> JobStatus:
    """Same upload and fields as `POST /detect`, with the job limits (`job_max_duration_s`). The
    answer comes as soon as the upload is checked: 202 with the job's id (also in `Location`);
    poll `GET /jobs/{id}` for progress and the result.

        curl -F file=@day.mp4 http://127.0.0.1:8000/jobs"""
    plan, slot = await accept(request, ready, settings, job_limits(settings))
    job = ready.jobs.create(plan.upload.filename, plan.expected_frames)
    frames = ready.metrics.frames
    stopping = ready.pool.stopping

    def work(engine) -> None:  # noqa: ANN001 - Engine, on a worker thread
        job.start()

        def on_frame(_: object) -> None:
            job.frames_processed += 1
            frames.inc()

        try:
            job.succeed(inference.run(engine, plan, on_frame, stopping.is_set))
        except ApiError as exc:
            job.fail(exc.code, exc.message)
        except Cancelled as exc:
            job.fail("not_ready", str(exc))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            job.fail("internal", f"internal error ({type(exc).__name__}); the server log has the details")

    def dropped() -> None:
        job.fail("not_ready", "the service shut down before the job started")
        plan.upload.discard()

    try:
        ready.pool.submit(slot, work, on_drop=dropped)
    except Cancelled:
        job.fail("not_ready", "the service is shutting down")
        raise _shutting_down(plan) from None
    response.headers["Location"] = f"/jobs/{job.id}"
    return job.view(ready.jobs.ttl_s)


@router.get(
    "/jobs/{job_id}",
    summary="Status, progress and result of a job",
    response_model=JobStatus,
    responses=error_responses("unauthorized", "job_not_found", "invalid_request"),
)
async def get_job(job_id: str, state: Annotated[ServiceState, Depends(get_state)]) -> JobStatus:
    """Progress counts processed frames against the frames the sampler will keep. A finished job
    stays here for `job_ttl_s` seconds (see `expires_at`), polled or not; after that, 404."""
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError("job_not_found", f"no job {job_id} (never created, or finished more than {state.jobs.ttl_s:g} s ago)")
    return job.view(state.jobs.ttl_s)
