"""What measuring the flow costs: one bundle run with and without the optical flow in its regions.

For a bundle whose scorer does not read the flow (the shipped one), the flow is measured and
ignored, which isolates its cost. For a flow bundle (`smokewatch train decision --flow`), "without"
is the same bundle deciding with its fallback, the scorer it would have without the flow. Both
engines share the detector, backbone and heads, and run the same clip alternately.

    .venv/bin/python bench/flow.py [--model BUNDLE] [--clip PATH] [--repeats 5]

Prints the median seconds per kept frame of each, their ratio, and the median seconds per kept
frame of the engine's `other` stage (tube bookkeeping, the flow and the decision), where the flow runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bundle import ModelBundle  # noqa: E402
from pipeline.engine import Engine  # noqa: E402

from feature_reuse import alternating_parser, run_alternately, run_summary  # noqa: E402


def without_flow(path: str) -> tuple[ModelBundle, dict]:
    """The bundle at `path` as it decides without the flow, and the config overrides that say so."""
    bundle = ModelBundle.load(path)
    overrides = {"flow.enabled": False}
    if bundle.scorer is not None and bundle.scorer.uses_flow:
        decision = bundle.config.decision
        if bundle.scorer.fallback is None or decision.fallback_threshold is None:
            raise SystemExit(f"{path}: its flow scorer has no fallback to compare with (train it again with train decision --flow)")
        bundle.scorer = bundle.scorer.fallback
        overrides.update({"decision.scorer_threshold": decision.fallback_threshold, "decision.scorer_min_heads": None,
                          "decision.fallback_threshold": None, "decision.fallback_veto": None})
    return bundle, overrides


def main() -> int:
    args = alternating_parser(__doc__, "bundle folder (default: the shipped one)").parse_args()

    flowed = ModelBundle.load(args.model)
    plain, overrides = without_flow(args.model)
    engines = {
        "without_flow": Engine(plain, device=args.device, config=plain.config.with_overrides(overrides)),
        "with_flow": Engine(flowed, device=args.device, config=flowed.config.with_overrides({"flow.enabled": True})),
    }
    runs = run_alternately(engines, args.clip, args.repeats)

    report = {name: run_summary(results) for name, results in runs.items()}
    report["ratio_with_to_without"] = report["with_flow"]["s_per_frame"] / report["without_flow"]["s_per_frame"]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
