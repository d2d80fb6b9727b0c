"""What change cues cost: a bundle without them and one with them on the same clip, side by side.

The cues are cut from the frames on the CPU (a grey thumbnail per crop, a few array operations per
window), and the heads read 48 more values per frame. Build the cue bundle first, for example
`smokewatch train verifier --model pipeline/bundles/default --change-cues on --heads all ...`.

    .venv/bin/python bench/change_cues.py --cues BUNDLE [--plain BUNDLE] [--clip PATH] [--repeats 5]

Prints the median seconds per kept frame of each, the ratio, and the median seconds per kept frame
spent in the features stage (backbone plus cues) and in the deciding head.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bundle import DEFAULT_BUNDLE, ModelBundle  # noqa: E402
from pipeline.engine import Engine  # noqa: E402

from feature_reuse import run_alternately  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cues", required=True, help="bundle trained with extractor.change_cues on")
    parser.add_argument("--plain", help="bundle without cues (default: the shipped bundle)")
    parser.add_argument("--clip", help="video to run (default: a synthetic 12 s 640x360 smoke clip)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of each (default 5)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    engines = {}
    for name, path in (("plain", args.plain or DEFAULT_BUNDLE), ("cues", args.cues)):
        bundle = ModelBundle.load(path)
        engines[name] = Engine(bundle, device=args.device, heads=[bundle.config.verifier.head])
    if engines["plain"].config.extractor.change_cues or not engines["cues"].config.extractor.change_cues:
        parser.error("--plain must be a bundle without change cues and --cues one with them")

    runs = run_alternately(engines, args.clip, args.repeats)

    report = {}
    for name, results in runs.items():
        frames = results[0].frames_processed
        report[name] = {
            "bundle": str(engines[name].bundle.path),
            "frames": frames,
            "windows": len(results[0].windows),
            "s_per_frame": statistics.median(r.seconds / frames for r in results),
            "features_s_per_frame": statistics.median(r.stage_times.features / frames for r in results),
            "head_s_per_frame": statistics.median(sum(r.stage_times.heads.values()) / frames for r in results),
        }
    report["ratio_cues_to_plain"] = report["cues"]["s_per_frame"] / report["plain"]["s_per_frame"]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
