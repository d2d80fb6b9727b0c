"""`smokewatch bench`: end-to-end throughput of the pipeline against the naive per-frame loop.

For each configuration it times, on the same clips and the same device in the same process:

- the engine as deployed: chunks of ``runtime.batch_frames`` frames, each crop's features
  computed once and reused by later windows, decoding on background threads, and with
  ``--clips K`` several clips batched through the detector together;
- the naive loop (:class:`pipeline.engine.NaiveSession` with one frame per step and no
  prefetch): one frame through the detector at a time, every window recomputing all T crops
  one crop at a time. It is the lecture's pipeline written the obvious way.

Every decoded frame is processed (``sampling.fps`` off), so frames/s counts decoding too.
Configurations: ``paper`` (YOLOv3 ``yolov3u.yaml`` at 416, ResNet50 at 224, all six verifier
heads; random weights: the speed of the networks does not depend on their values) and
``default`` (the shipped bundle, or the default architecture with random weights when none is
shipped; its deciding head only, as ``smokewatch detect`` and the service run it). A detector with random weights scores every box low, so for those the benchmark keeps
the best few boxes per frame (``detector.conf 0``, ``max_det 4``): tubes, crops and heads then do
the work a handful of real candidates cause.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.config import HEAD_NAMES, PipelineConfig

PAPER_OVERRIDES = {
    "detector.arch": "yolov3u.yaml",
    "detector.imgsz": 416,
    "extractor.backbone": "resnet50",
    "extractor.input_size": 224,
}
RANDOM_WEIGHT_OVERRIDES = {"detector.conf": 0.0, "detector.max_det": 4}


def paper_config() -> PipelineConfig:
    """The configuration of Jeong et al. 2020 / Table 7-1: YOLOv3 at 416, ResNet50 at 224, T = 8."""
    return PipelineConfig().with_overrides(PAPER_OVERRIDES)


@dataclass
class BenchOptions:
    device: str = "auto"
    backend: str = "torch"
    frames: int | None = None  # per clip; None: 8 on a CPU, 160 on a GPU
    clips: int | None = None  # clips run at once; None: 1 on a CPU, 4 on a GPU
    size: tuple[int, int] = (1920, 1080)
    batch_frames: int | None = None  # None: the bundle's on a CPU, 16 on a GPU
    repeats: int | None = None  # None: 1 on a CPU, 3 on a GPU
    naive_frames: int | None = None  # None: 4 on a CPU, 48 on a GPU
    clip: Path | None = None  # use this video (for every clip) instead of synthetic ones
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 424242

    def resolved(self, device: torch.device) -> "BenchOptions":
        gpu = device.type == "cuda"
        pick = lambda value, cpu, cuda: value if value is not None else (cuda if gpu else cpu)  # noqa: E731
        return BenchOptions(
            device=str(device),
            backend=self.backend,
            frames=pick(self.frames, 8, 160),
            clips=pick(self.clips, 1, 4),
            size=self.size,
            batch_frames=pick(self.batch_frames, None, 16),
            repeats=pick(self.repeats, 1, 3),
            naive_frames=pick(self.naive_frames, 4, 48),
            clip=self.clip,
            overrides=dict(self.overrides),
            seed=self.seed,
        )


def run_benchmarks(configs: list[str], options: BenchOptions, model: Path | None = None) -> dict:
    """Benchmark each configuration (`paper`, `default`, or `model` when a bundle folder is given)."""
    from pipeline.models import resolve_device

    device = resolve_device(options.device)
    options = options.resolved(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per chunk: let cuDNN pick its fastest kernels
    report = {"environment": environment(device), "options": _options_json(options), "results": []}
    with tempfile.TemporaryDirectory(prefix="smokewatch-bench-") as tmp:
        work = Path(tmp)
        clips = _clips(options, work / "clips")
        for name in configs:
            report["results"].append(bench_one(name, options, clips, work / name, model))
    return report


def bench_one(name: str, options: BenchOptions, clips: list[Path], work: Path, model: Path | None = None) -> dict:
    from pipeline.engine import Engine, NaiveSession
    from pipeline.models import resolve_device

    device = resolve_device(options.device)
    bundle, note, random_weights = _bundle(name, model, work, options.backend)
    overrides: dict[str, Any] = {"sampling.fps": None, "sampling.max_frames": None, "runtime.backend": options.backend}
    if random_weights:
        overrides.update(RANDOM_WEIGHT_OVERRIDES)
    if options.batch_frames:
        overrides["runtime.batch_frames"] = options.batch_frames
    overrides.update(options.overrides)
    config = bundle.config.with_overrides(overrides)
    # The paper configuration runs every head (Table 7-1); a deployed bundle runs its deciding
    # head only, as `smokewatch detect` and the service do.
    heads = None if name == "paper" else [config.verifier.head]
    engine = Engine(bundle, device=str(device), config=config, heads=heads)

    def run_engine(max_frames: int | None) -> list:
        view = engine.with_config(config.with_overrides({"sampling.max_frames": max_frames}))
        return view.detect_many(clips) if len(clips) > 1 else [view.detect(clips[0], progress=False)]

    run_engine(config.runtime.batch_frames)  # warm-up: lazy inits, cuDNN autotuning, ORT graph setup
    times, results, peak = [], [], 0
    for _ in range(options.repeats):
        _reset_peak(device)
        start = _now(device)
        results = run_engine(options.frames)
        times.append(_now(device) - start)
        peak = max(peak, _peak(device))
    frames = sum(r.frames_processed for r in results)
    seconds = statistics.median(times)

    naive_config = config.with_overrides(
        {"runtime.batch_frames": 1, "runtime.prefetch": 0, "sampling.max_frames": min(options.naive_frames, options.frames)}
    )
    naive = engine.with_config(naive_config)
    naive.detect(clips[0], progress=False, session=NaiveSession(naive))  # warm-up of the batch-1 shapes
    _reset_peak(device)
    start = _now(device)
    slow = naive.detect(clips[0], progress=False, session=NaiveSession(naive))
    naive_seconds = _now(device) - start
    naive_peak = _peak(device)

    first = results[0]
    compared = [w for w in first.windows if w.frame_index < slow.frames_processed]
    same_windows = [(w.frame_index, w.track_id) for w in compared] == [(w.frame_index, w.track_id) for w in slow.windows]
    max_dp = max((abs(a.smoke_prob - b.smoke_prob) for a, b in zip(compared, slow.windows)), default=0.0)
    fps = frames / seconds
    naive_fps = slow.frames_processed / naive_seconds
    stages = first.stage_times.to_json()
    return {
        "config": name,
        "models": note,
        "random_weights": random_weights,
        "model": {**first.model, "heads": list(engine.heads)},
        "device": str(device),
        "backend": engine.backend,
        "clips": len(clips),
        "frame_size": [first.source.width, first.source.height],
        "batch_frames": config.runtime.batch_frames,
        "half": bool(config.runtime.half and device.type == "cuda" and engine.backend == "torch"),
        "frames": frames,
        "seconds": round(seconds, 4),
        "frames_per_s": round(fps, 3),
        "s_per_frame": round(1.0 / fps, 5),
        "peak_memory_bytes": peak,
        "peak_memory_kind": _peak_kind(device),
        "runs_s": [round(t, 4) for t in times],
        "stage_seconds_first_clip": stages,
        "windows": sum(len(r.windows) for r in results),
        "crops_computed": sum(r.crops_computed for r in results),
        "crops_reused": sum(r.crops_reused for r in results),
        "naive": {
            "frames": slow.frames_processed,
            "seconds": round(naive_seconds, 4),
            "frames_per_s": round(naive_fps, 3),
            "s_per_frame": round(1.0 / naive_fps, 5),
            "peak_memory_bytes": naive_peak,
            "crops_computed": slow.crops_computed,
        },
        "ratio_vs_naive": round(fps / naive_fps, 2),
        "same_windows_as_naive": same_windows,
        "same_verdict_as_naive": first.verdict == slow.verdict if first.frames_processed == slow.frames_processed else None,
        "max_prob_difference_vs_naive": max_dp,
    }


def _bundle(name: str, model: Path | None, work: Path, backend: str):
    """(bundle, description, random weights?) for a configuration; exported to ONNX when asked for."""
    from pipeline.bundle import DEFAULT_BUNDLE, ModelBundle

    work.mkdir(parents=True, exist_ok=True)
    if name == "model":
        bundle, note, random_weights = ModelBundle.load(model), f"bundle {model}", False
    elif name == "default" and (DEFAULT_BUNDLE / "metadata.json").is_file():
        bundle, note, random_weights = ModelBundle.load(DEFAULT_BUNDLE), f"shipped default bundle {DEFAULT_BUNDLE}", False
    else:
        from training.recipe import default_config

        torch.manual_seed(0)
        config = paper_config() if name == "paper" else default_config()
        bundle = ModelBundle.create(config, heads=list(HEAD_NAMES), name=f"bench-{name}-random")
        what = "YOLOv3 (yolov3u.yaml) at 416, ResNet50 at 224" if name == "paper" else "the default architecture"
        note, random_weights = f"{what}, random weights (speed only)", True
    if backend == "onnx":
        from pipeline.backends import export_record, exported_files
        from pipeline.export import export_onnx

        path = bundle.path
        exported = path is not None and export_record(bundle) and all((path / f).is_file() for f in exported_files(bundle))
        if not exported:  # export into a copy: never write into a bundle we were only asked to measure
            if path is None:
                bundle.save(work / "bundle")
            else:
                shutil.copytree(path, work / "bundle", dirs_exist_ok=True)
            export_onnx(work / "bundle")
            bundle = ModelBundle.load(work / "bundle")
    return bundle, note, random_weights


def _clips(options: BenchOptions, folder: Path) -> list[Path]:
    if options.clip is not None:
        return [Path(options.clip)] * options.clips
    from training.synth.dataset import SynthRequest, write_dataset

    request = SynthRequest(
        folder, clips=options.clips, seed=options.seed, size=options.size, frames=options.frames, fps=25.0,
        workers=max(1, min(options.clips, os.cpu_count() or 1)), kind="smoke",
    )
    records = write_dataset(request, progress=False)
    return [folder / r.path for r in records]


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the process's peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _peak_kind(device: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the process (VmHWM)"


def environment(device: torch.device) -> dict:
    from pipeline.yolo_env import prepare_ultralytics

    prepare_ultralytics()  # before ultralytics is first imported: offline and quiet
    import ultralytics

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())})"
    except ImportError:
        env["onnxruntime"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
    return env


def _options_json(options: BenchOptions) -> dict:
    data = {k: v for k, v in vars(options).items()}
    data["size"] = f"{options.size[0]}x{options.size[1]}"
    data["clip"] = str(options.clip) if options.clip else "synthetic smoke clips (training.synth)"
    return data


def format_report(report: dict) -> str:
    """The human-readable table `smokewatch bench` prints."""
    env = report["environment"]
    opts = report["options"]
    where = env.get("gpu") or f"{env['cpu_count']} CPU cores, {env['torch_threads']} torch threads"
    load = f", load average {env['load_average_at_start']} at start" if env.get("load_average_at_start") else ""
    sizes = {tuple(r["frame_size"]) for r in report["results"]}
    size = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)) if sizes else opts["size"]
    lines = [
        f"smokewatch bench: torch {env['torch']}, {where}{load}",
        f"clips: {opts['clip']}, {size}, {opts['frames']} frames each, {opts['clips']} at once; every frame processed",
        "",
        f"{'config':<8} {'models':<42} {'backend':<7} {'frames':>6} {'frames/s':>9} {'s/frame':>8} {'peak mem':>10} "
        f"{'naive f/s':>9} {'ratio':>7}  same windows",
    ]
    for r in report["results"]:
        m = r["model"]
        models = f"{m['detector']} + {m['extractor']}, {len(m['heads'])} head{'s' if len(m['heads']) != 1 else ''}"
        lines.append(
            f"{r['config']:<8} {models:<42} {r['backend']:<7} {r['frames']:>6} {r['frames_per_s']:>9.2f} {r['s_per_frame']:>8.4f} "
            f"{r['peak_memory_bytes'] / 2**30:>6.2f} GiB {r['naive']['frames_per_s']:>9.2f} {r['ratio_vs_naive']:>6.1f}x  "
            f"{'yes' if r['same_windows_as_naive'] else 'no'} (max |dp| {r['max_prob_difference_vs_naive']:.1e})"
        )
    lines.append("")
    for r in report["results"]:
        lines.append(f"{r['config']}: {r['models']}; device {r['device']}, batch {r['batch_frames']} frames, half {r['half']}")
    lines.append(f"peak memory: {report['results'][0]['peak_memory_kind'] if report['results'] else ''}; "
                 "naive: one frame per step, every window's T crops recomputed one at a time, no prefetch")
    if any(r["random_weights"] for r in report["results"]):
        lines.append("random weights: frames/s are real, detections and verdicts mean nothing")
    return "\n".join(lines)


def bench_command(args) -> int:
    """`smokewatch bench` (registered by service/deploy.py)."""
    from pipeline.errors import ConfigError

    from service.cli import parse_sets

    if args.model:
        configs = ["model"]
    else:
        configs = ["paper", "default"] if args.config == "all" else [args.config]
    for flag in ("frames", "clips", "batch_frames", "repeats", "naive_frames"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1")
    options = BenchOptions(
        device=args.device, backend=args.backend, frames=args.frames, clips=args.clips, size=args.size,
        batch_frames=args.batch_frames, repeats=args.repeats, naive_frames=args.naive_frames,
        clip=Path(args.clip) if args.clip else None, overrides=parse_sets(args.set),
    )
    if options.clip is not None and not options.clip.is_file():
        raise ConfigError(f"--clip {options.clip} is not a file")
    report = run_benchmarks(configs, options, Path(args.model) if args.model else None)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
