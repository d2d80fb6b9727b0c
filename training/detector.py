"""Training and scoring the smoke detector.

Training data is a YOLO dataset assembled in a work folder (outside the repository) from
synthetic clips (a few labelled frames per clip) and real YOLO image sets (smoke class remapped
to 0, other classes dropped). Real sets are split by source group, never by image: frames of one
video are near-duplicates and would leak into validation. Real images are linked, not copied.
ultralytics does the optimisation, offline and with its own progress bars.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import yaml
from tqdm import tqdm

from pipeline.detector import Detector
from pipeline.errors import SmokewatchError
from pipeline.yolo_env import prepare_ultralytics

from .datasets import ManifestItem, RealSet, YoloImage, read_manifest, read_yolo_folder
from .detector_job import best_epoch_metrics, ultralytics_train_args
from .metrics import BinaryScores, LocatedScores, average_precision, binary_scores, located_scores, match_boxes
from .splits import DETECTOR_VALIDATION_FRACTION, held_out, split_group


@dataclass
class DetectorDataset:
    """A YOLO dataset ready for ultralytics, with counts for the record."""

    data_yaml: Path
    counts: dict[str, int] = field(default_factory=dict)


def build_detector_dataset(
    work: Path,
    synth_dirs: list[Path],
    real_sets: list[RealSet],
    frames_per_clip: int = 6,
    max_real: int | None = None,
    val_fraction: float = DETECTOR_VALIDATION_FRACTION,
    seed: int = 0,
    progress: bool | None = None,
) -> DetectorDataset:
    work = Path(work).resolve()
    if work.exists():
        shutil.rmtree(work)
    for split in ("train", "val"):
        (work / split / "images").mkdir(parents=True)
        (work / split / "labels").mkdir(parents=True)
    counts = {"synthetic_train": 0, "synthetic_val": 0, "real_train": 0, "real_val": 0, "positive": 0, "negative": 0}
    rng = random.Random(seed)

    items: list[tuple[Path, ManifestItem]] = []
    for folder in synth_dirs:
        items += [(Path(folder), item) for item in read_manifest(folder, check_frames=False)]
    for root, item in tqdm(items, desc="detector data: synthetic", unit="clip", disable=None if progress is None else not progress):
        split = "val" if held_out(item.path.stem, val_fraction, seed) else "train"
        for frame_index, image in _pick_frames(item, frames_per_clip, rng):
            name = f"{root.name}_{item.path.stem}_{frame_index:06d}"
            cv2.imwrite(str(work / split / "images" / f"{name}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            label = item.boxes_dir / f"{frame_index:06d}.txt" if item.boxes_dir else None
            text = label.read_text() if label is not None and label.exists() else ""
            (work / split / "labels" / f"{name}.txt").write_text(text)
            counts[f"synthetic_{split}"] += 1
            counts["positive" if text.strip() else "negative"] += 1

    for real in real_sets:  # each set with its own smoke classes: class 0 is smoke in one, fire in another
        folder = real.path
        images = read_yolo_folder(folder, real.smoke_classes)
        if max_real is not None and len(images) > max_real:
            images = sorted(rng.sample(images, max_real), key=lambda i: i.image.name)
        for image in images:
            split = "val" if held_out(split_group(image), val_fraction, seed) else "train"
            name = f"{Path(folder).name}_{image.image.stem}"
            target = work / split / "images" / f"{name}{image.image.suffix.lower()}"
            os.symlink(image.image.resolve(), target)
            lines = [f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for cx, cy, w, h in image.boxes_norm]
            (work / split / "labels" / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            counts[f"real_{split}"] += 1
            counts["positive" if lines else "negative"] += 1

    data_yaml = work / "data.yaml"
    data_yaml.write_text(
        yaml.safe_dump({"path": str(work), "train": "train/images", "val": "val/images", "names": {0: "smoke"}})
    )
    return DetectorDataset(data_yaml, counts)


def _pick_frames(item: ManifestItem, count: int, rng: random.Random):
    """Frames of a synthetic clip worth training on: spread over its smoke frames (more of them)
    and over the rest (fewer), decoded once."""
    with av.open(str(item.path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    n = len(frames)
    smoke = [i for i in range(n) if item.smoke_at(i)]
    clear = [i for i in range(n) if not item.smoke_at(i)]
    picks = set(np.linspace(0, len(smoke) - 1, min(count, len(smoke))).astype(int).tolist()) if smoke else set()
    chosen = [smoke[i] for i in sorted(picks)]
    if clear:
        extra = max(1, count // (3 if smoke else 2))
        chosen += rng.sample(clear, min(extra, len(clear)))
    for index in sorted(set(chosen)):
        yield index, frames[index]


@dataclass
class DetectorTraining:
    """What a training run produced."""

    network: object  # ultralytics DetectionModel (float32, CPU)
    names: dict[int, str]
    run_dir: Path
    metrics: dict[str, float]
    args: dict


def train_detector(
    data: DetectorDataset,
    arch: str,
    imgsz: int,
    epochs: int,
    project: Path,
    hours: float | None = None,
    batch: int = 16,
    seed: int = 0,
    device: str = "cpu",
    workers: int = 2,
    patience: int = 30,
    resume_from: Path | None = None,
    warmup_epochs: float = 3.0,
) -> DetectorTraining:
    """Train with ultralytics from the architecture yaml (no pretrained weights exist here), or
    onward from a checkpoint of our own (`resume_from`, see `detector_job.save_start_checkpoint`)."""
    prepare_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import load_checkpoint

    project = Path(project).resolve()
    model = YOLO(str(resume_from) if resume_from else arch, task="detect")
    args = ultralytics_train_args(data.data_yaml, epochs, imgsz, project, batch=batch, device=device, workers=workers, seed=seed,
                                  patience=patience, start=resume_from, warmup_epochs=warmup_epochs, hours=hours)
    try:
        model.train(**args)
    except (FileNotFoundError, RuntimeError) as exc:
        raise SmokewatchError(f"detector training failed: {exc}") from None
    run_dir = project / "detector"
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        best = run_dir / "weights" / "last.pt"
    network, _ = load_checkpoint(str(best))
    names = network.names if isinstance(network.names, dict) else dict(enumerate(network.names))
    metrics = best_epoch_metrics(run_dir / "results.csv")
    return DetectorTraining(network.float().cpu(), {int(k): str(v) for k, v in names.items()}, run_dir, metrics, args)


@dataclass
class DetectorScores:
    """Image-level precision and recall at the operating threshold, box-level ones (which stay
    meaningful on a set without negative images), box mAP50, and whether the boxes point at the
    smoke at all (`located`: training.metrics.LocatedScores)."""

    images: int
    positives: int
    threshold: float
    image_level: BinaryScores
    map50: float
    located: LocatedScores
    box_precision: float = 0.0  # boxes at or above the threshold that match a ground-truth box (IoU 0.5)
    box_recall: float = 0.0  # ground-truth boxes matched by a box at or above the threshold

    def to_json(self) -> dict:
        return {
            "images": self.images,
            "positives": self.positives,
            "threshold": self.threshold,
            "precision": round(self.image_level.precision, 4),
            "recall": round(self.image_level.recall, 4),
            "f1": round(self.image_level.f1, 4),
            "mAP50": round(self.map50, 4),
            "box_precision": round(self.box_precision, 4),
            "box_recall": round(self.box_recall, 4),
            "counts": {k: getattr(self.image_level, k) for k in ("tp", "fp", "tn", "fn")},
            "located": self.located.to_json(),
        }


def evaluate_detector(
    detector: Detector, images: list[YoloImage], threshold: float, batch: int = 8, progress: bool | None = None
) -> DetectorScores:
    """An image counts as predicted smoke when the detector gives a box at or above `threshold`;
    mAP50 matches every box down to the detector's own low confidence floor."""
    truth, predicted, preds, gts = [], [], [], []
    bar = tqdm(total=len(images), desc="detector eval", unit="img", disable=None if progress is None else not progress)
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        frames = [cv2.cvtColor(cv2.imread(str(i.image)), cv2.COLOR_BGR2RGB) for i in chunk]
        for item, frame, dets in zip(chunk, frames, detector.detect(frames)):
            h, w = frame.shape[:2]
            truth.append(item.positive)
            predicted.append(any(d.conf >= threshold for d in dets))
            preds.append([(d.box, d.conf) for d in dets])
            gts.append(item.boxes(w, h))
        bar.update(len(chunk))
    bar.close()
    scores, hits, total = match_boxes(preds, gts, 0.5)
    confident = [h for h, s in zip(hits, scores) if s >= threshold]
    return DetectorScores(
        len(images), sum(truth), threshold, binary_scores(truth, predicted), average_precision(hits, scores, total),
        box_precision=sum(confident) / len(confident) if confident else 0.0,
        box_recall=sum(confident) / total if total else 0.0,
        located=located_scores(preds, gts, threshold),
    )
