"""`smokewatch evaluate DATA_DIR`: the lecture's Table 7-1 on a labelled folder, in one command.

Registered by training/cli.py (`add_evaluate_command`); heavy imports happen inside the handler
so `smokewatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from service.argtypes import positive_int, probability

from . import DEFAULT_VOTE_THRESHOLD, LEVELS


def parse_heads(text: str | None, available: list[str]) -> list[str]:
    """`all` (every head the bundle holds, an ensemble member's NAME/HEAD ones too) or a comma-separated
    list, returned in the lecture's order, members' heads after the main ones."""
    from pipeline.config import HEAD_NAMES, head_member

    members = [h for h in available if head_member(h)[0] is not None]
    if not text or text.strip().lower() == "all":
        return [h for h in HEAD_NAMES if h in available] + members
    wanted = [h.strip() for h in text.split(",") if h.strip()]
    unknown = [h for h in wanted if head_member(h)[1] not in HEAD_NAMES]
    if unknown:
        raise ConfigError(f"unknown verifier head {', '.join(unknown)}; choose from all, {', '.join([*HEAD_NAMES, *members])}"
                          " (an ensemble member's: MEMBER/HEAD)")
    others = [h for h in wanted if head_member(h)[0] is not None]
    return [h for h in HEAD_NAMES if h in wanted] + [h for h in members if h in others] + [h for h in others if h not in members]


@dataclass(frozen=True)
class EvaluateRequest:
    """One `smokewatch evaluate` run, as parsed from the command line."""

    data: Path
    out: Path
    model: str | None = None
    heads: str | None = None
    train_heads: Path | None = None  # train the heads on this manifest folder first
    train_epochs: int | None = None
    device: str | None = None
    overrides: tuple[str, ...] = ()
    level: str = "window"  # one of LEVELS
    vote_frames: int | None = None
    vote_threshold: float = DEFAULT_VOTE_THRESHOLD
    plots: bool = True
    progress: bool | None = None

    def to_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def default_out(data: Path) -> Path:
    return Path("runs") / "evaluate" / (data.resolve().name or "data")


def run_evaluate(request: EvaluateRequest) -> tuple[str, dict[str, Path]]:
    """Evaluate every requested head and both baselines; write the report. Returns (table text, files)."""
    from pipeline.bundle import ModelBundle
    from pipeline.config import HEAD_NAMES, override_bundle_config
    from pipeline.engine import Engine
    from service.cli import parse_sets, resolve_model
    from training.datasets import read_items

    from .plots import write_plots
    from .provenance import bundle_fingerprint, data_fingerprint, environment
    from .records import RunInfo, VoteOptions
    from .report import table_text, write_report
    from .runner import run_items
    from .scoring import score_traces

    started = time.perf_counter()
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    parse_heads(request.heads, [])  # a misspelt head name fails before any work is done
    if request.level not in LEVELS:
        raise ConfigError(f"unknown level '{request.level}'; choose from {', '.join(LEVELS)}")
    items = read_items(request.data)  # a malformed manifest stops here, naming its row
    model_path = resolve_model(request.model)
    bundle = ModelBundle.load(model_path)
    config = override_bundle_config(bundle.config, parse_sets(list(request.overrides)))
    trained = None
    if request.train_heads is not None:
        from .heads import train_bundle_heads

        bundle.config = config  # train on the windows the evaluation will see; OUT/bundle keeps the settings
        bundle, trained = train_bundle_heads(
            bundle, request.train_heads, parse_heads(request.heads, list(HEAD_NAMES)), items,
            request.out / "bundle", request.device, request.train_epochs, progress=request.progress,
        )
    heads = parse_heads(request.heads, list(bundle.heads))
    missing = [h for h in heads if h not in bundle.heads]
    if missing or not heads:
        raise ConfigError(
            f"the model bundle {model_path} has no head {', '.join(missing) or '(none asked for)'} "
            f"(it has {', '.join(bundle.heads) or 'none'})"
        )
    vote = VoteOptions(frames=request.vote_frames or config.tubes.window, threshold=request.vote_threshold)

    engine = Engine(bundle, device=request.device, heads=heads, config=config)
    traces = run_items(engine, items, progress=request.progress)
    evaluation = score_traces(traces, heads, config.decision, vote, bundle.scorer)

    files = bundle.metadata.files
    info = RunInfo(
        data_dir=str(request.data.resolve()),
        data_hash=data_fingerprint(request.data.resolve(), items),
        model_path=str(bundle.path) if bundle.path else None,
        model_hash=bundle_fingerprint(bundle),
        model=bundle.describe(),
        head_files={h: files[f"heads/{h}.pt"] for h in heads if f"heads/{h}.pt" in files},
        config=config.model_dump(mode="json"),
        level=request.level,
        environment=environment(engine.device),
        request=request.to_json(),
        created_at=created,
        trained_heads=trained,
    )
    info.seconds = time.perf_counter() - started
    written = write_report(evaluation, info, request.out)  # the scores first: they cost the time, plots are extra
    if request.plots:
        write_plots(evaluation, request.out / "plots")
    return table_text(evaluation, info), written


def cmd_evaluate(args: argparse.Namespace) -> int:
    data = Path(args.data)
    request = EvaluateRequest(
        data=data,
        out=Path(args.out) if args.out else default_out(data),
        model=args.model,
        heads=args.heads,
        train_heads=Path(args.train_heads) if args.train_heads else None,
        train_epochs=args.train_epochs,
        device=args.device,
        overrides=tuple(args.set or ()),
        level=args.level,
        vote_frames=args.vote_frames,
        vote_threshold=args.vote_threshold,
        plots=not args.no_plots,
        progress=False if args.quiet else None,
    )
    if request.vote_frames is not None and request.vote_frames < 1:
        raise ConfigError("--vote-frames must be at least 1")
    if request.train_epochs is not None and request.train_epochs < 1:
        raise ConfigError("--train-epochs must be at least 1")
    text, written = run_evaluate(request)
    print(text, end="")
    extra = f" and plots in {request.out / 'plots'}" if request.plots else ""
    print(f"\nwrote {', '.join(str(p) for p in written.values())}{extra}")
    return 0


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score every verifier head and two baselines on a labelled folder (the lecture's Table 7-1)",
        description="Runs decode, detection, tubes and features once per item, decides with every head "
        "and with two baselines (detector alone, frame vote), and writes table.md, table.csv, "
        "results.json and plots into OUT.",
    )
    p.add_argument("data", metavar="DATA_DIR", help="folder with manifest.csv (or a FIgLib / YOLO image folder)")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (default: the shipped bundle)")
    p.add_argument("--heads", metavar="all|NAME,...", default="all",
                   help="verifier heads to evaluate: all (default: every head in the bundle) or names such as "
                   "lstm,deep-bilstm")
    p.add_argument("--train-heads", metavar="TRAIN_DIR",
                   help="first train the heads (all six, or --heads) on this manifest folder, save the bundle "
                   "into OUT/bundle and evaluate that")
    p.add_argument("--train-epochs", type=positive_int, metavar="N", help="most epochs per head with --train-heads "
                   "(default: the trainer's; early stopping ends sooner)")
    p.add_argument("--out", metavar="OUT", help="output folder (default runs/evaluate/<data folder name>)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N (default: the bundle's setting)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. decision.threshold=0.7 or sampling.folder_interval_s=60")
    p.add_argument("--level", choices=LEVELS, default="window",
                   help="level of table.csv and of the first table in table.md (default window)")
    p.add_argument("--vote-frames", type=positive_int, metavar="N",
                   help="frames in the frame-vote baseline (default: the verifier's window T)")
    p.add_argument("--vote-threshold", type=probability, default=DEFAULT_VOTE_THRESHOLD, metavar="X",
                   help=f"mean box confidence the frame vote must beat (default {DEFAULT_VOTE_THRESHOLD}, pyro-engine's)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)
