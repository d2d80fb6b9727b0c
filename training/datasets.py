"""Dataset readers: manifest folders, FIgLib folders and YOLO image folders.

Everything the trainer and the evaluator read becomes a list of :class:`ManifestItem`, the
DESIGN manifest row (`path,label,smoke_from,smoke_to`) resolved and checked. A bad manifest
stops with a message naming its row, before hours of work are spent on the rows above it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import SmokewatchError
from pipeline.records import Box
from pipeline.sources import IMAGE_SUFFIXES, SourceError, open_source

LABELS = ("smoke", "no_smoke")
COLUMNS = ("path", "label", "smoke_from", "smoke_to")


class ManifestError(SmokewatchError):
    """A manifest (or a folder pretending to be one) is malformed; the message names the row."""


@dataclass(frozen=True)
class ManifestItem:
    """One labelled video or frame sequence."""

    path: Path
    label: str
    smoke_from: int | None = None
    smoke_to: int | None = None
    row: int = 0  # 1-based data row in manifest.csv (0 when not from a manifest)
    frame_count: int | None = None
    boxes_dir: Path | None = None  # per-frame YOLO label files (<frame:06d>.txt), when known

    @property
    def is_smoke(self) -> bool:
        return self.label == "smoke"

    def smoke_at(self, frame: int) -> bool:
        """Truth for one frame, in the item's own frame order."""
        if not self.is_smoke:
            return False
        start = self.smoke_from or 0
        end = self.smoke_to if self.smoke_to is not None else float("inf")
        return start <= frame <= end

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class YoloImage:
    """An image with its boxes (class already filtered to smoke), in source pixels after loading."""

    image: Path
    boxes_norm: list[tuple[float, float, float, float]] = field(default_factory=list)  # cx, cy, w, h in 0..1
    group: str = ""

    @property
    def positive(self) -> bool:
        return bool(self.boxes_norm)

    def boxes(self, width: int, height: int) -> list[Box]:
        return [
            Box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            for cx, cy, w, h in self.boxes_norm
        ]


@dataclass
class RealSet:
    """A real YOLO image folder and which of its classes mean smoke."""

    path: Path
    smoke_classes: set[int]

    @classmethod
    def parse(cls, text: str) -> "RealSet":
        """`DIR` or `DIR:1` (smoke class ids after a colon; default 0)."""
        path, _, classes = text.partition(":") if ":" in text and not Path(text).exists() else (text, "", "")
        ids = {int(c) for c in classes.split(",") if c.strip()} or {0}
        return cls(Path(path), ids)


def _int_or_none(value: str, column: str, where: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ManifestError(f"{where}: {column} must be a frame index, got '{value}'") from None
    if number < 0:
        raise ManifestError(f"{where}: {column} must not be negative, got {number}")
    return number


def read_manifest(folder: str | Path, check_frames: bool = True) -> list[ManifestItem]:
    """Read and check `folder/manifest.csv`. With `check_frames`, each item is opened to count its
    frames, so `smoke_from` beyond the end is caught up front."""
    folder = Path(folder)
    manifest = folder / "manifest.csv" if folder.is_dir() else folder
    if not manifest.is_file():
        raise ManifestError(f"no manifest.csv in {folder}")
    root = manifest.parent
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise ManifestError(f"{manifest}: missing column {', '.join(missing)} (expected {','.join(COLUMNS)})")
        rows = list(reader)
    if not rows:
        raise ManifestError(f"{manifest} lists no items")
    items = []
    for number, raw in enumerate(rows, start=1):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{manifest.name} row {number} ({row.get('path') or '?'})"
        if not row.get("path"):
            raise ManifestError(f"{where}: empty path")
        label = row.get("label", "")
        if label not in LABELS:
            raise ManifestError(f"{where}: unknown label '{label}' (use smoke or no_smoke)")
        path = (root / row["path"]).resolve()
        if not path.exists():
            raise ManifestError(f"{where}: {row['path']} does not exist")
        smoke_from = _int_or_none(row.get("smoke_from", ""), "smoke_from", where)
        smoke_to = _int_or_none(row.get("smoke_to", ""), "smoke_to", where)
        if label == "no_smoke" and (smoke_from is not None or smoke_to is not None):
            raise ManifestError(f"{where}: a no_smoke item cannot have smoke_from/smoke_to")
        if smoke_from is not None and smoke_to is not None and smoke_to < smoke_from:
            raise ManifestError(f"{where}: smoke_to {smoke_to} is before smoke_from {smoke_from}")
        frame_count = None
        if check_frames:
            try:
                with open_source(path) as source:
                    frame_count = source.info.frame_count
            except SourceError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            if frame_count is not None:
                for column, value in (("smoke_from", smoke_from), ("smoke_to", smoke_to)):
                    if value is not None and value >= frame_count:
                        raise ManifestError(f"{where}: {column} {value} is beyond the end ({frame_count} frames)")
        boxes_dir = _labels_dir_for(root, path)
        items.append(ManifestItem(path, label, smoke_from, smoke_to, number, frame_count, boxes_dir))
    return items


def _labels_dir_for(root: Path, path: Path) -> Path | None:
    """Per-frame boxes, where the layout provides them: synthetic sets (labels/<clip>/) and
    frame folders with a labels/ subfolder named like their images."""
    candidates = [root / "labels" / path.stem, path / "labels"] if path.is_dir() else [root / "labels" / path.stem]
    return next((c for c in candidates if c.is_dir()), None)


def frame_boxes(item: ManifestItem, frame: int, width: int, height: int) -> list[Box] | None:
    """Ground-truth smoke boxes of one frame, or None when the item has no per-frame boxes."""
    if item.boxes_dir is None:
        return None
    file = item.boxes_dir / f"{frame:06d}.txt"
    if not file.exists() and item.path.is_dir():
        images = sorted(p for p in item.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        file = item.boxes_dir / (images[frame].stem + ".txt") if frame < len(images) else file
    if not file.exists():
        return []
    return YoloImage(file, _parse_yolo(file, {0})).boxes(width, height)


def _parse_yolo(file: Path, classes: set[int]) -> list[tuple[float, float, float, float]]:
    boxes = []
    for line in file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        try:
            cls = int(float(parts[0]))
            cx, cy, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            continue
        if cls in classes and w > 0 and h > 0:
            boxes.append((cx, cy, w, h))
    return boxes


FIGLIB_NAME = re.compile(r"^(?P<epoch>\d+)_(?P<offset>[+-]\d+)$")


def read_figlib(root: str | Path) -> list[ManifestItem]:
    """FIgLib layout: one folder per fire, images named `<epoch>_<±offset seconds from ignition>.jpg`.
    Frames with offset >= 0 show smoke (FIgLib's convention); the folder is one `smoke` item."""
    root = Path(root)
    folders = [root] if _figlib_frames(root) else sorted(p for p in root.iterdir() if p.is_dir() and _figlib_frames(p))
    if not folders:
        raise ManifestError(f"{root} holds no FIgLib image folders (<epoch>_<±offset>.jpg)")
    items = []
    for folder in folders:
        frames = _figlib_frames(folder)
        offsets = [int(FIGLIB_NAME.match(f.stem)["offset"]) for f in frames]
        smoke_from = next((i for i, off in enumerate(offsets) if off >= 0), None)
        label = "smoke" if smoke_from is not None else "no_smoke"
        items.append(ManifestItem(folder.resolve(), label, smoke_from, None, 0, len(frames)))
    return items


def _figlib_frames(folder: Path) -> list[Path]:
    frames = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and FIGLIB_NAME.match(p.stem)]
    return sorted(frames, key=lambda p: int(FIGLIB_NAME.match(p.stem)["offset"]))


def read_yolo_folder(folder: str | Path, smoke_classes: set[int] | None = None) -> list[YoloImage]:
    """A YOLO image folder (`images/` and `labels/` side by side; optional `groups.csv` naming each
    image's source). `smoke_classes` are the class ids meaning smoke (default {0}; the CC BY
    fire-and-smoke set uses 1)."""
    folder = Path(folder)
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels_dir = folder / "labels" if (folder / "labels").is_dir() else folder
    images = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ManifestError(f"{folder} holds no images")
    groups = _read_groups(folder / "groups.csv")
    classes = smoke_classes if smoke_classes is not None else {0}
    out = []
    for image in images:
        rel = image.relative_to(images_dir).with_suffix(".txt")
        label = labels_dir / rel
        boxes = _parse_yolo(label, classes) if label.exists() else []
        out.append(YoloImage(image, boxes, groups.get(image.name, groups.get(image.stem, ""))))
    return out


def _read_groups(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        rows = list(reader)
    if rows and rows[0] and rows[0][0].strip().lower() in ("image", "file", "filename", "name", "path"):
        rows = rows[1:]
    return {Path(r[0].strip()).name: r[1].strip() for r in rows if len(r) >= 2}


def yolo_items(folder: str | Path, smoke_classes: set[int] | None = None) -> list[ManifestItem]:
    """A YOLO image folder as manifest items: one single-image item per image, smoke when boxed."""
    return [
        ManifestItem(img.image.resolve(), "smoke" if img.positive else "no_smoke", None, None, 0, 1)
        for img in read_yolo_folder(folder, smoke_classes)
    ]


def read_items(folder: str | Path, check_frames: bool = True) -> list[ManifestItem]:
    """Whatever layout a folder has: a manifest, a FIgLib folder, or a YOLO image folder."""
    folder = Path(folder)
    if (folder / "manifest.csv").is_file() or folder.name == "manifest.csv":
        return read_manifest(folder, check_frames)
    if folder.is_dir() and (folder / "images").is_dir():
        return yolo_items(folder)
    return read_figlib(folder)
