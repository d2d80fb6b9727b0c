"""Smoke tubes: detector boxes linked across kept frames into candidates, and the windows to verify.

The tube builder sees only boxes and frame numbers, never pixels: it says *which* region of
*which* frames to crop, and the feature stage cuts them. A candidate's crop region is held still
while the box jitters inside it (and snapped to a grid), so the crops of consecutive windows are
identical and their features can be reused; it moves only when the plume outgrows it or drifts
away. Windows reach back over the last T kept frames, including those before the detector first
fired, because the onset of a plume is the most telling part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TubeConfig
from .records import Box, Detection, WindowRequest

Region = tuple[int, int, int, int]


@dataclass(slots=True)
class Track:
    """One candidate region followed across frames."""

    id: int
    box: Box
    conf: float
    region: Region
    first_seq: int
    last_seq: int
    hits: int = 1
    missed: int = 0
    last_window_seq: int | None = None


def expand_region(box: Box, config: TubeConfig, width: int, height: int) -> Region:
    """The crop region for a box: margin added, optionally squared, at least min_size, inside the frame, on the grid."""
    cx, cy = box.center
    w = box.width * (1 + 2 * config.margin)
    h = box.height * (1 + 2 * config.margin)
    if config.square:
        w = h = max(w, h)
    w = min(max(w, config.min_size), width)
    h = min(max(h, config.min_size), height)
    x1 = min(max(cx - w / 2, 0.0), width - w)
    y1 = min(max(cy - h / 2, 0.0), height - h)
    g = config.grid
    gx1, gy1 = int(math.floor(x1 / g) * g), int(math.floor(y1 / g) * g)
    gx2 = min(int(math.ceil((x1 + w) / g) * g), width)
    gy2 = min(int(math.ceil((y1 + h) / g) * g), height)
    return gx1, gy1, max(gx2, gx1 + 1), max(gy2, gy1 + 1)


def _region_area(r: Region) -> int:
    return (r[2] - r[0]) * (r[3] - r[1])


def _covered_fraction(inner: Region, outer: Region) -> float:
    w = min(inner[2], outer[2]) - max(inner[0], outer[0])
    h = min(inner[3], outer[3]) - max(inner[1], outer[1])
    if w <= 0 or h <= 0:
        return 0.0
    return (w * h) / max(_region_area(inner), 1)


class TubeBuilder:
    """Links boxes frame by frame and emits the windows due at each frame. One per source or stream."""

    def __init__(self, config: TubeConfig) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self._next_id = 0
        self._first_seq: int | None = None

    def update(self, seq: int, detections: list[Detection], width: int, height: int) -> list[WindowRequest]:
        """Feed the boxes of kept frame `seq` (consecutive integers); returns the windows due now."""
        if self._first_seq is None:
            self._first_seq = seq
        cfg = self.config
        detections = sorted(detections, key=lambda d: d.conf, reverse=True)
        matched_conf: dict[int, float] = {}

        pairs = sorted(
            (
                (det.box.iou(track.box), ti, di)
                for ti, track in enumerate(self.tracks)
                for di, det in enumerate(detections)
            ),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for iou, ti, di in pairs:
            if iou < cfg.link_iou or iou <= 0.0:
                break
            if ti in used_tracks or di in used_dets:
                continue
            used_tracks.add(ti)
            used_dets.add(di)
            track, det = self.tracks[ti], detections[di]
            track.box, track.conf = det.box, det.conf
            track.region = self._move_region(track.region, det.box, width, height)
            track.last_seq, track.hits, track.missed = seq, track.hits + 1, 0
            matched_conf[track.id] = det.conf

        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= cfg.max_missed]

        for di, det in enumerate(detections):
            if di in used_dets or len(self.tracks) >= cfg.max_tracks:
                continue
            region = expand_region(det.box, cfg, width, height)
            track = Track(self._next_id, det.box, det.conf, region, first_seq=seq, last_seq=seq)
            self._next_id += 1
            self.tracks.append(track)
            matched_conf[track.id] = det.conf

        requests = []
        for track in self.tracks:
            due = track.last_window_seq is None or seq - track.last_window_seq >= cfg.stride
            if not due:
                continue
            seqs = self._window_seqs(seq)
            if seqs is None:
                continue
            track.last_window_seq = seq
            requests.append(
                WindowRequest(
                    track_id=track.id,
                    seq=seq,
                    region=track.region,
                    frame_seqs=seqs,
                    box=track.box,
                    detector_conf=matched_conf.get(track.id, 0.0),
                )
            )
        return requests

    def _window_seqs(self, seq: int) -> tuple[int, ...] | None:
        t = self.config.window
        start = max(seq - t + 1, self._first_seq or 0)
        available = list(range(start, seq + 1))
        if len(available) < t:
            if not self.config.pad_short:
                return None
            available = [available[0]] * (t - len(available)) + available
        return tuple(available)

    def _move_region(self, region: Region, box: Box, width: int, height: int) -> Region:
        """Keep the region while the expanded box still fits it well; otherwise move to the new box."""
        candidate = expand_region(box, self.config, width, height)
        covered = _covered_fraction(candidate, region)
        not_too_big = _region_area(candidate) >= 0.4 * _region_area(region)
        if covered >= self.config.keep_cover and not_too_big:
            return region
        return candidate
