"""Typed records of what monitoring shows: streams with their status, and events.

Used by the API (response models), the live feed, webhook bodies and ``smokewatch monitor``'s
output, so all of them say the same thing in the same words. Stream URLs appear only redacted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.store import EventRecord

from .config import AlertPolicyConfig, SourceKind

StreamState = Literal["starting", "connecting", "online", "offline", "ended", "failed", "stopped"]
Origin = Literal["api", "config", "cli"]


class StreamStatus(BaseModel):
    """How a stream is doing right now."""

    state: StreamState = Field(
        description="starting (waiting for the model), connecting, online (frames arrive), offline (failed or "
        "silent; reconnecting with back-off), ended (a file source reached its end), failed (a file source played "
        "once could not be read, several tries in a row; last_error says why), stopped (removed)."
    )
    online: bool = Field(description="True while frames arrive.")
    condition: Literal["unknown", "ok", "dark", "frozen"] = Field(
        description="What the camera sees: ok, dark (night, or a covered lens), frozen (the same image again "
        "and again: a stuck camera, or a very still scene; frames still go through the detector), unknown before "
        "the first frame."
    )
    fps_in: float = Field(description="Frames per second received from the source (before sampling), last few seconds.")
    fps: float = Field(description="Frames per second run through the pipeline, last few seconds.")
    frames_received: int = Field(description="Frames received from the source since the stream was added.")
    frames_processed: int = Field(description="Sampled frames run through the pipeline.")
    frames_dropped: int = Field(description="Sampled frames dropped because inference lagged (the stream's queue was full).")
    reconnects: int = Field(description="Times the stream was reopened after a failure or silence.")
    last_frame_at: float | None = Field(description="Unix time of the last frame taken from the source.")
    connected_at: float | None = Field(description="Unix time the current connection delivered its first frame.")
    processing_s: float | None = Field(description="Seconds from taking the last processed frame to its result (queueing included).")
    source: str = Field(description="What the source delivers, e.g. '1280x720 h264'.")
    last_error: str | None = Field(description="Why the stream last failed (credentials removed).")
    open_event_id: int | None = Field(description="The alert open on this stream, if any.")


class StreamView(BaseModel):
    """A stream as the API shows it: its settings (URL redacted) and its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ridge-north",
                    "name": "Ridge north",
                    "url": "rtsp://***@10.0.0.5:554/stream1",
                    "kind": "rtsp",
                    "origin": "api",
                    "interval_s": 5.0,
                    "loop": False,
                    "alert": {"threshold": 0.5, "confirm_k": 2, "confirm_n": 3, "hold_factor": 0.8, "clear_s": 120.0, "cooldown_s": 600.0},
                    "frame_url": "/streams/ridge-north/frame.jpg",
                    "status": {
                        "state": "online", "online": True, "condition": "ok", "fps_in": 10.0, "fps": 0.2,
                        "frames_received": 36000, "frames_processed": 720, "frames_dropped": 0, "reconnects": 1,
                        "last_frame_at": 1795772400.1, "connected_at": 1795768800.0, "processing_s": 0.41,
                        "source": "1280x720 h264", "last_error": None, "open_event_id": None,
                    },
                }
            ]
        }
    )

    id: str = Field(description="The stream's id.")
    name: str = Field(description="Name shown on the dashboard.")
    url: str = Field(description="The source, with user name, password and secret query values replaced by ***.")
    kind: SourceKind = Field(description="rtsp, http, file or webcam.")
    origin: Origin = Field(description="api (added with POST /streams, kept across restarts), config (the streams file) or cli.")
    interval_s: float = Field(description="Seconds between frames taken for inference.")
    loop: bool = Field(description="File sources: played in a loop.")
    alert: AlertPolicyConfig = Field(description="The alert rule in force (settings and the stream's overrides combined).")
    frame_url: str = Field(description="Path of the latest annotated frame (JPEG).")
    status: StreamStatus = Field(description="How the stream is doing.")


class WindowBox(BaseModel):
    track_id: int = Field(description="Candidate (smoke tube) the window belongs to.")
    box: list[float] = Field(description="Detector box [x1, y1, x2, y2] in source pixels.")
    smoke_prob: float = Field(description="p(smoke) of the window.")
    detector_conf: float = Field(description="Detector confidence of the box.")


class EventView(BaseModel):
    """One fire as smokewatch saw it: opened when the alert rule confirmed smoke, updated while smoke
    stays, closed after a quiet spell (reopened, not duplicated, if it flares up within the cool-down)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17, "stream_id": "ridge-north", "stream_name": "Ridge north", "state": "open",
                    "opened_at": 1795772400.1, "first_seen_at": 1795772390.0, "last_seen_at": 1795772460.2,
                    "updated_at": 1795772460.2, "closed_at": None, "close_reason": None, "reopened": 0,
                    "max_score": 0.93, "last_score": 0.88, "positive_frames": 13,
                    "boxes": [{"track_id": 3, "box": [402.0, 188.5, 451.0, 240.0], "smoke_prob": 0.88, "detector_conf": 0.41}],
                    "snapshot_url": "/events/17/snapshot.jpg", "clip_url": "/events/17/clip.mp4",
                }
            ]
        }
    )

    id: int = Field(description="Event id.")
    stream_id: str = Field(description="Stream the event happened on.")
    stream_name: str = Field(description="That stream's name when the event opened.")
    state: Literal["open", "closed"] = Field(description="open while smoke is seen (or was, within clear_s); closed after.")
    opened_at: float = Field(description="Unix time the alert rule confirmed smoke.")
    first_seen_at: float = Field(description="Unix time of the oldest of the frames that confirmed it.")
    last_seen_at: float = Field(description="Unix time of the latest frame that showed smoke.")
    updated_at: float = Field(description="Unix time of the latest change.")
    closed_at: float | None = Field(description="Unix time it closed; null while open.")
    close_reason: str | None = Field(description="Why it closed (no smoke for a while, stream removed, file ended).")
    reopened: int = Field(description="Times smoke came back within the cool-down and reopened it.")
    max_score: float = Field(description="Highest p(smoke) seen during the event.")
    last_score: float = Field(description="p(smoke) at the latest frame that showed smoke.")
    positive_frames: int = Field(description="Processed frames that showed smoke during the event.")
    boxes: list[WindowBox] = Field(description="The windows that showed smoke at the latest update.")
    snapshot_url: str | None = Field(description="Annotated frame at the moment smoke was confirmed (JPEG); null once retention dropped it.")
    clip_url: str | None = Field(description="Short annotated clip around that moment (MP4); null until written or once dropped.")


def event_view(record: EventRecord, base_url: str = "") -> EventView:
    return EventView(
        id=record.id,
        stream_id=record.stream_id,
        stream_name=record.stream_name,
        state=record.state,  # type: ignore[arg-type]
        opened_at=record.opened_at,
        first_seen_at=record.first_seen_at,
        last_seen_at=record.last_seen_at,
        updated_at=record.updated_at,
        closed_at=record.closed_at,
        close_reason=record.close_reason,
        reopened=record.reopened,
        max_score=round(record.max_score, 4),
        last_score=round(record.last_score, 4),
        positive_frames=record.positive_frames,
        boxes=[WindowBox(**b) for b in record.boxes],
        snapshot_url=f"{base_url}/events/{record.id}/snapshot.jpg" if record.has_snapshot else None,
        clip_url=f"{base_url}/events/{record.id}/clip.mp4" if record.has_clip else None,
    )
