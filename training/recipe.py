"""The steps that turn data into a model bundle, shared by `smokewatch train ...` commands.

    detector  -> train_detector_stage   (ultralytics, synthetic frames + real YOLO sets)
    backbone  -> train_backbone_stage   (smoke / not-smoke crops, since no ImageNet weights exist)
    verifier  -> train_verifier_stage   (all requested heads on cached tube features)

Each stage writes what it did into the bundle's provenance and metrics, so a shipped bundle
says how it was made.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig
from pipeline.detector import Detector
from pipeline.models import fuse_for_inference, smoke_class_index

from .backbone import BackboneOptions, collect_crops, train_backbone
from .datasets import read_manifest, read_yolo_folder
from .detector import build_detector_dataset, train_detector
from .verifier import HeadTrainingOptions, train_heads

CCBY_ATTRIBUTION = (
    '"Fire and Smoke Detection" dataset, version 1, by vicky-vishnu on Roboflow Universe '
    "(project fire-and-smoke-detection-hiwia-1vzaj), forked from the Middle East Technical University "
    "project of the same name; licence CC BY 4.0"
)


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


def environment() -> dict:
    import ultralytics

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}",
    }


def _detector_for(bundle: ModelBundle, device: str) -> Detector:
    network = fuse_for_inference(copy.deepcopy(bundle.detector)).to(device)
    return Detector(network, bundle.config.detector, smoke_class_index(bundle.detector_names, bundle.config.detector.smoke_class), torch.device(device))


def train_detector_stage(
    bundle: ModelBundle,
    synth_dirs: list[Path],
    real_sets: list[RealSet],
    work: Path,
    epochs: int,
    hours: float | None,
    seed: int,
    frames_per_clip: int = 5,
    max_real: int | None = 1200,
    batch: int = 16,
    progress: bool | None = None,
) -> dict:
    cfg = bundle.config.detector
    dataset = build_detector_dataset(
        work / "detector-data", synth_dirs, [r.path for r in real_sets], set().union(*[r.smoke_classes for r in real_sets]) if real_sets else {0},
        frames_per_clip=frames_per_clip, max_real=max_real, seed=seed, progress=progress,
    )
    start = time.perf_counter()
    result = train_detector(dataset, cfg.arch, cfg.imgsz, epochs, work / "runs", hours=hours, batch=batch, seed=seed)
    bundle.detector, bundle.detector_names = result.network, {0: "smoke"}
    record = {
        "arch": cfg.arch,
        "imgsz": cfg.imgsz,
        "epochs_requested": epochs,
        "hours_limit": hours,
        "seed": seed,
        "data": {"synthetic": [str(p) for p in synth_dirs], "real": [f"{r.path} (smoke classes {sorted(r.smoke_classes)})" for r in real_sets], **dataset.counts},
        "split": "synthetic by clip, real by groups.csv source group (stills each their own group)",
        "ultralytics_val_best": result.metrics,
        "seconds": round(time.perf_counter() - start, 1),
    }
    bundle.metadata.provenance["detector"] = record
    return record


def train_backbone_stage(
    bundle: ModelBundle,
    synth_dirs: list[Path],
    real_sets: list[RealSet],
    options: BackboneOptions,
    progress: bool | None = None,
) -> dict:
    synthetic = [item for folder in synth_dirs for item in read_manifest(folder, check_frames=False)]
    real = [img for r in real_sets for img in read_yolo_folder(r.path, r.smoke_classes)]
    detector = _detector_for(bundle, options.device)
    crops = collect_crops(synthetic, real, bundle.config.extractor.input_size, bundle.config.tubes, options, detector, progress)
    report = train_backbone(bundle.backbone, bundle.feature_dim, crops, options, progress)
    bundle.metadata.provenance["extractor"] = {
        "backbone": bundle.config.extractor.backbone,
        "input_size": bundle.config.extractor.input_size,
        "how": "trained from random initialisation as a smoke / not-smoke crop classifier (classifier layer then "
        "dropped); crops cut like the engine's tube crops; negatives include the trained detector's false positives",
        "seed": options.seed,
        **report,
    }
    return report


def train_verifier_stage(
    bundle: ModelBundle,
    data_dirs: list[Path],
    heads: list[str],
    options: HeadTrainingOptions,
    progress: bool | None = None,
) -> dict:
    items = [item for folder in data_dirs for item in read_manifest(folder, check_frames=False)]
    reports = train_heads(bundle, items, heads, options, progress)
    record = {
        "data": [str(p) for p in data_dirs],
        "items": len(items),
        "seed": options.seed,
        "options": {k: v for k, v in vars(options).items() if k not in ("cache_dir",)},
        "heads": {name: r.to_json() for name, r in reports.items()},
    }
    bundle.metadata.provenance["verifier"] = record
    return record


def default_config() -> PipelineConfig:
    """The configuration of the shipped default bundle: sized for a 2-core CPU, kept sharp for small plumes.

    yolov8n rather than yolov3-tinyu: its head also predicts at stride 8 (YOLOv3-tiny stops at 16),
    which is what distant plumes of a few dozen pixels need, and it is 4x smaller and about twice as
    fast to train and run on a CPU. ResNet18 at 112 px rather than ResNet50 at 224 px: it can be
    trained from scratch here, and the crops are small regions anyway.
    """
    return PipelineConfig().with_overrides(
        {
            "detector.arch": "yolov8n.yaml",
            "detector.imgsz": 384,
            "detector.conf": 0.05,
            "extractor.backbone": "resnet18",
            "extractor.input_size": 112,
            "verifier.head": "deep-bilstm",
            "verifier.hidden_size": 128,
            "verifier.proj_dim": 256,
            "tubes.window": 8,
            "sampling.fps": 4.0,
        }
    )
