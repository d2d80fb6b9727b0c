"""Routes for events: the history, one event with its snapshot and clip, and the live feed (SSE)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from service.settings import Settings, get_settings
from service.store import EventStore
from service.store.events import CLIP, SNAPSHOT
from service.streams.service import StreamService
from service.streams.views import EventView, event_view

from .errors import ApiError, error_responses
from .security import require_api_key_or_cookie
from .streams import JPEG_ANSWER, get_stream_service

router = APIRouter(tags=["events"], dependencies=[Depends(require_api_key_or_cookie)])

KEEPALIVE_S = 15.0


class EventList(BaseModel):
    """One page of events."""

    model_config = {"json_schema_extra": {"examples": [{"events": EventView.model_config["json_schema_extra"]["examples"], "next_before": 17}]}}

    events: list[EventView] = Field(description="Newest first.")
    next_before: int | None = Field(description="Pass as `before` for the next (older) page; null on the last page.")


def get_store(service: Annotated[StreamService, Depends(get_stream_service)]) -> EventStore:
    assert service.store is not None
    return service.store


@router.get(
    "/events",
    summary="Events, newest first",
    response_model=EventList,
    responses=error_responses("unauthorized", "invalid_request", "monitor_unavailable"),
)
async def list_events(
    store: Annotated[EventStore, Depends(get_store)],
    stream: Annotated[str | None, Query(description="Only this stream's events.")] = None,
    state: Annotated[Literal["open", "closed"] | None, Query(description="Only open or only closed events.")] = None,
    since: Annotated[float | None, Query(description="Only events active at or after this Unix time.")] = None,
    until: Annotated[float | None, Query(description="Only events opened at or before this Unix time.")] = None,
    before: Annotated[int | None, Query(ge=1, description="Only events with a smaller id (paging).")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Most events in one answer.")] = 50,
) -> EventList:
    """Filter by stream, state and time; page with `before`.

        curl 'http://127.0.0.1:8000/events?stream=ridge-north&state=open'"""
    records = await anyio.to_thread.run_sync(lambda: store.list_events(stream, state, since, until, before, limit + 1))
    more = len(records) > limit
    records = records[:limit]
    return EventList(events=[event_view(r) for r in records], next_before=records[-1].id if more else None)


@router.get(
    "/events/live",
    summary="Live feed of events and stream status (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: `event.opened`, `event.updated`, `event.reopened`, `event.closed` "
            "(data: an event) and `stream.status` (data: a stream's id, name and status).",
            "content": {"text/event-stream": {"example": 'id: 42\nevent: event.opened\ndata: {"id":17,"stream_id":"ridge-north",...}\n\n'}},
        },
        **error_responses("unauthorized", "invalid_request", "monitor_unavailable"),
    },
)
async def live(
    service: Annotated[StreamService, Depends(get_stream_service)],
    settings: Annotated[Settings, Depends(get_settings)],
    stream: Annotated[str | None, Query(description="Only messages about this stream.")] = None,
    last_event_id: Annotated[str | None, Header(description="Set by EventSource on reconnection: replays what was missed.")] = None,
) -> StreamingResponse:
    """Server-sent events, as they happen. Each response lasts `sse_max_s` seconds at most, then
    the client reconnects (browsers do so by themselves) and, with `Last-Event-ID`, gets what it
    missed: no message is lost across reconnections (the last few hundred are kept)."""
    hub = service.hub
    try:
        last_id = int(last_event_id) if last_event_id else None
    except ValueError:
        last_id = None
    subscription = hub.subscribe(last_id)

    def wanted(message) -> bool:  # noqa: ANN001 - hub.Message
        data = message.data
        return stream is None or data.get("stream_id", data.get("id")) == stream

    async def body() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.sse_max_s
        try:
            yield b"retry: 1000\n\n"
            for message in subscription.backlog:
                if wanted(message):
                    yield message.encode()
            while not hub.closed:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    message = await asyncio.wait_for(subscription.queue.get(), min(KEEPALIVE_S, left))
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if message is None:  # shutting down, or this client fell too far behind
                    break
                if wanted(message):
                    yield message.encode()
        finally:
            hub.unsubscribe(subscription)

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _event(store: EventStore, event_id: int):  # noqa: ANN202 - EventRecord
    record = store.get_event(event_id)
    if record is None:
        raise ApiError("event_not_found", f"no event {event_id}")
    return record


@router.get(
    "/events/{event_id}",
    summary="One event",
    response_model=EventView,
    responses=error_responses("unauthorized", "event_not_found", "invalid_request", "monitor_unavailable"),
)
async def get_event(event_id: int, store: Annotated[EventStore, Depends(get_store)]) -> EventView:
    """Times (Unix seconds) of first sight, confirmation, last sight and closing, scores, the regions
    of the latest update, and links to the snapshot and the clip."""
    return event_view(await anyio.to_thread.run_sync(_event, store, event_id))


def _media(store: EventStore, event_id: int, name: str, media_type: str) -> FileResponse:
    record = _event(store, event_id)
    path = store.media_file(record, name) if (record.has_snapshot if name == SNAPSHOT else record.has_clip) else None
    if path is None:
        what = "snapshot" if name == SNAPSHOT else "clip"
        raise ApiError("no_media", f"event {event_id} has no {what} (not written yet, or dropped by retention)")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/events/{event_id}/snapshot.jpg",
    summary="Annotated frame at the moment smoke was confirmed",
    response_class=FileResponse,
    responses={
        200: {"description": "JPEG.", **JPEG_ANSWER},
        **error_responses("unauthorized", "event_not_found", "no_media", "invalid_request", "monitor_unavailable"),
    },
)
async def snapshot(event_id: int, store: Annotated[EventStore, Depends(get_store)]) -> FileResponse:
    """The full-size frame on which the alert rule confirmed smoke, with the detector boxes, the
    verified regions with p(smoke), and the alert banner."""
    return await anyio.to_thread.run_sync(_media, store, event_id, SNAPSHOT, "image/jpeg")


@router.get(
    "/events/{event_id}/clip.mp4",
    summary="Short annotated clip around the moment smoke was confirmed",
    response_class=FileResponse,
    responses={
        200: {"description": "MP4 (H.264).", "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}, "example": "(MP4 bytes)"}}},
        **error_responses("unauthorized", "event_not_found", "no_media", "invalid_request", "monitor_unavailable"),
    },
)
async def clip(event_id: int, store: Annotated[EventStore, Depends(get_store)]) -> FileResponse:
    """`clip_frames_before` processed frames before the confirming one and `clip_frames_after` after
    it, annotated; written once the frames after have been seen (404 `no_media` until then)."""
    return await anyio.to_thread.run_sync(_media, store, event_id, CLIP, "video/mp4")
