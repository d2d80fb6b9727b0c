"""Live sources: RTSP cameras, HTTP MJPEG streams and snapshot URLs, video files, local webcams.

A source yields :class:`Grab` records only for frames its sampler wants, and converts only those
to RGB arrays (decoding an H.264 frame is cheap; converting and copying it is most of the cost).
Every failure is one :class:`SourceFailure` whose message never holds the URL's credentials.
Blocking reads are bounded by the stream's timeout, so a silent camera wakes its reader up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import av
import cv2
import numpy as np

from .config import file_path
from .redact import scrub

MAX_PART_BYTES = 32 << 20  # one MJPEG part or snapshot: far above any camera JPEG


class SourceFailure(Exception):
    """The source could not be opened or stopped delivering; the message is safe to show and log."""


@dataclass(frozen=True, slots=True)
class Grab:
    """One sampled frame."""

    image: np.ndarray  # H x W x 3 RGB uint8
    time_s: float  # stream time: seconds on the source's clock (file timestamps, or monotonic for live)
    wall: float  # Unix time the frame was taken from the source
    index: int  # frames received from the source so far, this one included


class IntervalSampler:
    """Keeps one frame per `interval_s` of stream time; frames in between are skipped (not dropped)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.next_s: float | None = None

    def due(self, time_s: float) -> bool:
        if self.next_s is not None and time_s < self.next_s - 1e-3 * self.interval_s:
            return False
        if self.next_s is None or time_s - self.next_s >= self.interval_s:
            self.next_s = time_s + self.interval_s  # late (or first): restart the grid from now
        else:
            self.next_s += self.interval_s
        return True

    def wait_s(self, time_s: float) -> float:
        return 0.0 if self.next_s is None else max(0.0, self.next_s - time_s)


@dataclass(frozen=True)
class SourceOptions:
    """How to open a source; only the fields that apply to its kind are used."""

    timeout_s: float = 10.0  # to connect, and to wait for data
    max_pixels: int = 40_000_000  # larger frames are refused
    transport: str = "tcp"  # RTSP: "tcp" (interleaved) or "udp"
    realtime: bool = True  # files: play at their own rate
    loop: bool = False  # files: start again at the end
    clock_offset_s: float = 0.0  # files: stream time of their first frame
    clock: Callable[[], float] | None = None  # live sources: stream time (one clock per stream, across reconnects)


class LiveSource:
    """Base: subclasses implement :meth:`grabs`. `received` counts every frame the source delivered."""

    def __init__(self, url: str, stop: threading.Event, options: SourceOptions) -> None:
        self.url = url
        self.options = options
        self.timeout_s = options.timeout_s
        self.stop = stop
        self.max_pixels = options.max_pixels
        self.clock = options.clock or _monotonic_clock()  # stream time of live sources
        self.received = 0
        self.detail = ""  # e.g. "640x360 h264", for the status page

    def grabs(self, sampler: IntervalSampler) -> Iterator[Grab]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def fail(self, what: str, exc: BaseException | str) -> SourceFailure:
        reason = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        return SourceFailure(scrub(f"{what}: {reason}", self.url))

    def _check_size(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise SourceFailure(f"frames are {width}x{height}, above the limit of {self.max_pixels} pixels")


def _monotonic_clock() -> Callable[[], float]:
    origin = time.monotonic()
    return lambda: time.monotonic() - origin


class AvSource(LiveSource):
    """RTSP (and rtsps) cameras and video files, decoded with PyAV (FFmpeg)."""

    def __init__(self, url: str, stop: threading.Event, options: SourceOptions) -> None:
        super().__init__(url, stop, options)
        self.is_file = not url.lower().startswith(("rtsp://", "rtsps://"))
        self.transport = options.transport
        self.realtime = options.realtime
        self.loop = options.loop
        self.offset_s = options.clock_offset_s  # files: stream time where the current pass starts
        self._container = None
        self.ended = False

    def _open(self):
        if self.is_file:
            target, options = str(file_path(self.url)), {}
        else:
            target = self.url
            options = {"rtsp_transport": self.transport, "timeout": str(int(self.timeout_s * 1e6))}
        try:
            container = av.open(target, mode="r", options=options, timeout=(self.timeout_s, self.timeout_s), metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise self.fail("cannot open", exc) from None
        if not container.streams.video:
            container.close()
            raise SourceFailure("the source holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        if ctx.width and ctx.height:
            self._check_size(ctx.width, ctx.height)
            self.detail = f"{ctx.width}x{ctx.height} {ctx.name}"
        self._container = container
        return container, stream

    def grabs(self, sampler: IntervalSampler) -> Iterator[Grab]:
        while not self.stop.is_set():
            container, stream = self._open()
            last_t = yield from self._one_pass(container, stream, sampler)
            self.close()
            if not self.is_file:
                raise SourceFailure("the camera ended the stream")
            if not self.loop or last_t is None:
                self.ended = True
                return
            self.offset_s = last_t + (1.0 / float(stream.average_rate) if stream.average_rate else 0.04)

    def _one_pass(self, container, stream, sampler: IntervalSampler) -> Iterator[Grab]:
        start_wall = time.monotonic()
        first_pts: float | None = None
        last_t: float | None = None
        try:
            for frame in container.decode(stream):
                if self.stop.is_set():
                    return last_t
                self.received += 1
                if self.is_file:
                    pts = frame.time if frame.time is not None else self.received / 25.0
                    if first_pts is None:
                        first_pts = pts
                    t = self.offset_s + max(0.0, pts - first_pts)
                    if self.realtime:  # play at the file's rate, like a camera
                        wait = (start_wall + (t - self.offset_s)) - time.monotonic()
                        if wait > 0 and self.stop.wait(wait):
                            return last_t
                else:
                    t = self.clock()
                last_t = t
                if not sampler.due(t):
                    continue
                self._check_size(frame.width, frame.height)
                image = frame.to_ndarray(format="rgb24")
                yield Grab(image, t, time.time(), self.received)
        except av.FFmpegError as exc:
            raise self.fail("reading failed", exc) from None
        return last_t

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not hide why it broke
                pass
            self._container = None


class HttpSource(LiveSource):
    """An HTTP(S) camera: an MJPEG stream (multipart/x-mixed-replace) read continuously, or a snapshot
    URL (one image per request) polled at the interval. Which one is told by the content type."""

    def __init__(self, url: str, stop: threading.Event, options: SourceOptions) -> None:
        super().__init__(url, stop, options)
        import httpx

        parts = urlsplit(url)
        auth = None
        if parts.username is not None:
            auth = httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        self._target = urlunsplit(parts)
        self._httpx = httpx
        self._client = httpx.Client(auth=auth, timeout=httpx.Timeout(self.timeout_s), follow_redirects=True)
        self.mode = ""

    def grabs(self, sampler: IntervalSampler) -> Iterator[Grab]:
        httpx = self._httpx
        while not self.stop.is_set():
            try:
                with self._client.stream("GET", self._target) as response:
                    if response.status_code != 200:
                        raise SourceFailure(f"the camera answered HTTP {response.status_code}")
                    ctype = response.headers.get("content-type", "").lower()
                    if ctype.startswith("multipart/"):
                        self.mode = "mjpeg"
                        yield from self._mjpeg(response, ctype, sampler)
                        raise SourceFailure("the camera ended the MJPEG stream")
                    self.mode = "snapshot"
                    body = self._read_limited(response)
            except httpx.HTTPError as exc:
                raise self.fail("HTTP request failed", exc) from None
            grab = self._grab(body)
            sampler.due(grab.time_s)
            yield grab
            if self.stop.wait(sampler.wait_s(self.clock())):
                return

    def _read_limited(self, response) -> bytes:
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_PART_BYTES:
                raise SourceFailure(f"the image is larger than {MAX_PART_BYTES} bytes")
        return bytes(body)

    def _grab(self, data: bytes) -> Grab:
        self.received += 1
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceFailure("the camera sent something that is not a JPEG or PNG image")
        self._check_size(image.shape[1], image.shape[0])
        self.detail = f"{image.shape[1]}x{image.shape[0]} {self.mode}"
        return Grab(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), self.clock(), time.time(), self.received)

    def _mjpeg(self, response, ctype: str, sampler: IntervalSampler) -> Iterator[Grab]:
        boundary = ""
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key == "boundary":
                boundary = value.strip('"')
        if not boundary:
            raise SourceFailure("the MJPEG stream declares no multipart boundary")
        for part in _multipart_parts(response.iter_bytes(), boundary.encode()):
            if self.stop.is_set():
                return
            if sampler.due(self.clock()):
                yield self._grab(part)
            else:
                self.received += 1

    def close(self) -> None:
        self._client.close()


def _multipart_parts(chunks: Iterator[bytes], boundary: bytes) -> Iterator[bytes]:
    """Bodies of the parts of a multipart stream: Content-Length bytes when the part says, else up to
    the next delimiter. Cameras differ on whether the declared boundary already holds the leading
    dashes, so both spellings are recognised."""
    candidates = (b"--" + boundary, boundary)
    marker: bytes | None = None
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while True:
            if len(buffer) > 2 * MAX_PART_BYTES:
                raise SourceFailure("an MJPEG part is above the size limit")
            if marker is None:
                marker = next((c for c in candidates if c in buffer), None)
                if marker is None:
                    break
            start = buffer.find(marker)
            head_end = buffer.find(b"\r\n\r\n", start) if start >= 0 else -1
            if head_end < 0:
                break
            headers = bytes(buffer[start + len(marker) : head_end]).decode("latin-1").lower()
            body_start = head_end + 4
            length = None
            for line in headers.split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip() == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length is not None:
                if length > MAX_PART_BYTES:
                    raise SourceFailure(f"an MJPEG part of {length} bytes is above the size limit")
                if len(buffer) < body_start + length:
                    break
                body = bytes(buffer[body_start : body_start + length])
                del buffer[: body_start + length]
            else:
                end = buffer.find(marker, body_start)
                if end < 0:
                    break
                body = bytes(buffer[body_start:end]).rstrip(b"\r\n")
                del buffer[:end]
            yield body


class WebcamSource(LiveSource):
    """A local camera through OpenCV (V4L2 on Linux): webcam:N or /dev/videoN."""

    def grabs(self, sampler: IntervalSampler) -> Iterator[Grab]:
        target: int | str = int(self.url.split(":", 1)[1]) if self.url.lower().startswith("webcam:") else self.url
        capture = cv2.VideoCapture(target)
        try:
            if not capture.isOpened():
                raise SourceFailure(f"cannot open webcam {self.url}")
            while not self.stop.is_set():
                if not capture.grab():
                    raise SourceFailure(f"webcam {self.url} stopped delivering frames")
                self.received += 1
                t = self.clock()
                if not sampler.due(t):
                    continue
                ok, image = capture.retrieve()
                if not ok or image is None:
                    raise SourceFailure(f"webcam {self.url} delivered an unreadable frame")
                self._check_size(image.shape[1], image.shape[0])
                self.detail = f"{image.shape[1]}x{image.shape[0]} webcam"
                yield Grab(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), t, time.time(), self.received)
        finally:
            capture.release()


def open_live(kind: str, url: str, stop: threading.Event, options: SourceOptions) -> LiveSource:
    """Open a source of the given kind (see :func:`service.streams.config.source_kind`)."""
    if kind in ("rtsp", "file"):
        if kind == "file" and not Path(file_path(url)).is_file():
            raise SourceFailure(f"{file_path(url).name} does not exist or is not a file")
        return AvSource(url, stop, options)
    if kind == "http":
        return HttpSource(url, stop, options)
    if kind == "webcam":
        return WebcamSource(url, stop, options)
    raise SourceFailure(f"unknown source kind {kind}")
