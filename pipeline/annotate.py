"""Drawing results on frames and writing them as a video people can play (H.264 in MP4)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import SmokewatchError
from .records import FrameResult

# RGB colours
CONFIRMED = (230, 40, 40)
VERIFIED = (255, 140, 0)
REJECTED = (80, 200, 255)
DETECTION = (255, 255, 0)


def draw_result(result: FrameResult) -> np.ndarray:
    """A copy of the frame with detector boxes (thin) and verified regions (thick, with p(smoke))."""
    image = result.frame.image.copy()
    scale = max(image.shape[:2]) / 720
    thick = max(1, round(2 * scale))
    font = 0.5 * max(scale, 0.6)
    for det in result.detections:
        b = det.box
        cv2.rectangle(image, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), DETECTION, 1)
    for w in result.windows:
        colour = CONFIRMED if w.confirmed else VERIFIED if w.verified else REJECTED
        r = w.region
        cv2.rectangle(image, (int(r.x1), int(r.y1)), (int(r.x2), int(r.y2)), colour, thick)
        label = f"#{w.track_id} p={w.smoke_prob:.2f}" + (" SMOKE" if w.confirmed else "")
        y = int(r.y1) - 4 if r.y1 > 14 * scale else int(r.y2) + int(14 * scale)
        cv2.putText(image, label, (int(r.x1), y), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick, cv2.LINE_AA)
    stamp = f"frame {result.frame.index}  t={result.frame.time_s:.1f}s"
    cv2.putText(image, stamp, (8, int(22 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
    return image


class VideoWriter:
    """Writes RGB frames to an MP4 (H.264 when the FFmpeg build has it, MPEG-4 otherwise)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = Fraction(fps).limit_denominator(1000) if fps > 0 else Fraction(1)
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        w, h = self._size
        if image.shape[1] != w or image.shape[0] != h:
            image = cv2.resize(image, (w, h))
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, width: int, height: int) -> None:
        self._size = (width - width % 2, height - height % 2)  # yuv420p needs even sides
        try:
            self._container = av.open(str(self.path), mode="w")
        except av.FFmpegError as exc:
            raise SmokewatchError(f"cannot write video {self.path}: {exc}") from None
        for codec in ("libx264", "h264", "mpeg4"):
            try:
                stream = self._container.add_stream(codec, rate=self.fps)
                break
            except (av.FFmpegError, ValueError):
                continue
        else:
            raise SmokewatchError("no H.264 or MPEG-4 encoder is available in this FFmpeg build")
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        if stream.codec_context.name == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        self._stream = stream

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
