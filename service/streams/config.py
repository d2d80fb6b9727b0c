"""What a stream is: a typed, documented record, from the API, a YAML file or the command line.

Unknown keys are refused (a typo in a streams file fails loudly). Defaults that an operator sets
once for every camera (interval, alert rule, timeouts) live in the service settings; a stream
only carries what differs, and :func:`resolve` combines the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

from .redact import redact_url

if TYPE_CHECKING:
    from service.settings import Settings

SourceKind = Literal["rtsp", "http", "file", "webcam"]
STREAM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertOverrides(_Strict):
    """Per-stream changes to the alert rule; unset fields take the service's `alert_*` settings."""

    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="p(smoke) at or above which a window counts, while no alert is open; "
        "unset: alert_threshold, else the bundle's confirming threshold (see alert_threshold)."
    )
    confirm_k: int | None = Field(None, ge=1, description="An alert opens when k of the last n processed frames had a counting window.")
    confirm_n: int | None = Field(None, ge=1, description="n of the k-of-n rule.")
    hold_factor: float | None = Field(
        None, gt=0.0, le=1.0, description="While an alert is open a window counts from threshold x hold_factor (hysteresis)."
    )
    clear_s: float | None = Field(None, gt=0, description="An open alert closes after this many seconds without a counting window.")
    cooldown_s: float | None = Field(
        None, ge=0, description="Within this many seconds after an alert closed, smoke confirmed again reopens the same "
        "event instead of opening a new one (one event per fire)."
    )


class AlertPolicyConfig(_Strict):
    """The complete alert rule of one stream (settings and overrides combined)."""

    threshold: float = Field(ge=0.0, le=1.0, description="p(smoke) at or above which a window counts while no alert is open.")
    confirm_k: int = Field(ge=1, description="An alert opens when k of the last n processed frames had a counting window.")
    confirm_n: int = Field(ge=1, description="n of the k-of-n rule.")
    hold_factor: float = Field(gt=0.0, le=1.0, description="Threshold multiplier while an alert is open (hysteresis).")
    clear_s: float = Field(gt=0, description="Seconds without a counting window after which an open alert closes.")
    cooldown_s: float = Field(ge=0, description="Seconds after closing during which a new confirmation reopens the same event.")

    @model_validator(mode="after")
    def _k_le_n(self) -> "AlertPolicyConfig":
        if self.confirm_k > self.confirm_n:
            raise ValueError("confirm_k must not exceed confirm_n")
        return self


class StreamSpec(_Strict):
    """One camera or video to watch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"id": "ridge-north", "name": "Ridge north", "url": "rtsp://viewer:secret@10.0.0.5:554/stream1", "interval_s": 5},
                {"id": "demo", "url": "/srv/smokewatch/clips/plume.mp4", "loop": True, "interval_s": 1},
            ]
        },
    )

    id: str = Field(description="Short identifier: lower-case letters, digits, '-' and '_' (at most 64).")
    name: str | None = Field(None, max_length=200, description="Name shown on the dashboard; unset: the id.")
    url: str = Field(
        min_length=1,
        max_length=2048,
        description="rtsp://, rtsps://, http(s):// (an MJPEG stream or a snapshot image, told apart by the "
        "answer's content type), a video file path (or file://) inside one of the allowed folders, or a "
        "local webcam as webcam:N or /dev/videoN. Credentials in it are never shown or logged.",
    )
    interval_s: float | None = Field(
        None, gt=0, le=3600, description="Seconds between frames taken for inference; unset: stream_interval_s."
    )
    loop: bool = Field(False, description="File sources: start again at the end (for demos) instead of ending.")
    realtime: bool = Field(
        True,
        description="File sources: play at the file's own frame rate, like a camera (frames are dropped when "
        "inference lags). False: read as fast as inference allows, sampling by the file's timestamps, dropping nothing.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP only: carry RTP over the RTSP TCP connection or over UDP.")
    timeout_s: float | None = Field(
        None, gt=0, le=600, description="Seconds to wait for a connection or for data before giving up; unset: stream_timeout_s."
    )
    alert: AlertOverrides = Field(default_factory=AlertOverrides, description="Changes to the alert rule for this stream.")
    webhooks: list[str] = Field(
        default_factory=list, max_length=16, description="Webhook URLs for this stream's events, besides the service's webhook_urls."
    )

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not STREAM_ID.match(v):
            raise ValueError("id must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit")
        return v

    @field_validator("url")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        source_kind(v)  # raises ValueError with the reason
        return v

    @field_validator("webhooks")
    @classmethod
    def _http_hooks(cls, v: list[str]) -> list[str]:
        for url in v:
            check_webhook_url(url)
        return v

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.url)

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


class StreamRequest(StreamSpec):
    """The body of POST /streams: a stream, whose id may be left out (made from the name or host)."""

    id: str | None = Field(None, description="Short identifier; unset: made from the name (or the URL's host).")  # type: ignore[assignment]

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str | None) -> str | None:  # type: ignore[override]
        return None if v is None else StreamSpec._id_shape(v)


class StreamsFile(_Strict):
    """A YAML file of streams loaded at start (``streams_file`` setting)."""

    streams: list[StreamSpec] = Field(default_factory=list, description="The streams to watch.")

    @model_validator(mode="after")
    def _unique_ids(self) -> "StreamsFile":
        seen: set[str] = set()
        for spec in self.streams:
            if spec.id in seen:
                raise ValueError(f"stream id '{spec.id}' appears twice")
            seen.add(spec.id)
        return self


def source_kind(url: str) -> SourceKind:
    """What kind of source a URL names (ValueError when none)."""
    lowered = url.strip().lower()
    if lowered.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if lowered.startswith(("http://", "https://")):
        return "http"
    if re.fullmatch(r"webcam:\d{1,3}", lowered) or re.fullmatch(r"/dev/video\d{1,3}", lowered):
        return "webcam"
    if lowered.startswith("file://") or "://" not in lowered:
        return "file"
    scheme = lowered.split("://", 1)[0]
    raise ValueError(f"unsupported URL scheme '{scheme}' (use rtsp, rtsps, http, https, a file path or webcam:N)")


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"webhook URL {redact_url(url)} must be http:// or https:// with a host")
    return url


def file_path(url: str) -> Path:
    """The path a file source names (file:// URLs or plain paths)."""
    if url.lower().startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    return Path(url)


class PathNotAllowed(ValueError):
    """A file source outside the folders the operator allowed."""


def check_file_allowed(url: str, folders: list[Path]) -> Path:
    """The resolved path of a file source, or PathNotAllowed when it is outside every allowed folder
    (symbolic links and '..' are resolved first, so neither escapes)."""
    path = file_path(url).expanduser().resolve()
    if not folders:
        raise PathNotAllowed("file sources are disabled: no folder is allowed (setting stream_folders)")
    for folder in folders:
        if path.is_relative_to(folder.expanduser().resolve()):
            return path
    raise PathNotAllowed(f"{path} is outside the folders allowed for file sources")


@dataclass(frozen=True)
class Resolved:
    """A stream spec with every default filled in from the settings."""

    spec: StreamSpec
    interval_s: float
    timeout_s: float
    policy: AlertPolicyConfig
    webhooks: tuple[str, ...]


def resolve(spec: StreamSpec, settings: "Settings", bundle_threshold: float) -> Resolved:
    a = spec.alert
    base_threshold = settings.alert_threshold if settings.alert_threshold is not None else bundle_threshold
    try:
        policy = AlertPolicyConfig(
            threshold=a.threshold if a.threshold is not None else base_threshold,
            confirm_k=a.confirm_k or settings.alert_confirm_k,
            confirm_n=a.confirm_n or settings.alert_confirm_n,
            hold_factor=a.hold_factor or settings.alert_hold_factor,
            clear_s=a.clear_s or settings.alert_clear_s,
            cooldown_s=a.cooldown_s if a.cooldown_s is not None else settings.alert_cooldown_s,
        )
    except ValidationError as exc:
        raise ConfigError(f"stream {spec.id}: invalid alert rule: {_problems(exc)}") from None
    hooks = tuple(dict.fromkeys([*settings.webhook_urls, *spec.webhooks]))
    return Resolved(
        spec=spec,
        interval_s=spec.interval_s or settings.stream_interval_s,
        timeout_s=spec.timeout_s or settings.stream_timeout_s,
        policy=policy,
        webhooks=hooks,
    )


def load_streams_file(path: Path) -> list[StreamSpec]:
    """Read a streams YAML file; every problem becomes one ConfigError that names the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"streams file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"streams file {path} is not valid YAML: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"streams file {path} must hold a mapping with a 'streams' list")
    try:
        return StreamsFile.model_validate(data).streams
    except ValidationError as exc:
        raise ConfigError(f"invalid streams file {path}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    # Input values are left out: they may be URLs with credentials.
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())


def make_id(request: StreamRequest, taken: set[str]) -> str:
    """An id for a stream posted without one: from its name, else the URL's host or file name."""
    if request.id:
        return request.id
    base = request.name or ""
    if not base:
        if request.kind == "file":
            base = file_path(request.url).stem
        elif request.kind == "webcam":
            base = "webcam-" + re.sub(r"\D", "", request.url)
        else:
            base = (urlsplit(request.url).hostname or "camera").split(".")[0]
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:56] or "camera"
    if not slug[0].isalnum():
        slug = "s" + slug
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}-{n}", n + 1
    return candidate
