"""Detector training packed as one job that runs where only torch and ultralytics are installed.

A GPU trains the detector in minutes where a CPU takes hours, but the GPU machines we get are
lent for a few minutes with a bare image: torch, no network, none of smokewatch's other
dependencies (PyAV, pydantic), and a few tens of MB per transfer. So the job travels as one
archive: the YOLO dataset exactly as `smokewatch train detector` assembles it, its images shrunk
to the detector's input size, and the weights to start from.

    pack  (here, full install)     `smokewatch train detector --data ... --pack job.tgz`
    run   (there, torch+ultralytics) `python -m training.detector_job run job.tgz OUT`
    adopt (here)                   `smokewatch train detector --adopt OUT --model B --out B2`

Everything `run` needs lives in this module and pipeline.yolo_env, which import nothing else of
smokewatch at module level; `pack` and `adopt` import the rest when called.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

JOB_FORMAT = "smokewatch-detector-job"
DETECTOR_FORMAT = "smokewatch-detector"  # pipeline.models.DETECTOR_FORMAT, which `run` may not import


@dataclass
class PackOptions:
    """How the dataset is assembled (as `smokewatch train detector` does) and shrunk for travel."""

    frames_per_clip: int = 4
    max_real: int | None = 900
    seed: int = 0
    # JPEG quality of the shrunk images. Real photographs hold more texture per pixel than our
    # rendered frames, so at one quality they would take twice the room; at 70 and 60 the default
    # bundle's 2,600 images take 26 MB, inside what a lent GPU machine accepts with the repository.
    synthetic_quality: int = 70
    real_quality: int = 60


def ultralytics_train_args(
    data_yaml: Path, epochs: int, imgsz: int, project: Path, *, batch: int = 16, device: str = "cpu", workers: int = 2,
    seed: int = 0, patience: int = 30, start: Path | None = None, warmup_epochs: float = 3.0, hours: float | None = None,
) -> dict[str, Any]:
    """The arguments every detector training hands ultralytics, here and on a lent machine alike.

    amp stays off: ultralytics checks AMP by downloading a reference model. The RAM cache keeps
    decoding out of the epochs, which on a GPU are otherwise spent waiting for the loaders."""
    args: dict[str, Any] = dict(
        data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers, seed=seed,
        deterministic=False, amp=False, plots=False,
        pretrained=str(start) if start else False,  # False would drop the start weights
        project=str(project), name="detector", exist_ok=True, patience=patience, cache="ram",
        close_mosaic=max(1, min(10, epochs // 4)), warmup_epochs=warmup_epochs, verbose=False,
    )
    if hours:
        args["time"] = hours
    return args


def best_epoch_metrics(csv_path: Path) -> dict[str, float]:
    """Precision, recall and mAP50 of the epoch with the best validation mAP50 in ultralytics' results.csv."""
    if not csv_path.exists():
        return {}
    with csv_path.open() as fh:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    if not rows:
        return {}
    best = max(rows, key=lambda r: float(r.get("metrics/mAP50(B)", 0) or 0))
    keep = {"metrics/precision(B)": "precision", "metrics/recall(B)": "recall", "metrics/mAP50(B)": "mAP50", "epoch": "epoch"}
    return {name: float(best[k]) for k, name in keep.items() if k in best and best[k] != ""}


def save_start_checkpoint(network, names: dict[int, str], path: Path) -> Path:
    """Write a trained detector as a checkpoint ultralytics starts training from (its weights, not
    its optimiser state: a new run over new data, not a resumed one)."""
    import torch

    model = copy.deepcopy(network).float().cpu()
    model.names = dict(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {"task": "detect"}}, path)
    return path


# --- pack (here) -------------------------------------------------------------------------------


def pack_detector_job(bundle, synth_dirs: list[Path], real_sets: list, work: Path, out: Path,
                      options: PackOptions | None = None, finetune: bool = False, progress: bool | None = None) -> dict:
    """Write `out` (a .tgz): the dataset, the architecture and, with `finetune`, the bundle's
    detector weights to start from. Returns the job's description (also job.json inside)."""
    import cv2
    import torch

    from pipeline.models import detector_state

    from .detector import build_detector_dataset

    options = options or PackOptions()
    cfg = bundle.config.detector
    dataset = build_detector_dataset(work / "detector-data", synth_dirs, real_sets, frames_per_clip=options.frames_per_clip,
                                     max_real=options.max_real, seed=options.seed, progress=progress)
    staging = work / "job"
    if staging.exists():
        shutil.rmtree(staging)
    source = dataset.data_yaml.parent
    for split in ("train", "val"):
        (staging / "data" / split / "images").mkdir(parents=True)
        shutil.copytree(source / split / "labels", staging / "data" / split / "labels")
        for image in sorted((source / split / "images").iterdir()):
            frame = cv2.imread(str(image))
            if frame is None:
                raise ValueError(f"cannot read {image.resolve()}")
            h, w = frame.shape[:2]
            scale = cfg.imgsz / max(h, w)
            if scale < 1:
                frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            quality = options.real_quality if image.is_symlink() else options.synthetic_quality  # real images are linked
            cv2.imwrite(str(staging / "data" / split / "images" / f"{image.stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if finetune:
        torch.save(detector_state(bundle.detector, bundle.detector_names, half=True), staging / "start.pt")
    job = {
        "format": JOB_FORMAT,
        "arch": cfg.arch,
        "imgsz": cfg.imgsz,
        "seed": options.seed,
        "start": "start.pt" if finetune else None,
        "started_from": "the bundle's detector weights" if finetune else "random initialisation",
        "data": {"synthetic": [str(p) for p in synth_dirs],
                 "real": [f"{r.path} (smoke classes {sorted(r.smoke_classes)})" for r in real_sets], **dataset.counts},
        "split": "synthetic by clip, real by groups.csv source group (stills each their own group)",
        "pack": asdict(options),
    }
    (staging / "job.json").write_text(json.dumps(job, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as archive:
        archive.add(staging, arcname="job")
    shutil.rmtree(staging)
    return job


# --- run (there) -------------------------------------------------------------------------------


def run_detector_job(job_file: Path, out: Path, *, device: str = "0", hours: float | None = None, epochs: int = 300,
                     batch: int = 64, workers: int = 8) -> dict:
    """Train the packed job and write into `out`: detector.pt (the final EMA weights, as a bundle
    holds them), best.pt (those of the best validation epoch), results.csv and result.json.

    Files are written as training goes, so a run stopped at its machine's time limit still
    leaves the best weights so far. Early stopping is off: the time limit decides."""
    import torch

    from pipeline.yolo_env import prepare_ultralytics

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="smokewatch-job-"))
    with tarfile.open(job_file) as archive:
        archive.extractall(work, filter="data")
    root = work / "job"
    job = json.loads((root / "job.json").read_text())
    if job.get("format") != JOB_FORMAT:
        raise ValueError(f"{job_file} is not a smokewatch detector job")
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: {root / 'data'}\ntrain: train/images\nval: val/images\nnames:\n  0: smoke\n")

    prepare_ultralytics()
    from ultralytics import YOLO
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.tasks import DetectionModel

    _results_without_polars(BaseTrainer)
    start = None
    if job["start"]:
        blob = torch.load(root / job["start"], map_location="cpu", weights_only=True)
        network = DetectionModel(blob["yaml"], nc=1, verbose=False)  # as pipeline.models.new_detector_network
        network.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
        start = save_start_checkpoint(network, {0: "smoke"}, root / "start-checkpoint.pt")
    model = YOLO(str(start) if start else job["arch"], task="detect")

    def save_best(trainer) -> None:
        if trainer.best_fitness == trainer.fitness:
            _write_detector(trainer.ema.ema, out / "best.pt")
        if trainer.csv.exists():
            shutil.copy(trainer.csv, out / "results.csv")

    def save_last(trainer) -> None:
        _write_detector(trainer.ema.ema, out / "detector.pt")
        if trainer.csv.exists():
            shutil.copy(trainer.csv, out / "results.csv")

    model.add_callback("on_model_save", save_best)
    model.add_callback("on_train_end", save_last)
    args = ultralytics_train_args(data_yaml, epochs, job["imgsz"], work / "runs", batch=batch, device=device, workers=workers,
                                  seed=job["seed"], patience=epochs, start=start, warmup_epochs=1.0 if start else 3.0, hours=hours)
    began = time.perf_counter()
    model.train(**args)
    seconds = time.perf_counter() - began
    import ultralytics

    rows = list(csv.DictReader((out / "results.csv").open())) if (out / "results.csv").exists() else []
    result = {
        **{k: job[k] for k in ("arch", "imgsz", "seed", "started_from", "data", "split", "pack")},
        "epochs_run": len(rows),
        "hours_limit": hours,
        "batch": batch,
        "ultralytics_val_best": best_epoch_metrics(out / "results.csv"),
        "seconds": round(seconds, 1),
        "machine": {"device": _device_name(torch, device), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
                    "python": platform.python_version(), "cpus": os.cpu_count()},
        "weights": "detector.pt: the EMA weights at the end of training",
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return result


def _write_detector(network, path: Path) -> None:
    """detector.pt as a bundle holds it (pipeline.models.detector_state): architecture, names, half weights."""
    import torch

    model = copy.deepcopy(network).float().cpu()
    state = {k: (v.half() if v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    torch.save({"format": DETECTOR_FORMAT, "yaml": dict(model.yaml), "names": {0: "smoke"}, "state_dict": state}, path)


def _results_without_polars(trainer_class) -> None:
    """ultralytics reads results.csv with polars only to store it in each checkpoint, and bare GPU
    images lack polars; read it with the csv module there instead."""
    import importlib.util

    if importlib.util.find_spec("polars") is not None:
        return

    def read_results_csv(self) -> dict:
        if not self.csv.exists():
            return {}
        with self.csv.open() as fh:
            rows = list(csv.DictReader(fh))
        return {k.strip(): [float(r[k]) if r[k] else None for r in rows] for k in (rows[0] if rows else {})}

    trainer_class.read_results_csv = read_results_csv


def _device_name(torch, device: str) -> str:
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.machine()})"


# --- adopt (here) ------------------------------------------------------------------------------


def adopt_detector_job(bundle, result_dir: Path) -> dict:
    """Put a finished job's detector.pt into `bundle`, with the job's record in its provenance
    (as `detector`, or `detector_finetune` after the record of the weights it started from)."""
    from pipeline.models import load_detector_weights

    result_file, weights = result_dir / "result.json", result_dir / "detector.pt"
    if not result_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{result_dir} holds no finished detector job (result.json and detector.pt)")
    record = json.loads(result_file.read_text())
    network = load_detector_weights(weights)
    bundle.detector, bundle.detector_names = network.network, {0: "smoke"}
    finetune = record.get("started_from") == "the bundle's detector weights"
    key = "detector_finetune" if finetune else "detector"
    earlier = bundle.metadata.provenance.get("detector_finetune")
    if finetune and earlier is not None:
        record["after"] = earlier
    bundle.metadata.provenance[key] = record
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.detector_job",
                                     description="train a packed detector job (needs only torch and ultralytics)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train JOB (a .tgz from `smokewatch train detector --pack`) and write the results into OUT")
    p.add_argument("job", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--device", default="0", help="ultralytics device: 0 for the first GPU, cpu (default 0)")
    p.add_argument("--hours", type=float, help="stop after this many hours (ultralytics fits the schedule to it)")
    p.add_argument("--epochs", type=int, default=300, help="most epochs (default 300; --hours usually ends sooner)")
    p.add_argument("--batch", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--workers", type=int, default=8, help="data loader processes (default 8)")
    args = parser.parse_args(argv)
    if not args.job.is_file():
        parser.error(f"no job file at {args.job}")
    result = run_detector_job(args.job, args.out, device=args.device, hours=args.hours, epochs=args.epochs,
                              batch=args.batch, workers=args.workers)
    print(json.dumps({k: result[k] for k in ("epochs_run", "seconds", "ultralytics_val_best", "machine")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
