"""Frame sources: video files, folders of frames, single images.

A source decides what it is by content, never by file name (a text file named .mp4 is not a
video). Everything that can go wrong with a user's file surfaces as one :class:`SourceError`
with a readable message. Frames the sampler does not want are decoded (video codecs need them)
but never converted to RGB arrays, which is most of the decode cost.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import SourceError
from .records import Frame, SourceInfo

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: above any lookout camera, below decompression bombs

KeepFn = Callable[[int, float], bool]


def _keep_all(index: int, time_s: float) -> bool:
    return True


class FrameSource:
    """Base for finite sources. Iterate with :meth:`frames`; `frames_read` counts every frame decoded."""

    info: SourceInfo

    def __init__(self) -> None:
        self.frames_read = 0

    def frames(self, keep: KeepFn = _keep_all) -> Iterator[Frame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        """Release file handles; sources are also closed when their iteration ends."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSource(FrameSource):
    """A video file decoded with PyAV (FFmpeg); frame times come from presentation timestamps."""

    def __init__(self, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.path = path
        try:
            self._container = av.open(str(path), mode="r", metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            container = _container_signature(path)
            if container:
                raise SourceError(
                    f"{path.name} looks like {container} video but cannot be opened: it is truncated "
                    f"or corrupt ({_ffmpeg_reason(exc)})",
                    "truncated",
                ) from None
            raise SourceError(
                f"{path.name} is not a readable video or image ({_ffmpeg_reason(exc)})", "not_media"
            ) from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{path.name} holds no video stream", "not_media")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._stream = stream
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            self._container.close()
            raise SourceError(f"{path.name} has a video stream without a frame size", "not_media")
        if width * height > max_pixels:
            self._container.close()
            raise SourceError(
                f"{path.name} frames are {width}x{height}, above the limit of {max_pixels} pixels", "too_large"
            )
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        frame_count = stream.frames or None
        if frame_count is None and duration and fps:
            frame_count = int(round(duration * fps))
        self.info = SourceInfo(
            path=str(path),
            kind="video",
            width=width,
            height=height,
            fps=fps,
            frame_count=frame_count,
            duration_s=duration,
        )

    def frames(self, keep: KeepFn = _keep_all) -> Iterator[Frame]:
        fps = self.info.fps or 25.0
        first_time: float | None = None
        index = -1
        try:
            for av_frame in self._container.decode(self._stream):
                index += 1
                self.frames_read = index + 1
                t = av_frame.time
                if t is None:
                    t = index / fps
                if first_time is None:
                    first_time = t
                t = max(0.0, t - first_time)
                if not keep(index, t):
                    continue
                image = av_frame.to_ndarray(format="rgb24")
                yield Frame(index=index, time_s=t, image=image)
        except av.FFmpegError as exc:
            raise SourceError(
                f"{self.path.name} is corrupt or truncated: decoding failed after {self.frames_read} "
                f"frames ({_ffmpeg_reason(exc)})",
                "truncated",
            ) from None
        finally:
            self.close()
        if index < 0:
            raise SourceError(f"{self.path.name} holds no decodable frames", "empty")
        declared = self.info.frame_count
        if declared and self.frames_read < declared - max(2, int(0.02 * declared)):
            raise SourceError(
                f"{self.path.name} is truncated: its header declares {declared} frames but only "
                f"{self.frames_read} could be decoded",
                "truncated",
            )

    def close(self) -> None:
        self._container.close()


class FrameFolderSource(FrameSource):
    """A folder of images sorted by file name. Frame times come from the file names when every
    name carries a capture time (HPWREN's `..._2020_06_11T19_56_01.jpg`, FIgLib's
    `<epoch>_<offset>.jpg`); otherwise frame i is taken `interval_s * i` seconds after the first."""

    def __init__(self, path: Path, interval_s: float = 1.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "empty")
        self.max_pixels = max_pixels
        width, height = _image_size(self.files[0], max_pixels)
        self.times = _times_from_names(self.files) or [i * interval_s for i in range(len(self.files))]
        duration = self.times[-1]
        self.info = SourceInfo(
            path=str(path),
            kind="frames",
            width=width,
            height=height,
            fps=(len(self.files) - 1) / duration if duration > 0 else 1.0 / interval_s,
            frame_count=len(self.files),
            duration_s=duration,
        )

    def frames(self, keep: KeepFn = _keep_all) -> Iterator[Frame]:
        size = (self.info.width, self.info.height)
        for index, file in enumerate(self.files):
            self.frames_read = index + 1
            t = self.times[index]
            if not keep(index, t):
                continue
            image = _read_image(file, self.max_pixels)
            if (image.shape[1], image.shape[0]) != size:
                # Cameras occasionally change resolution mid-sequence; tubes need one geometry.
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            yield Frame(index=index, time_s=t, image=image)


class ImageSource(FrameSource):
    """A single image, seen as a one-frame source (the verifier repeats it to fill its window)."""

    def __init__(self, path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__()
        self.path = path
        width, height = _image_size(path, max_pixels)
        self.max_pixels = max_pixels
        self.info = SourceInfo(
            path=str(path), kind="image", width=width, height=height, fps=None, frame_count=1, duration_s=0.0
        )

    def frames(self, keep: KeepFn = _keep_all) -> Iterator[Frame]:
        self.frames_read = 1
        if keep(0, 0.0):
            yield Frame(index=0, time_s=0.0, image=_read_image(self.path, self.max_pixels))


def open_source(
    path: str | Path, folder_interval_s: float = 1.0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> FrameSource:
    """Open a video file, a folder of frames or an image, deciding by content."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path} does not exist", "missing")
    if path.is_dir():
        return FrameFolderSource(path, interval_s=folder_interval_s, max_pixels=max_pixels)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}", "unreadable") from None
    if size == 0:
        raise SourceError(f"{path.name} is empty (0 bytes)", "empty")
    if _is_image(path):
        return ImageSource(path, max_pixels=max_pixels)
    return VideoFileSource(path, max_pixels=max_pixels)


def expected_kept_frames(info: SourceInfo, fps: float | None, stride: int = 1) -> int | None:
    """How many frames a sampler will keep from a source, for progress bars; None when unknown."""
    if info.frame_count is None:
        return None
    if info.kind == "video" and fps and info.fps and fps < info.fps:
        last_frame_time = (info.frame_count - 1) / info.fps  # the duration ends one frame later
        return max(1, int(math.floor(last_frame_time * fps + 1e-6)) + 1)
    if info.kind == "frames":
        return (info.frame_count + stride - 1) // stride
    return info.frame_count


_STAMP = re.compile(r"(\d{4})[-_](\d{2})[-_](\d{2})T(\d{2})[-_:](\d{2})[-_:](\d{2})")
_EPOCH = re.compile(r"^(\d{9,11})_[+-]\d+$")


def _times_from_names(files: list[Path]) -> list[float] | None:
    """Seconds since the first frame, read from capture times in the names; None unless every name
    has one and they never go backwards (then the names, not the folder order, would be wrong)."""
    stamps = []
    for file in files:
        if match := _STAMP.search(file.stem):
            try:
                stamps.append(dt.datetime(*(int(g) for g in match.groups())).timestamp())
            except ValueError:
                return None
        elif match := _EPOCH.match(file.stem):
            stamps.append(float(match.group(1)))
        else:
            return None
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        return None
    return [s - stamps[0] for s in stamps]


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return im.format is not None and getattr(im, "n_frames", 1) == 1
    except Image.DecompressionBombError:
        return True  # an image, and one that ImageSource will refuse as too large
    except (UnidentifiedImageError, OSError, ValueError, ImportError):
        return False


def _image_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """Size from the header alone, so a decompression bomb is refused before any pixel is decoded."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise SourceError(f"{path.name} declares an image far too large to decode", "too_large") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise SourceError(f"{path.name} is not a readable image", "not_media") from None
    if width * height > max_pixels:
        raise SourceError(
            f"{path.name} is {width}x{height}, above the limit of {max_pixels} pixels", "too_large"
        )
    return width, height


def _read_image(path: Path, max_pixels: int) -> np.ndarray:
    _image_size(path, max_pixels)
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path.name} is corrupt or truncated and cannot be decoded", "truncated")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _container_signature(path: Path) -> str | None:
    """Name of the video container the file's first bytes announce, if any (to tell truncated from foreign)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if head[4:8] == b"ftyp":
        return "an MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "a Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI"
    if head[:3] == b"FLV":
        return "an FLV"
    if head[:4] == b"\x00\x00\x01\xba":
        return "an MPEG program stream"
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[-1].strip() or type(exc).__name__
