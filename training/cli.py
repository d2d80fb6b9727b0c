"""`smokewatch synth` and `smokewatch train ...`: the training side of the command line.

Registered into the main parser by service/cli.py; heavy imports happen inside the handlers so
`smokewatch --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from pipeline.errors import ConfigError
from service.argtypes import crop_side, non_negative_int, positive_float, positive_int, probability


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got '{text}'") from None
    if w < 64 or h < 64 or w > 4096 or h > 4096:
        raise argparse.ArgumentTypeError("size sides must be between 64 and 4096 pixels")
    return w, h


def cmd_synth(args: argparse.Namespace) -> int:
    from training.synth.dataset import SynthRequest, write_dataset

    if args.clips < 1 or args.frames < 2 or args.fps <= 0:
        raise ConfigError("--clips must be >= 1, --frames >= 2 and --fps > 0")
    request = SynthRequest(
        out=Path(args.out), clips=args.clips, seed=args.seed, size=args.size, frames=args.frames,
        fps=args.fps, workers=max(1, args.workers), kind=args.kind, style=args.style, landmarks=args.landmarks,
    )
    records = write_dataset(request, progress=None if not args.quiet else False)
    smoke = sum(r.label == "smoke" for r in records)
    print(json.dumps({"out": str(request.out), "clips": len(records), "smoke": smoke, "no_smoke": len(records) - smoke,
                      "manifest": str(request.out / "manifest.csv"), "contact_sheet": str(request.out / "contact_sheet.png")}))
    return 0


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write synthetic smoke and hard-negative clips with labels and a manifest")
    p.add_argument("out", help="output folder (created)")
    p.add_argument("--clips", type=positive_int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same clips")
    p.add_argument("--size", type=_size, help="frame size WxH (default: varied, 640x360 to 1024x576)")
    p.add_argument("--frames", type=positive_int, default=48, help="frames per clip (default 48)")
    p.add_argument("--fps", type=positive_float, default=8.0, help="frame rate written into the videos (default 8)")
    p.add_argument("--kind", choices=["smoke", "smoke+negatives", "negatives"], help="only this kind of clip")
    p.add_argument("--style", choices=["classic", "lookout"], default="classic",  # training.synth.clip.STYLES
                   help="classic: cameras on ridges and towers; lookout: summit cameras with fisheye lenses, washed-out "
                   "horizons and wind-sheared, distance-paled plumes (default classic)")
    p.add_argument("--landmarks", type=probability, default=0.0, metavar="SHARE",
                   help="share of clips (0-1) that also show pale landmarks standing still: bare and birch trunks, "
                   "rock and snow, masts; the other clips stay as they are (default 0)")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel processes (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    add_train_commands(sub)

    from training.evaluation.command import add_evaluate_command

    add_evaluate_command(sub)


def _load_or_create(model: str | None, heads: list[str] | None = None):
    """The bundle given by --model (which must load: a typo must not start training from random
    networks), or a new one with the default architecture and only the heads about to be trained."""
    from pipeline.bundle import ModelBundle
    from pipeline.config import HEAD_NAMES

    from training.recipe import deciding_among, default_config

    if model:
        return ModelBundle.load(model)
    heads = heads or list(HEAD_NAMES)
    return ModelBundle.create(deciding_among(default_config(), heads), heads=heads, name="smokewatch-custom")


def _split_data(values: list[str]):
    """--data values: manifest folders (synthetic clips) and YOLO image folders (`DIR` or `DIR:classes`)."""
    from training.datasets import RealSet

    manifests, real = [], []
    for value in values or []:
        candidate = RealSet.parse(value)
        if (candidate.path / "manifest.csv").is_file():
            manifests.append(candidate.path)
        elif (candidate.path / "images").is_dir():
            real.append(candidate)
        else:
            raise ConfigError(f"{value} is neither a manifest folder nor a YOLO image folder (images/ + labels/)")
    return manifests, real


def _training_device(name: str | None) -> str:
    """--device of a training command, checked before any work: "cpu", or "cuda"/"cuda:N" when
    that GPU is here (auto picks it). Resolved, so the bundle's record says where it trained."""
    from pipeline.models import resolve_device

    return str(resolve_device(name))


def _add_device_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--device", metavar="D", help=f"auto, cpu, cuda or cuda:N for {what} (default auto: a CUDA GPU when there is one)")


def _parse_heads(text: str) -> list[str]:
    from pipeline.config import HEAD_NAMES

    heads = list(HEAD_NAMES) if text == "all" else [h.strip() for h in text.split(",") if h.strip()]
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown or not heads:
        raise ConfigError(f"unknown head {', '.join(unknown) or '(none)'}; use all or names from {', '.join(HEAD_NAMES)}")
    return heads


def cmd_train_detector(args: argparse.Namespace) -> int:
    from pipeline.bundle import ModelBundle

    if args.eval:
        from training.detector import evaluate_detector
        from training.datasets import RealSet, read_yolo_folder
        from pipeline.config import override_bundle_config
        from service.cli import parse_sets
        from training.recipe import _detector_for

        if args.arch:
            raise ConfigError("--eval scores the --model bundle's own detector; --arch only chooses what to train")
        overrides = parse_sets(args.set)
        bundle = ModelBundle.load(args.model) if args.model else ModelBundle.load(_default_model())
        if args.imgsz:
            overrides["detector.imgsz"] = args.imgsz
        bundle.config = override_bundle_config(bundle.config, overrides)  # this evaluation only; the bundle on disk is unchanged
        target = RealSet.parse(args.eval)
        images = read_yolo_folder(target.path, target.smoke_classes)
        detector = _detector_for(bundle, _training_device(args.device))
        threshold = bundle.config.detector.conf if args.threshold is None else args.threshold
        scores = evaluate_detector(detector, images, threshold, progress=None if not args.quiet else False)
        tiles = bundle.config.detector.tiles
        print(json.dumps({"data": str(target.path), "model": str(bundle.path), "imgsz": bundle.config.detector.imgsz,
                          "tiles": tiles.model_dump() if tiles else None, **scores.to_json()}, indent=2))
        return 0
    if args.set:
        raise ConfigError("--set changes how --eval runs the detector; to train with other settings, use --imgsz and --arch")
    if args.adopt:
        return _adopt_detector(args)
    if not args.data or not (args.out or args.pack):
        raise ConfigError("train detector needs --data DIR (one or more) and --out BUNDLE_DIR or --pack FILE (or --eval DIR)")
    from training.recipe import train_detector_stage

    if args.finetune and not args.model:
        raise ConfigError("--finetune continues from a bundle's detector: name it with --model BUNDLE")
    if args.finetune and args.arch:
        raise ConfigError("--finetune keeps the bundle's detector architecture; drop --arch, or train from scratch without --finetune")
    if args.pack and args.device:
        raise ConfigError("--pack writes a job that trains on another machine; give the device there: "
                          "python -m training.detector_job run JOB OUT --device 0")
    device = _training_device(args.device)
    bundle = _load_or_create(args.model)
    overrides = {k: v for k, v in {"detector.arch": args.arch, "detector.imgsz": args.imgsz}.items() if v}
    if overrides:
        bundle.config = bundle.config.with_overrides(overrides)
    manifests, real = _split_data(args.data)
    target = Path(args.pack or args.out)
    work = Path(args.work or target.with_name(target.name + "-work"))
    if args.pack:
        from training.detector_job import PackOptions, pack_detector_job

        options = PackOptions(frames_per_clip=args.frames_per_clip, max_real=args.max_real, seed=args.seed)
        job = pack_detector_job(bundle, manifests, real, work, target, options, finetune=args.finetune,
                                progress=None if not args.quiet else False)
        size = target.stat().st_size / 2**20
        print(json.dumps({"job": str(target), "MiB": round(size, 1), "data": job["data"],
                          "next": f"python -m training.detector_job run {target.name} OUT (where torch and ultralytics are), "
                                  "then smokewatch train detector --adopt OUT --model BUNDLE --out BUNDLE"}, indent=2))
        return 0
    record = train_detector_stage(bundle, manifests, real, work, args.epochs, args.hours, args.seed,
                                  frames_per_clip=args.frames_per_clip, max_real=args.max_real,
                                  progress=None if not args.quiet else False, finetune=args.finetune, device=device)
    bundle.save(args.out)
    print(json.dumps({"bundle": str(args.out), "detector_finetune" if args.finetune else "detector": record}, indent=2, default=str))
    return 0


def _adopt_detector(args: argparse.Namespace) -> int:
    """`train detector --adopt DIR`: a detector trained elsewhere from a --pack job goes into a bundle."""
    from training.detector_job import adopt_detector_job

    if not args.model or not args.out:
        raise ConfigError("--adopt puts a trained job's detector into a bundle: name it with --model BUNDLE and --out BUNDLE")
    bundle = _load_or_create(args.model)
    try:
        record = adopt_detector_job(bundle, Path(args.adopt))
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    bundle.save(args.out)
    print(json.dumps({"bundle": str(args.out), "detector": {k: record.get(k) for k in ("started_from", "epochs_run", "machine", "ultralytics_val_best")}}, indent=2))
    return 0


def _default_model() -> Path:
    from service.cli import resolve_model

    return resolve_model(None)


def _eval_regions(args: argparse.Namespace) -> int:
    """`train verifier --eval DIR`: the bundle's heads on still real regions of a YOLO image folder."""
    from pipeline.engine import Engine
    from training.datasets import RealSet, read_yolo_folder
    from training.regions import score_regions

    target = RealSet.parse(args.eval)
    if not (target.path / "images").is_dir():
        raise ConfigError(f"--eval needs a YOLO image folder (images/ and labels/): {target.path} has no images/")
    model = Path(args.model) if args.model else _default_model()
    heads = None if args.heads == "all" else _parse_heads(args.heads)
    engine = Engine.from_path(model, device=_training_device(args.device), heads=heads)
    images = read_yolo_folder(target.path, target.smoke_classes)
    scores = score_regions(engine, images, args.threshold, seed=args.seed, progress=None if not args.quiet else False)
    print(json.dumps({"data": str(target.path), "model": str(model), "deciding_head": engine.primary,
                      "heads": {name: s.to_json() for name, s in scores.items()}}, indent=2))
    return 0


def cmd_train_verifier(args: argparse.Namespace) -> int:
    from training.backbone import BackboneOptions
    from training.recipe import train_backbone_stage, train_verifier_stage
    from training.splits import detector_split
    from training.verifier import HeadTrainingOptions

    if args.eval:
        return _eval_regions(args)
    if not args.data or not args.out:
        raise ConfigError("train verifier needs --data DIR (one or more) and --out BUNDLE_DIR (or --eval DIR)")
    heads = _parse_heads(args.heads)
    device = _training_device(args.device)
    manifests, real = _split_data(args.data)
    if not manifests:
        raise ConfigError("train verifier needs at least one manifest folder in --data (clips with smoke and without)")
    bundle = _load_or_create(args.model, heads)
    had_scorer = bundle.scorer is not None
    progress = None if not args.quiet else False
    out: dict = {"bundle": str(args.out)}
    if args.backbone or args.crop_size:
        from training.recipe import fresh_architecture, with_backbone

        if args.backbone_epochs == 0:
            raise ConfigError("--backbone and --crop-size build a new backbone, which needs --backbone-epochs above 0")
        kept = [h for h in bundle.heads if h not in heads]
        bundle = fresh_architecture(bundle, with_backbone(bundle.config, args.backbone, args.crop_size), heads)
        if kept:
            out["heads_dropped"] = kept  # they read the old backbone's features
    if args.change_cues is not None:
        from training.verifier import set_change_cues

        dropped = set_change_cues(bundle, args.change_cues == "on", heads)
        if dropped:
            out["heads_dropped"] = dropped  # trained on the other input; retrain them with --heads to keep them
    split = detector_split(bundle.metadata.provenance, args.seed) if args.shared_validation else None
    if args.backbone_epochs > 0:
        options = BackboneOptions(epochs=args.backbone_epochs, seed=args.seed, split=split, device=device)
        out["extractor"] = train_backbone_stage(bundle, manifests, real, options, progress)
    cache = Path(args.cache) if args.cache else Path(args.out).with_name(Path(args.out).name + "-work") / "window-cache"
    options = HeadTrainingOptions(epochs=args.epochs, seed=args.seed, cache_dir=cache, split=split, still_regions=args.still_regions,
                                  device=device)
    record = train_verifier_stage(bundle, manifests, heads, options, progress)
    bundle.save(args.out)
    out["verifier"] = {name: {k: r[k] for k in ("val", "best_epoch", "parameters")} for name, r in record["heads"].items()}
    out["deciding_head"] = bundle.config.verifier.head
    if split is not None:
        out["validation_split"] = split.to_json()
    if had_scorer and bundle.scorer is None:  # it learnt the old heads' probabilities
        out["track_scorer"] = "dropped: it read heads trained anew or dropped here; fit one with smokewatch train decision"
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_train_decision(args: argparse.Namespace) -> int:
    """Run the bundle over the tuning clips once with every head the scorer reads, then fit it."""
    from pipeline.bundle import ModelBundle
    from pipeline.engine import Engine
    from service.cli import resolve_model
    from training.datasets import read_items
    from training.evaluation.command import parse_heads
    from training.evaluation.runner import run_items
    from training.recipe import train_decision_stage

    if args.veto is not None and not args.flow:
        raise ConfigError("--veto goes with --flow: only a scorer that reads the flow has a fallback to veto it")
    items = [item for folder in args.data for item in read_items(folder)]  # a malformed manifest stops here
    bundle = ModelBundle.load(resolve_model(args.model))
    heads = parse_heads(args.heads, list(bundle.heads))
    missing = [h for h in heads if h not in bundle.heads]
    if missing or not heads:
        raise ConfigError(f"the bundle has no head {', '.join(missing) or '(none asked for)'} (it has {', '.join(bundle.heads)})")
    # the heads' probabilities (and, for --flow, the flow in each region) are what is needed
    config = bundle.config.with_overrides({"decision.scorer_threshold": None, "flow.enabled": args.flow})
    engine = Engine(bundle, device=args.device, heads=heads, config=config)
    traces = run_items(engine, items, progress=None if not args.quiet else False)
    record = train_decision_stage(bundle, traces, [Path(d) for d in args.data], heads, args.seed, args.min_tnr,
                                  flow=args.flow, min_heads=args.min_heads, veto=args.veto)
    data = " ".join(f"--data {d}" for d in args.data)
    record["command"] = (f"smokewatch train decision {data} --model {bundle.path} --heads {','.join(heads)} --seed {args.seed}"
                         f" --min-tnr {record['min_tnr']}" + (" --flow" if args.flow else "")
                         + (f" --min-heads {args.min_heads}" if args.min_heads is not None else "")
                         + (f" --veto {record['fallback']['veto']}" if "fallback" in record else ""))
    bundle.save(args.out)
    print(json.dumps({"bundle": str(args.out), **record}, indent=2, default=str))
    return 0


def cmd_train_ensemble(args: argparse.Namespace) -> int:
    """Join another trained bundle's backbone and heads into --model as an ensemble member."""
    from pipeline.bundle import ModelBundle
    from service.cli import resolve_model

    path, other_path = resolve_model(args.model), resolve_model(args.add)
    bundle, other = ModelBundle.load(path), ModelBundle.load(other_path)
    added = bundle.add_member(args.name, other)
    record = bundle.metadata.provenance["ensemble"][args.name]
    record["from"] = str(other_path)
    bundle.save(args.out)
    print(json.dumps({
        "bundle": str(args.out),
        "member": args.name,
        "extractor": f"{other.config.extractor.backbone}@{other.config.extractor.input_size}",
        "heads_added": added,
        "same_detector": record["same_detector"],
        "next": f"fit a track scorer that reads them: smokewatch train decision --data TUNING_CLIPS --model {args.out} --out OUT",
    }, indent=2))
    return 0


def _member_side(text: str) -> int | None:
    """--member-crop-size: a crop side, or 0 for no ensemble member."""
    return None if text.strip() == "0" else crop_side(text)


def _add_backbone_arguments(p: argparse.ArgumentParser, instead: str) -> None:
    """--backbone and --crop-size: train another crop-feature network than the bundle's."""
    from typing import get_args

    from pipeline.config import BackboneName

    p.add_argument("--backbone", choices=get_args(BackboneName),
                   help=f"train a new backbone of this torchvision architecture from random initialisation, {instead}")
    p.add_argument("--crop-size", type=crop_side, metavar="PX",
                   help=f"crop side the new backbone reads, 32 to 512 px (larger sees thin plumes sharper and costs "
                   f"about (PX/112)^2 times the compute), {instead}")


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train the detector, the backbone and verifier heads, or the default bundle")
    tsub = train.add_subparsers(dest="train_command", metavar="WHAT", required=True)

    p = tsub.add_parser("detector", help="train the YOLO detector (or score it with --eval)")
    p.add_argument("--data", action="append", metavar="DIR", help="manifest folder of clips with labels/, or YOLO image folder (DIR:1 = class 1 is smoke); repeatable")
    p.add_argument("--model", metavar="BUNDLE", help="start from this bundle (default: a new bundle with the default config)")
    p.add_argument("--out", metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--arch", help="ultralytics model yaml (default: the bundle's)")
    p.add_argument("--imgsz", type=positive_int, help="training and inference image size (default: the bundle's)")
    p.add_argument("--epochs", type=positive_int, default=30, help="epochs (default 30)")
    p.add_argument("--hours", type=positive_float, help="stop after this many hours (ultralytics fits the schedule to it)")
    p.add_argument("--frames-per-clip", type=positive_int, default=5, help="labelled frames taken from each synthetic clip (default 5)")
    p.add_argument("--max-real", type=positive_int, default=1200, help="most images taken from each real set (default 1200)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--work", metavar="DIR", help="work folder for the assembled dataset and runs (default: next to --out)")
    p.add_argument("--finetune", action="store_true", help="continue from the --model bundle's detector weights instead of starting from scratch")
    p.add_argument("--eval", metavar="DIR", help="score the --model bundle's detector on a YOLO image folder instead of "
                   "training: image-level precision and recall, mAP50, and how often its boxes lie on the smoke ('located')")
    p.add_argument("--threshold", type=probability,
                   help="confidence at which an image counts as showing smoke, for image-level precision/recall (default: "
                   "the bundle's detector.conf, the threshold the pipeline runs at; the detector keeps no box below it, so "
                   "a lower one reads the same)")
    p.add_argument("--pack", metavar="FILE",
                   help="instead of training, write the dataset (shrunk to the detector's input size) and start weights into "
                   "FILE (.tgz) for `python -m training.detector_job run` on a GPU machine with only torch and ultralytics")
    p.add_argument("--adopt", metavar="DIR",
                   help="put the detector a --pack job trained (DIR: its detector.pt and result.json) into the --model bundle, "
                   "written to --out")
    _add_device_argument(p, "training (ultralytics takes the GPU's index) and --eval")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="with --eval: run the detector with this config value changed, e.g. detector.tiles.size=320 "
                   "(overlapping tiles) or detector.conf=0.1; repeatable; the bundle on disk is not changed")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_detector)

    p = tsub.add_parser("verifier", help="train the backbone on crops and the verifier heads on smoke tubes")
    p.add_argument("--data", action="append", metavar="DIR", help="manifest folder (and optional YOLO folders DIR:1 for backbone crops); repeatable")
    p.add_argument("--heads", default="all", help="all, or comma-separated head names (default all)")
    p.add_argument("--model", metavar="BUNDLE", help="bundle with the trained detector (default: a new bundle)")
    p.add_argument("--out", metavar="BUNDLE", help="bundle folder to write")
    p.add_argument("--backbone-epochs", type=non_negative_int, default=4, help="epochs of crop training for the backbone; 0 keeps it as is (default 4)")
    p.add_argument("--epochs", type=positive_int, default=40, help="most epochs per head (early stopping ends sooner)")
    _add_backbone_arguments(p, "instead of the --model bundle's; its heads not trained here leave the bundle")
    p.add_argument("--change-cues", choices=["on", "off"],
                   help="feed the heads how each region changed over its window beside its crop features "
                   "(default: as the --model bundle has it); heads not retrained here leave the bundle when this changes")
    p.add_argument("--shared-validation", action="store_true",
                   help="backbone and heads validate on the same clips, those the --model bundle's detector validated on "
                   "(chosen by clip name with the seed its training record holds; --seed for a detector without one), "
                   "instead of each drawing its own; off by default, as the shipped bundle")
    p.add_argument("--still-regions", type=non_negative_int, default=0, metavar="K",
                   help="also hold K regions of each clip still for the whole clip (half on its palest spots, half "
                   "anywhere) and train the heads on their windows, labelled by the ground truth like every window: what "
                   "nothing proposes during training but real footage shows, a pale trunk, a dirt track, fog drifting "
                   "over a building (default 0, as the shipped heads)")
    p.add_argument("--cache", metavar="DIR", help="folder for cached window features (default: next to --out)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--eval", metavar="DIR", help="instead of training, score the --model bundle's heads (default: the shipped "
                   "bundle) on still regions of a YOLO image folder: its smoke boxes against background (DIR:1 = class 1 is smoke)")
    p.add_argument("--threshold", type=probability, help="probability a region must reach with --eval (default: the bundle's decision threshold)")
    _add_device_argument(p, "the backbone, the window features, the heads and --eval")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_verifier)

    p = tsub.add_parser("decision", help="train the track scorer: a learned decision over each region's history")
    p.add_argument("--data", required=True, action="append", metavar="DIR",
                   help="manifest folder of labelled clips the heads never learnt from, and not the clips you test on; repeatable")
    p.add_argument("--model", metavar="BUNDLE", help="bundle whose heads the scorer reads (default: the shipped bundle)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write (the bundle with the scorer switched on)")
    p.add_argument("--heads", default="all", help="heads the scorer reads: all, or comma-separated names (default all)")
    p.add_argument("--min-tnr", type=probability, default=None,
                   help="the threshold keeps at least this TNR on the clips, out of fold, where any threshold can "
                        "(default 0.95; 0 picks the best F1 alone)")
    p.add_argument("--flow", action="store_true",
                   help="the scorer also reads how the picture moves inside each region (optical flow; the bundle then measures it)")
    p.add_argument("--min-heads", type=probability, default=None, metavar="P",
                   help="confirm only while the heads' mean p on the region's current window is at least P "
                        "(decision.scorer_min_heads; default: no gate)")
    p.add_argument("--veto", type=probability, default=None, metavar="P",
                   help="with --flow: a flow confirmation also needs the fallback (the bundle's own scorer, or one "
                        "fitted first without flow, which decides windows with no measured flow) to give the region at "
                        "least P (decision.fallback_veto; default 0.5, 0 turns it off)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", help="device for the engine (default: the bundle's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_decision)

    p = tsub.add_parser("ensemble", help="join another trained bundle's backbone and heads into a bundle, as a second "
                        "opinion for its track scorer (no training here; fit the scorer with train decision)")
    p.add_argument("--model", metavar="BUNDLE", help="the bundle to add to (default: the shipped bundle)")
    p.add_argument("--add", required=True, metavar="BUNDLE",
                   help="the bundle whose backbone and heads join it (trained around the same detector, e.g. by "
                        "train verifier --crop-size 160; its detector and scorer are not taken)")
    p.add_argument("--name", required=True, metavar="NAME", help="member name (its heads become NAME/HEAD, e.g. c160/gru)")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    p.set_defaults(func=cmd_train_ensemble)

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    p = tsub.add_parser("default", help="build the shipped default bundle: synthetic data, detector, backbone, six heads, scores")
    p.add_argument("--out", metavar="BUNDLE", help="where to write it (default: the shipped bundle folder)")
    p.add_argument("--work", default=str(Path.home() / ".cache" / "smokewatch" / "train-default"), metavar="DIR",
                   help="work folder; finished stages with the same settings are reused (default ~/.cache/smokewatch/train-default)")
    p.add_argument("--real", action="append", default=[], metavar="DIR[:CLASSES]",
                   help=f"real YOLO training set (default: {shared / 'train-real' / 'fire-and-smoke-ccby'}:1 when present)")
    p.add_argument("--validate", action="append", default=[], metavar="DIR",
                   help="real validation folders to score (never trained on): manifest folders and YOLO image folders")
    p.add_argument("--clips", type=positive_int, default=320, help="synthetic training clips (default 320)")
    p.add_argument("--detector-hours", type=positive_float, default=1.75, help="time limit of detector training (default 1.75)")
    p.add_argument("--detector-epochs", type=positive_int, default=12, help="detector epochs (default 12, fitted to the time limit)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=0,
                   help="epochs of detector training continued on 120 lookout-style clips beside the first data, which the "
                   "backbone and heads then learn from too; 0 skips it, as the shipped bundle did (default 0)")
    p.add_argument("--finetune-hours", type=positive_float, default=0.7, help="time limit of that continued training (default 0.7)")
    p.add_argument("--head-clips", type=non_negative_int, default=0,
                   help="more classic clips (seed 1200) that only the verifier heads learn from (default 0)")
    p.add_argument("--change-cues", action="store_true",
                   help="train heads that also read how each region changed over its window (extractor.change_cues); "
                   "off by default, as in the shipped bundle")
    p.add_argument("--positive-jitter", type=non_negative_int, default=0,
                   help="extra backbone positives per smoke box, shifted and rescaled as proposals sit on a plume (default 0)")
    p.add_argument("--small-positive-jitter", type=non_negative_int, default=2, metavar="N",  # DefaultRecipe.small_positive_jitter
                   help="extra backbone positives per smoke box at most 48 px tall, shifted and rescaled, for the small "
                   "plumes the heads find hardest (0 turns it off; default %(default)s, as the shipped backbones)")
    p.add_argument("--detector-positives", action="store_true",
                   help="also teach the backbone the detector's own boxes on plumes as smoke (off by default)")
    p.add_argument("--backbone-frames", type=positive_int, metavar="N",
                   help="frames per training clip the backbone's crops are cut from, spread over the clip; more frames "
                   "show more plumes young and small (default 6, as the shipped backbone)")
    p.add_argument("--backbone-weather", action="store_true",
                   help="train the backbone on crops seen through haze, colour casts, blur and noise too (off by default, "
                   "as the shipped backbone)")
    _add_backbone_arguments(p, "instead of MobileNetV3-small at 112 px (the shipped backbone)")
    p.add_argument("--member-crop-size", type=_member_side, default=64, metavar="PX",  # DefaultRecipe.member_crop_size
                   help="also train a second backbone reading PX px crops, with six heads of its own, as ensemble member "
                        "cPX whose heads the track scorer reads too (default %(default)s, as the shipped bundle; it costs "
                        "about 1.3x a frame; 0: no member)")
    p.add_argument("--landmarks", type=probability, default=0.0, metavar="SHARE",
                   help="share of the training clips that also show pale landmarks standing still (synth --landmarks); "
                   "the tuning and held-out clips stay as they are (default 0)")
    p.add_argument("--real-detector-negatives", action="store_true",
                   help="also teach the backbone the detector's boxes on the real training images that miss their smoke "
                   "labels as not-smoke (off by default)")
    p.add_argument("--still-regions", type=non_negative_int, default=4, metavar="K",  # DefaultRecipe.still_regions
                   help="the heads also learn from K regions of each training clip held still for the whole clip "
                   "(train verifier --still-regions; 0 turns it off; default %(default)s, as the shipped heads)")
    p.add_argument("--shared-validation", action="store_true",
                   help="backbone and heads validate on the training clips the detector validated on, so the heads' "
                   "validation figure and early stopping read clips no stage learnt from (off by default, as the shipped bundle)")
    p.add_argument("--detector-from", metavar="BUNDLE",
                   help="take the detector of this bundle (e.g. one `train detector --finetune` wrote) instead of "
                   "training one; the later stages learn around it")
    p.add_argument("--no-track-scorer", dest="track_scorer", action="store_false",
                   help="decide with the tuned k-of-n rule only; by default the track scorer is fitted on the tuning clips "
                   "and decides when it beats the rule there")
    p.add_argument("--scorer-flow", action="store_true",
                   help="the track scorer also reads the optical flow in each region (off by default; see training/EXPERIMENTS.md)")
    p.add_argument("--scorer-min-heads", type=probability, default=None, metavar="P",
                   help="the track scorer confirms only while the heads' mean p on the current window is at least P "
                   "(default: no gate)")
    p.add_argument("--tune-clips", type=positive_int, default=300, help="clips the head and decision rule are picked on (default 300)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--force", action="store_true", help="retrain every stage and replace the bundle even if it scores lower")
    _add_device_argument(p, "every stage: training, window features, traces and scores")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_default, default_real=str(shared / "train-real" / "fire-and-smoke-ccby") + ":1",
                   default_validate=[str(shared / "real-sample"), str(shared / "val-real" / "hpwren-smoke-aifm")])


def cmd_train_default(args: argparse.Namespace) -> int:
    """The one command that builds the shipped default bundle (see README, "The default model")."""
    from pipeline.bundle import DEFAULT_BUNDLE, ModelBundle
    from training.datasets import RealSet
    from training.recipe import DefaultRecipe, train_default

    real = [RealSet.parse(r) for r in (args.real or ([args.default_real] if Path(args.default_real.rsplit(":", 1)[0]).is_dir() else []))]
    missing = [str(r.path) for r in real if not (r.path / "images").is_dir()]
    if missing:
        raise ConfigError(f"real training set not found: {', '.join(missing)}")
    if args.detector_from:
        ModelBundle.load(args.detector_from)  # a wrong folder is said now, not after the synthetic clips are written
    recipe = DefaultRecipe(
        out=Path(args.out or DEFAULT_BUNDLE), work=Path(args.work), real=real, seed=args.seed,
        train_clips=args.clips, detector_hours=args.detector_hours, detector_epochs=args.detector_epochs,
        finetune_epochs=args.finetune_epochs, finetune_hours=args.finetune_hours,
        head_clips=args.head_clips, tune_clips=args.tune_clips, change_cues=args.change_cues,
        positive_jitter=args.positive_jitter, small_positive_jitter=args.small_positive_jitter,
        detector_positives=args.detector_positives, track_scorer=args.track_scorer,
        scorer_flow=args.scorer_flow, scorer_min_heads=args.scorer_min_heads,
        real_detector_negatives=args.real_detector_negatives, backbone_weather=args.backbone_weather,
        landmarks=args.landmarks, shared_validation=args.shared_validation, still_regions=args.still_regions,
        **({"backbone_frames": args.backbone_frames} if args.backbone_frames else {}),  # else the recipe's, as shipped
        detector_from=Path(args.detector_from) if args.detector_from else None,
        validation=[Path(v) for v in (args.validate or [d for d in args.default_validate if Path(d).is_dir()])], force=args.force,
        backbone=args.backbone, crop_size=args.crop_size, member_crop_size=args.member_crop_size,
        device=_training_device(args.device),
    )
    recipe.config()  # a crop side out of range is said now, not after the synthetic clips are written
    command = shlex.join(["smokewatch", *args.argv]) if getattr(args, "argv", None) else "smokewatch train default"
    report = train_default(recipe, progress=None if not args.quiet else False, command=command)
    print(json.dumps(report, indent=2, default=str))
    return 0
