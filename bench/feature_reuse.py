"""Engine vs. the naive per-window loop on the same clip, side by side.

The naive loop (pipeline.engine.NaiveSession) recomputes all T crops of every window one crop at
a time; the engine computes each (frame, region) crop once, batched across candidates and frames.
Both must give the same verdicts and window probabilities; the figure of merit is their ratio.

    .venv/bin/python bench/feature_reuse.py [--model DIR] [--clip PATH] [--window 8] [--repeats 3]

Without --model it uses the shipped default bundle, or (if there is none yet) a random-weight
bundle with the default architecture and detector.conf 0, so every frame has candidates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bundle import DEFAULT_BUNDLE, ModelBundle  # noqa: E402
from pipeline.engine import Engine, NaiveSession  # noqa: E402


def synthetic_clip(folder: Path) -> Path:
    from training.synth.dataset import SynthRequest, write_dataset

    write_dataset(SynthRequest(folder, clips=1, seed=424242, size=(640, 360), frames=96, fps=8.0, workers=1, kind="smoke+negatives"), progress=False)
    return folder / "clips" / "synth_00000.mp4"


def alternating_parser(doc: str, model_help: str, repeats: int = 5) -> argparse.ArgumentParser:
    """The options every bench that runs engines alternately on one clip takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_BUNDLE), help=model_help)
    parser.add_argument("--clip", help="video to run (default: a synthetic 12 s 640x360 smoke clip)")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"alternating runs of each (default {repeats})")
    parser.add_argument("--device", default="cpu")
    return parser


def run_summary(results: list) -> dict:
    """Medians, per kept frame, of one engine's runs: the whole run, its heads, its `other` stage
    (tube bookkeeping, the flow and the decision)."""
    frames = results[0].frames_processed
    return {
        "frames": frames,
        "windows": len(results[0].windows),
        "verdict": results[0].verdict,
        "s_per_frame": statistics.median(r.seconds / frames for r in results),
        "heads_s_per_frame": statistics.median(sum(r.stage_times.heads.values()) / frames for r in results),
        "other_s_per_frame": statistics.median(r.stage_times.other / frames for r in results),
    }


def run_alternately(engines: dict, clip: str | None, repeats: int) -> dict[str, list]:
    """Each engine on the same clip (default: :func:`synthetic_clip`), once to warm up, then
    `repeats` times in turn, so that what else the machine does falls on all of them alike."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(clip) if clip else synthetic_clip(Path(tmp) / "clip")
        runs: dict[str, list] = {name: [] for name in engines}
        for engine in engines.values():
            engine.detect(path, progress=False)  # warm-up
        for _ in range(repeats):
            for name, engine in engines.items():
                runs[name].append(engine.detect(path, progress=False))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="bundle folder (default: shipped bundle, else random weights)")
    parser.add_argument("--clip", help="video to run (default: a synthetic 12 s 640x360 smoke clip)")
    parser.add_argument("--window", type=int, default=8, help="T, frames per window (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each (default 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(args.clip) if args.clip else synthetic_clip(Path(tmp) / "clip")
        if args.model or (DEFAULT_BUNDLE / "metadata.json").exists():
            bundle = ModelBundle.load(args.model or DEFAULT_BUNDLE)
            note = f"bundle {bundle.path}"
            overrides = {"tubes.window": args.window}
        else:
            from training.recipe import default_config

            torch.manual_seed(0)
            bundle = ModelBundle.create(default_config())
            note = "random-weight bundle with the default architecture (no trained bundle found)"
            overrides = {"tubes.window": args.window, "detector.conf": 0.0, "detector.max_det": 4}
        engine = Engine(bundle, device=args.device, config=bundle.config.with_overrides(overrides))
        engine.detect(clip, progress=False)  # warm-up: first-call allocations and lazy inits

        fast_times, naive_times = [], []
        fast = naive = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            fast = engine.detect(clip, progress=False)
            fast_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            naive = engine.detect(clip, progress=False, session=NaiveSession(engine))
            naive_times.append(time.perf_counter() - start)

    same_windows = [(w.frame_index, w.track_id) for w in fast.windows] == [(w.frame_index, w.track_id) for w in naive.windows]
    max_diff = max((abs(a.smoke_prob - b.smoke_prob) for a, b in zip(fast.windows, naive.windows)), default=0.0)
    agree = same_windows and fast.verdict == naive.verdict and max_diff < 1e-3
    frames = fast.frames_processed
    fast_fps = frames / statistics.median(fast_times)
    naive_fps = frames / statistics.median(naive_times)
    report = {
        "models": note,
        "model": fast.model,
        "device": fast.device,
        "clip": str(args.clip or "synthetic 640x360, 96 frames at 8 fps"),
        "window_T": args.window,
        "frames_processed": frames,
        "windows": len(fast.windows),
        "crops_engine": fast.crops_computed,
        "crops_naive": naive.crops_computed,
        "engine_fps_median": round(fast_fps, 2),
        "naive_fps_median": round(naive_fps, 2),
        "ratio": round(fast_fps / naive_fps, 2),
        "verdicts_agree": agree,
        "verdict": fast.verdict,
        "max_prob_difference": max_diff,
        "runs": {"engine_s": [round(t, 3) for t in fast_times], "naive_s": [round(t, 3) for t in naive_times]},
    }
    print(f"models: {note}")
    print(f"clip: {report['clip']}, {frames} kept frames, {len(fast.windows)} windows, T={args.window}")
    print(f"{'':10}{'frames/s':>10}{'crops':>8}")
    print(f"{'engine':10}{fast_fps:>10.2f}{fast.crops_computed:>8}")
    print(f"{'naive':10}{naive_fps:>10.2f}{naive.crops_computed:>8}")
    print(f"ratio {report['ratio']:.2f}x (median of {args.repeats}); same verdicts and windows: {agree} (max |dp| {max_diff:.2e})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
