"""Routes for cameras: add, list, look at and remove monitored streams.

Stream URLs are shown only redacted (``rtsp://***@host/...``). File sources must lie inside a
folder of ``stream_folders``; anything else answers 403 ``path_not_allowed``, so the API cannot be
used to read arbitrary files of the server.
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response

from pipeline.errors import SmokewatchError
from service.streams.config import PathNotAllowed, StreamRequest, StreamSpec, make_id
from service.streams.monitor import Monitor, StreamWorker
from service.streams.service import StreamService
from service.streams.views import StreamView

from .errors import ApiError, error_responses
from .security import require_api_key, require_api_key_or_cookie

router = APIRouter(tags=["streams"])

_STREAM_EXAMPLE = StreamView.model_config["json_schema_extra"]["examples"][0]
JPEG_ANSWER = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}, "example": "(JPEG bytes)"}}}


def get_stream_service(request: Request) -> StreamService:
    """The monitoring service, for routes that need its store (events): 503 without one."""
    service: StreamService | None = getattr(request.app.state, "streams", None)
    if service is None or service.monitor is None:
        reason = service.error if service is not None and service.error else "monitoring is not started"
        raise ApiError("monitor_unavailable", f"stream monitoring is unavailable: {reason}")
    return service


def get_monitor(service: Annotated[StreamService, Depends(get_stream_service)]) -> Monitor:
    """The monitor, for the stream routes: 503 when it failed to start (the model did not load,
    invalid stream_overrides), so no stream is accepted that would wait in `starting` forever."""
    reason = service.unavailable
    if reason is not None:
        raise ApiError("monitor_unavailable", f"stream monitoring is unavailable: {reason}")
    assert service.monitor is not None
    return service.monitor


def _worker(monitor: Monitor, stream_id: str) -> StreamWorker:
    worker = monitor.get(stream_id)
    if worker is None:
        raise ApiError("stream_not_found", f"no stream '{stream_id}'")
    return worker


@router.post(
    "/streams",
    summary="Watch a camera or a video",
    status_code=201,
    response_model=StreamView,
    dependencies=[Depends(require_api_key)],
    responses=error_responses("unauthorized", "path_not_allowed", "stream_exists", "invalid_request", "invalid_stream", "monitor_unavailable"),
)
async def add_stream(body: StreamRequest, response: Response, monitor: Annotated[Monitor, Depends(get_monitor)]) -> StreamView:
    """Start watching a stream: RTSP, HTTP MJPEG or snapshot URL, a video file inside an allowed
    folder (`loop: true` for demos), or a local webcam. Streams added here are kept across restarts.

        curl -X POST -H 'Content-Type: application/json' \\
             -d '{"name": "Ridge north", "url": "rtsp://viewer:secret@10.0.0.5/stream1", "interval_s": 5}' \\
             http://127.0.0.1:8000/streams

    Frames are taken every `interval_s` seconds; `alert` overrides the service's alert rule."""
    stream_id = make_id(body, set(monitor.workers))
    spec = StreamSpec.model_validate({**body.model_dump(exclude_unset=True), "id": stream_id})
    try:
        worker = await anyio.to_thread.run_sync(monitor.add, spec, "api")
    except KeyError:
        raise ApiError("stream_exists", f"a stream '{stream_id}' exists already; DELETE it first or choose another id") from None
    except PathNotAllowed as exc:
        raise ApiError("path_not_allowed", str(exc)) from None
    except SmokewatchError as exc:
        raise ApiError("invalid_stream", str(exc)) from None
    response.headers["Location"] = f"/streams/{stream_id}"
    return worker.view()


@router.get(
    "/streams",
    summary="Every stream and its status",
    response_model=list[StreamView],
    dependencies=[Depends(require_api_key_or_cookie)],
    responses={
        200: {"description": "Every stream.", "content": {"application/json": {"example": [_STREAM_EXAMPLE]}}},
        **error_responses("unauthorized", "monitor_unavailable"),
    },
)
async def list_streams(monitor: Annotated[Monitor, Depends(get_monitor)]) -> list[StreamView]:
    """State (online, offline, ...), frames per second, frames dropped, reconnects, last frame time,
    camera condition (dark, frozen) and the open alert of every stream, in the order they were added."""
    return [w.view() for w in monitor.list()]


@router.get(
    "/streams/{stream_id}",
    summary="One stream and its status",
    response_model=StreamView,
    dependencies=[Depends(require_api_key_or_cookie)],
    responses=error_responses("unauthorized", "stream_not_found", "invalid_request", "monitor_unavailable"),
)
async def get_stream(stream_id: str, monitor: Annotated[Monitor, Depends(get_monitor)]) -> StreamView:
    """The stream's settings (URL redacted) and status; `status.open_event_id` names its open alert."""
    return _worker(monitor, stream_id).view()


@router.delete(
    "/streams/{stream_id}",
    summary="Stop watching a stream",
    status_code=204,
    dependencies=[Depends(require_api_key)],
    responses=error_responses("unauthorized", "stream_not_found", "invalid_request", "monitor_unavailable"),
)
async def delete_stream(stream_id: str, monitor: Annotated[Monitor, Depends(get_monitor)]) -> Response:
    """Stops the stream and closes its open alert (reason: the stream was removed). Its events stay.
    A stream from the streams file comes back at the next start unless removed from the file."""
    if not await anyio.to_thread.run_sync(monitor.remove, stream_id):
        raise ApiError("stream_not_found", f"no stream '{stream_id}'")
    return Response(status_code=204)


@router.get(
    "/streams/{stream_id}/frame.jpg",
    summary="The stream's latest annotated frame",
    response_class=Response,
    dependencies=[Depends(require_api_key_or_cookie)],
    responses={
        200: {"description": "JPEG.", **JPEG_ANSWER},
        **error_responses("unauthorized", "stream_not_found", "no_frame", "invalid_request", "monitor_unavailable"),
    },
)
async def latest_frame(stream_id: str, monitor: Annotated[Monitor, Depends(get_monitor)]) -> Response:
    """The last processed frame with detector boxes, verified regions with p(smoke), and a red banner
    while an alert is open (what the dashboard shows)."""
    jpeg = _worker(monitor, stream_id).latest_jpeg
    if jpeg is None:
        raise ApiError("no_frame", f"stream '{stream_id}' has not processed a frame yet")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
