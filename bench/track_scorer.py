"""What the track scorer costs: one bundle deciding with its k-of-n rule and with its track scorer.

The rule needs the deciding head only; the scorer needs every head it reads (six in the default
bundle) and walks its trees once per window. Both engines share the bundle's detector and
backbone, and run the same clip alternately.

    .venv/bin/python bench/track_scorer.py [--model BUNDLE] [--clip PATH] [--repeats 5]

Prints the median seconds per kept frame of each, their ratio, and the median seconds per kept
frame spent in the heads and in the `other` stage (tube bookkeeping, the rule or the trees).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bundle import ModelBundle  # noqa: E402
from pipeline.engine import Engine  # noqa: E402

from feature_reuse import alternating_parser, run_alternately, run_summary  # noqa: E402


def main() -> int:
    parser = alternating_parser(__doc__, "bundle with a track scorer (default: the shipped one)")
    args = parser.parse_args()

    bundle = ModelBundle.load(args.model)
    if bundle.scorer is None or bundle.config.decision.scorer_threshold is None:
        parser.error(f"{args.model} has no track scorer switched on (smokewatch train decision makes one)")
    head = bundle.config.verifier.head
    rule = bundle.config.with_overrides({"decision.scorer_threshold": None})
    engines = {
        "rule": Engine(bundle, device=args.device, heads=[head], config=rule),
        "scorer": Engine(bundle, device=args.device, heads=[head]),
    }
    runs = run_alternately(engines, args.clip, args.repeats)

    # the decision (the rule or the trees) runs in the engine's `other` stage
    report = {name: {"heads": list(engines[name].heads), **run_summary(results)} for name, results in runs.items()}
    report["ratio_scorer_to_rule"] = report["scorer"]["s_per_frame"] / report["rule"]["s_per_frame"]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
