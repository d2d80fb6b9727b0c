"""`smokewatch export` and `smokewatch bench`: the deployment side of the command line.

Registered into the main parser by service/cli.py; heavy imports happen inside the handlers so
`smokewatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.errors import ConfigError
from service.argtypes import positive_int


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.bundle import ModelBundle
    from pipeline.config import dump_config
    from pipeline.export import export_onnx

    from service.cli import resolve_model

    path = resolve_model(args.model)
    if args.opset < 11:
        raise ConfigError("--opset must be 11 or newer")
    record = export_onnx(path, opset=args.opset)
    if args.make_default:
        # config.yaml is not among the hashed weight files: changing the backend keeps the bundle valid.
        bundle = ModelBundle.load(path, verify=False)
        config = bundle.config.with_overrides({"runtime.backend": "onnx"})
        (Path(path) / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    files = {name: {"sha256": digest, "bytes": (Path(path) / name).stat().st_size} for name, digest in record["files"].items()}
    print(json.dumps({"bundle": str(path), "format": args.format, "files": files, "opset": record["opset"],
                      "max_abs_difference_vs_torch": record["max_abs_difference"],
                      "default_backend": "onnx" if args.make_default else "unchanged"}, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from service.benchmark import bench_command

    return bench_command(args)


def add_deploy_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write the bundle's detector and backbone as ONNX models into the bundle")
    p.add_argument("--model", metavar="DIR", help="bundle folder to export (default: the shipped bundle)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--make-default", action="store_true",
        help="also set runtime.backend: onnx in the bundle's config.yaml, so detect and serve run ONNX Runtime",
    )
    p.set_defaults(func=cmd_export)

    from training.cli import _size

    p = sub.add_parser("bench", help="frames/s, s/frame and peak memory of the pipeline vs. the naive per-frame loop")
    p.add_argument("--config", choices=["paper", "default", "all"], default="all",
                   help="paper (YOLOv3@416 + ResNet50@224, six heads), default (the shipped bundle), or all (default)")
    p.add_argument("--model", metavar="DIR", help="benchmark this bundle instead of --config")
    p.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="inference backend (onnx exports into a copy)")
    p.add_argument("--frames", type=positive_int, help="frames per clip (default 8 on a CPU, 160 on a GPU)")
    p.add_argument("--clips", type=positive_int, help="clips run at once, batched together (default 1 on a CPU, 4 on a GPU)")
    p.add_argument("--size", type=_size, default=(1920, 1080), help="synthetic clip size WxH (default 1920x1080, at most 4096)")
    p.add_argument("--clip", metavar="PATH", help="time this video instead of synthetic clips")
    p.add_argument("--batch-frames", type=positive_int, help="frames per chunk (default: the bundle's on a CPU, 16 on a GPU)")
    p.add_argument("--repeats", type=positive_int, help="timed runs, median reported (default 1 on a CPU, 3 on a GPU)")
    p.add_argument("--naive-frames", type=positive_int, help="frames the naive loop runs (default 4 on a CPU, 48 on a GPU)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value for the run")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=cmd_bench)
