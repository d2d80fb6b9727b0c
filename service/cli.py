"""The `smokewatch` command.

Every subcommand turns a :class:`SmokewatchError` into one line on stderr and exit status 2, so
scripts can rely on the status and people never see a traceback for a bad file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline import __version__
from pipeline.errors import ConfigError, SmokewatchError
from service.argtypes import port as tcp_port

EXIT_USER_ERROR = 2

Command = Callable[[argparse.Namespace], int]


def parse_sets(pairs: Sequence[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs; values are read as YAML scalars (0.7, true, null, 'text')."""
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        overrides[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return overrides


def resolve_model(path: str | None) -> Path:
    """The bundle to use: the given folder, else the shipped default (with a hint when absent)."""
    from pipeline.bundle import DEFAULT_BUNDLE
    from pipeline.errors import BundleError

    if path:
        return Path(path)
    if not (DEFAULT_BUNDLE / "metadata.json").is_file():
        raise BundleError(
            f"no default model bundle at {DEFAULT_BUNDLE}; pass --model DIR, or build the default one "
            "with `smokewatch train default`"
        )
    return DEFAULT_BUNDLE


def cmd_detect(args: argparse.Namespace) -> int:
    from pipeline.annotate import VideoWriter, draw_result
    from pipeline.bundle import ModelBundle
    from pipeline.config import override_bundle_config
    from pipeline.engine import Engine

    path = resolve_model(args.model)
    overrides = parse_sets(args.set)
    if args.head:
        overrides["verifier.head"] = args.head
    # Only the deciding head is loaded and run: the answer reports no other.
    head = overrides.get("verifier.head")
    bundle = ModelBundle.load(path, heads=[head] if head else None)
    config = override_bundle_config(bundle.config, overrides)
    engine = Engine(bundle, device=args.device, config=config, heads=[config.verifier.head] if config.verifier.head in bundle.heads else None)
    source = engine.open(args.path)

    writer = None
    on_frame = None
    if args.annotate:
        info = source.info
        rate = config.sampling.fps if info.kind == "video" and config.sampling.fps else (info.fps or 1.0)
        writer = VideoWriter(args.annotate, fps=min(rate, info.fps or rate))

        def on_frame(result):  # noqa: ANN001 - FrameResult
            writer.write(draw_result(result))

    try:
        result = engine.detect(source, on_frame=on_frame, progress=None if not args.quiet else False)
    finally:
        if writer is not None:
            writer.close()
    document = result.to_json()
    text = json.dumps(document, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from pipeline.errors import BundleError
    from service.app import create_app, uvicorn_log_config
    from service.settings import Settings

    given = {"host": args.host, "port": args.port, "model": args.model}
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid service settings (SMOKEWATCH_* variables, .env or options): {problems}") from None
    model = resolve_model(str(settings.model) if settings.model else None)
    if not model.is_dir():  # refuse now rather than serve 503 forever
        raise BundleError(f"model bundle folder not found: {model}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=uvicorn_log_config())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Make two synthetic clips (a plume, and drifting cloud and fog) and verify them: the quickest
    way to see the whole pipeline work on a fresh install."""
    from pipeline.annotate import VideoWriter, draw_result
    from pipeline.engine import Engine
    from training.synth.dataset import SynthRequest, write_dataset

    engine = Engine.from_path(resolve_model(args.model), device=args.device)
    out = Path(args.out)
    shown = []
    for kind, seed in (("smoke", 7), ("negatives", 8)):
        folder = out / kind
        write_dataset(SynthRequest(folder, clips=1, seed=seed, size=(640, 360), frames=64, fps=8.0, workers=1, kind=kind), progress=False)
        clip = folder / "clips" / "synth_00000.mp4"
        with engine.open(clip) as source:  # only its description: close the file now, not at garbage collection
            info = source.info
        with VideoWriter(folder / "annotated.mp4", fps=min(engine.config.sampling.fps or info.fps or 8.0, info.fps or 8.0)) as writer:
            result = engine.detect(clip, on_frame=lambda r: writer.write(draw_result(r)), progress=False)
        shown.append(
            {
                "clip": str(clip),
                "truth": "smoke" if kind == "smoke" else "no_smoke (clouds, fog, haze, dust)",
                "verdict": result.verdict,
                "score": round(result.score, 3),
                "first_smoke_time_s": result.first_smoke_time_s,
                "s_per_frame": round(result.s_per_frame, 3),
                "annotated": str(folder / "annotated.mp4"),
            }
        )
    print(json.dumps({"model": engine.model_names, "device": str(engine.device), "clips": shown}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smokewatch",
        description="Find wildfire smoke in video: YOLO proposals verified over time by a recurrent head.",
    )
    parser.add_argument("--version", action="version", version=f"smokewatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("detect", help="verify smoke in a clip, a folder of frames or an image; prints JSON")
    p.add_argument("path", help="video file, folder of frames, or image")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (default: the shipped bundle)")
    p.add_argument("--out", metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write the kept frames with boxes and p(smoke) drawn")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N (default: the bundle's setting)")
    p.add_argument("--head", metavar="NAME", help="verifier head whose p(smoke) each window reports, and which decides under the k-of-n rule "
                   "(a bundle with a track scorer decides with the scorer; --set decision.scorer_threshold=null for the rule)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. decision.threshold=0.7"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("serve", help="run the HTTP service (POST /detect, /jobs, /healthz, /metrics, ...)")
    p.add_argument("--host", help="address to bind (default: SMOKEWATCH_HOST or 127.0.0.1)")
    p.add_argument("--port", type=tcp_port, help="TCP port (default: SMOKEWATCH_PORT or 8000)")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (default: SMOKEWATCH_MODEL or the shipped bundle)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="make a synthetic smoke clip and a hard negative, verify both, write annotated videos")
    p.add_argument("--model", metavar="DIR", help="model bundle folder (default: the shipped bundle)")
    p.add_argument("--out", default="smokewatch-demo", metavar="DIR", help="folder for the clips and results (default ./smokewatch-demo)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_demo)

    from training.cli import add_training_commands

    add_training_commands(sub)
    from service.streams.cli import add_monitor_command

    add_monitor_command(sub)
    from service.deploy import add_deploy_commands

    add_deploy_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for records of what made a bundle
    try:
        return args.func(args)
    except SmokewatchError as exc:
        print(f"smokewatch: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("smokewatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
