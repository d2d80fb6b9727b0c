"""Writing a synthetic dataset: videos, manifest, per-frame YOLO boxes, a contact sheet.

    OUT/manifest.csv                  path,label,smoke_from,smoke_to (the DESIGN manifest)
    OUT/clips/synth_00012.mp4         H.264, compressed like a camera stream
    OUT/labels/synth_00012/000034.txt YOLO boxes of frame 34 (class 0 = smoke; empty file = none)
    OUT/plans.jsonl                   what each clip holds (scene, plumes, distractors, camera)
    OUT/contact_sheet.png             one frame per clip with its boxes, to look at

Clips are rendered in parallel processes; each depends only on (seed, index), so the output is
the same whatever the number of workers.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from .clip import ClipRenderer, plan_clip


@dataclass(frozen=True)
class SynthRequest:
    """What to generate."""

    out: Path
    clips: int
    seed: int
    size: tuple[int, int] | None = None
    frames: int = 48
    fps: float = 8.0
    workers: int = 2
    kind: str | None = None  # force one kind ("smoke", "smoke+negatives", "negatives")
    style: str = "classic"  # "lookout": summit cameras, fisheye lenses, wind-sheared hazy plumes
    landmarks: float = 0.0  # share of clips that also show pale landmarks (trunks, rock, masts); 0 as before


@dataclass(frozen=True)
class ClipRecord:
    """One written clip, as the manifest and contact sheet need it."""

    name: str
    path: str
    label: str
    smoke_from: int | None
    smoke_to: int | None
    frames: int
    plan: dict
    thumb: np.ndarray  # a small RGB frame with boxes drawn


def clip_name(index: int) -> str:
    return f"synth_{index:05d}"


def render_clip_to_disk(request: SynthRequest, index: int) -> ClipRecord:
    plan = plan_clip(request.seed, index, request.size, request.frames, request.fps, request.kind, request.style,
                     request.landmarks)
    name = clip_name(index)
    video_path = request.out / "clips" / f"{name}.mp4"
    label_dir = request.out / "labels" / name
    label_dir.mkdir(parents=True, exist_ok=True)
    smoke_frames: list[int] = []
    best_thumb, best_area = None, -1.0
    with av.open(str(video_path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(request.fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = plan.width - plan.width % 2, plan.height - plan.height % 2, "yuv420p"
        # x264's macroblock-tree rate control encoded the same frames differently from one run to
        # the next (up to 23 grey levels on 13 % of a frame's pixels), so a seed did not give the
        # same clips; without it CRF is repeatable. Its output also depends on the thread count,
        # which x264 picks from the machine's cores: one thread makes it the same everywhere, and
        # costs nothing here, where each worker process has a core.
        stream.options = {"crf": str(plan.camera.crf), "preset": "veryfast", "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        renderer = ClipRenderer(plan)
        for t, (image, boxes) in enumerate(renderer.frames()):
            image = image[: stream.height, : stream.width]
            lines = []
            for x1, y1, x2, y2 in boxes:
                x2, y2 = min(x2, stream.width), min(y2, stream.height)
                if x2 - x1 < 1 or y2 - y1 < 1:
                    continue
                cx, cy = (x1 + x2) / 2 / stream.width, (y1 + y2) / 2 / stream.height
                w, h = (x2 - x1) / stream.width, (y2 - y1) / stream.height
                lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            (label_dir / f"{t:06d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            if lines:
                smoke_frames.append(t)
            area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes)
            if t == plan.frames * 2 // 3 and best_area < 0 or area > best_area and t >= plan.frames // 2:
                best_area, best_thumb = area, _thumbnail(image, boxes, plan.label)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    label = "smoke" if smoke_frames else "no_smoke"
    smoke_from = smoke_frames[0] if smoke_frames else None
    smoke_to = smoke_frames[-1] if smoke_frames and smoke_frames[-1] < plan.frames - 1 else None
    return ClipRecord(name, f"clips/{name}.mp4", label, smoke_from, smoke_to, plan.frames, plan.describe(), best_thumb)


def _thumbnail(image: np.ndarray, boxes, label: str, width: int = 240) -> np.ndarray:
    shown = image.copy()
    for x1, y1, x2, y2 in boxes:
        cv2.rectangle(shown, (int(x1), int(y1)), (int(x2), int(y2)), (255, 40, 40), max(1, image.shape[1] // 320))
    scale = width / image.shape[1]
    thumb = cv2.resize(shown, (width, int(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.putText(thumb, label, (4, thumb.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return thumb


def _worker(args: tuple[SynthRequest, int]) -> ClipRecord:
    cv2.setNumThreads(1)  # one process per core already
    return render_clip_to_disk(*args)


def write_dataset(request: SynthRequest, progress: bool | None = None) -> list[ClipRecord]:
    """Render every clip and write manifest, plans and contact sheet. Returns the clip records."""
    out = request.out
    (out / "clips").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    jobs = [(request, i) for i in range(request.clips)]
    bar = tqdm(total=request.clips, unit="clip", desc="synth", disable=None if progress is None else not progress)
    records: list[ClipRecord] = []
    if request.workers > 1 and request.clips > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(request.workers) as pool:
            for record in pool.imap(_worker, jobs):
                records.append(record)
                bar.update(1)
    else:
        for job in jobs:
            records.append(render_clip_to_disk(*job))
            bar.update(1)
    bar.close()

    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "smoke_from", "smoke_to"])
        for r in records:
            writer.writerow([r.path, r.label, "" if r.smoke_from is None else r.smoke_from, "" if r.smoke_to is None else r.smoke_to])
    with (out / "plans.jsonl").open("w") as fh:
        for r in records:
            fh.write(json.dumps({"name": r.name, "label": r.label, "smoke_from": r.smoke_from, **r.plan}) + "\n")
    write_contact_sheet(records, out / "contact_sheet.png")
    return records


def write_contact_sheet(records: list[ClipRecord], path: Path, columns: int = 8, max_clips: int = 64) -> None:
    thumbs = [r.thumb for r in records[:max_clips]]
    if not thumbs:
        return
    cell_h = max(t.shape[0] for t in thumbs)
    cell_w = max(t.shape[1] for t in thumbs)
    rows = math.ceil(len(thumbs) / columns)
    sheet = np.full((rows * (cell_h + 4), min(columns, len(thumbs)) * (cell_w + 4), 3), 20, np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        y, x = r * (cell_h + 4), c * (cell_w + 4)
        sheet[y : y + thumb.shape[0], x : x + thumb.shape[1]] = thumb
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
