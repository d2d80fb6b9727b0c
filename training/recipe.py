"""The steps that turn data into a model bundle, shared by `smokewatch train ...` commands.

    detector  -> train_detector_stage   (ultralytics, synthetic frames + real YOLO sets)
    backbone  -> train_backbone_stage   (smoke / not-smoke crops, since no ImageNet weights exist)
    verifier  -> train_verifier_stage   (all requested heads on cached tube features)

Each stage writes what it did into the bundle's provenance and metrics, so a shipped bundle
says how it was made.
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from pipeline.bundle import ModelBundle
from pipeline.config import BackboneName, PipelineConfig
from pipeline.detector import Detector
from pipeline.models import fuse_for_inference, resolve_device, smoke_class_index

from .backbone import BackboneOptions, collect_crops, train_backbone
from .datasets import RealSet, read_manifest, read_yolo_folder
from .detector import build_detector_dataset, train_detector
from .detector_job import save_start_checkpoint
from .metrics import Interval, f1_difference_interval
from .scorer import MIN_TNR
from .splits import detector_split
from .verifier import HeadTrainingOptions, drop_scorer, train_heads

CCBY_ATTRIBUTION = (
    '"Fire and Smoke Detection" dataset, version 1, by vicky-vishnu on Roboflow Universe '
    "(project fire-and-smoke-detection-hiwia-1vzaj), forked from the Middle East Technical University "
    "project of the same name; licence CC BY 4.0"
)


def environment() -> dict:
    import ultralytics

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}",
    }


def _detector_for(bundle: ModelBundle, device: str) -> Detector:
    target = resolve_device(device)
    network = fuse_for_inference(copy.deepcopy(bundle.detector)).to(target)
    return Detector(network, bundle.config.detector, smoke_class_index(bundle.detector_names, bundle.config.detector.smoke_class), target)


def train_detector_stage(
    bundle: ModelBundle,
    synth_dirs: list[Path],
    real_sets: list[RealSet],
    work: Path,
    epochs: int,
    hours: float | None,
    seed: int,
    frames_per_clip: int = 5,
    max_real: int | None = 1200,
    batch: int = 16,
    progress: bool | None = None,
    finetune: bool = False,
    device: str = "cpu",
) -> dict:
    """Train the bundle's detector: from its architecture, or with `finetune` onward from the
    weights it holds (hours of CPU training are not thrown away when new footage arrives)."""
    cfg = bundle.config.detector
    target = resolve_device(device)
    dataset = build_detector_dataset(
        work / "detector-data", synth_dirs, real_sets,
        frames_per_clip=frames_per_clip, max_real=max_real, seed=seed, progress=progress,
    )
    start_weights = None
    if finetune:
        start_weights = work / "start.pt"
        save_start_checkpoint(bundle.detector, bundle.detector_names, start_weights)
    start = time.perf_counter()
    result = train_detector(dataset, cfg.arch, cfg.imgsz, epochs, work / "runs", hours=hours, batch=batch, seed=seed,
                            device="cpu" if target.type == "cpu" else str(target.index or 0),  # ultralytics names GPUs by index
                            resume_from=start_weights, warmup_epochs=1.0 if finetune else 3.0)
    bundle.detector, bundle.detector_names = result.network, {0: "smoke"}
    record = {
        "started_from": "the bundle's detector weights" if finetune else "random initialisation",
        "arch": cfg.arch,
        "imgsz": cfg.imgsz,
        "epochs_requested": epochs,
        "hours_limit": hours,
        "seed": seed,
        "data": {"synthetic": [str(p) for p in synth_dirs], "real": [f"{r.path} (smoke classes {sorted(r.smoke_classes)})" for r in real_sets], **dataset.counts},
        "split": "synthetic by clip, real by groups.csv source group (stills each their own group)",
        "ultralytics_val_best": result.metrics,
        "seconds": round(time.perf_counter() - start, 1),
        "device": str(target),
    }
    earlier = bundle.metadata.provenance.get("detector_finetune")
    if finetune and earlier is not None:  # fine-tuned once before: that record says where these weights came from
        record["after"] = earlier
    bundle.metadata.provenance["detector_finetune" if finetune else "detector"] = record
    return record


def train_backbone_stage(
    bundle: ModelBundle,
    synth_dirs: list[Path],
    real_sets: list[RealSet],
    options: BackboneOptions,
    progress: bool | None = None,
) -> dict:
    synthetic = [item for folder in synth_dirs for item in read_manifest(folder, check_frames=False)]
    real = [img for r in real_sets for img in read_yolo_folder(r.path, r.smoke_classes)]
    detector = _detector_for(bundle, options.device)
    crops = collect_crops(synthetic, real, bundle.config.extractor.input_size, bundle.config.tubes, options, detector, progress)
    # a bundle whose backbone was trained before (`train verifier --model B --backbone-epochs N`)
    # trains on from those weights, and its record must say so and keep the earlier one
    earlier = bundle.metadata.provenance.get("extractor")
    report = train_backbone(bundle.backbone, bundle.feature_dim, crops, options, progress)
    start = "continued from the bundle's trained backbone (`after`)" if earlier else "trained from random initialisation"
    bundle.metadata.provenance["extractor"] = {
        "backbone": bundle.config.extractor.backbone,
        "input_size": bundle.config.extractor.input_size,
        "how": f"{start} as a smoke / not-smoke crop classifier (classifier layer then "
        "dropped); crops cut like the engine's tube crops; negatives include the trained detector's false positives",
        **({"after": earlier} if earlier else {}),
        "seed": options.seed,
        **({"positives": positives} if (positives := _positives(options)) else {}),
        **({"crop_frames": frames} if (frames := _crop_frames(options)) else {}),
        **({"augment": augment} if (augment := _augment(options)) else {}),
        **({"split": options.split.to_json()} if options.split else {}),
        **report,
    }
    return report


def _augment(options: BackboneOptions) -> str | None:
    """The extra augmentation asked for; None when off, as in records written before it existed."""
    return "weather" if options.weather else None


def _positives(options: BackboneOptions) -> dict | None:
    """The extra backbone crops asked for; None when off, as in records written before they existed."""
    if not (options.positive_jitter or options.detector_positives or options.real_detector_negatives or options.small_jitter):
        return None
    extra = {"jitter": options.positive_jitter, "detector": options.detector_positives}
    if options.real_detector_negatives:  # only when on, so earlier stages' records still match
        extra["real_detector_negatives"] = True
    if options.small_jitter:
        extra["small_jitter"] = options.small_jitter
    return extra


def _crop_frames(options: BackboneOptions) -> int | None:
    """Frames per clip the crops came from; None for the default, as in records written before it could change."""
    return None if options.frames_per_clip == BackboneOptions.frames_per_clip else options.frames_per_clip


def train_verifier_stage(
    bundle: ModelBundle,
    data_dirs: list[Path],
    heads: list[str],
    options: HeadTrainingOptions,
    progress: bool | None = None,
) -> dict:
    """Train `heads` and record them; heads trained before (and kept in the bundle) keep their record,
    and if the bundle's deciding head was never trained, the first head trained here takes over."""
    earlier = bundle.metadata.provenance.get("verifier", {}).get("heads", {})
    items = [item for folder in data_dirs for item in read_manifest(folder, check_frames=False)]
    reports = train_heads(bundle, items, heads, options, progress)
    trained = {name: r.to_json() for name, r in reports.items()}
    kept = {name: record for name, record in earlier.items() if name in bundle.heads and name not in trained}
    if bundle.config.verifier.head not in trained and bundle.config.verifier.head not in kept:
        bundle.config = bundle.config.with_overrides({"verifier.head": heads[0]})
    record = {
        "data": [str(p) for p in data_dirs],
        "items": len(items),
        "seed": options.seed,
        "options": {k: v for k, v in vars(options).items() if k not in ("cache_dir", "split")},
        **({"split": options.split.to_json()} if options.split else {}),
        "heads": {**kept, **trained},
    }
    bundle.metadata.provenance["verifier"] = record
    if bundle.scorer is not None and set(bundle.scorer.heads) & set(trained):
        # the scorer learnt the old heads' probabilities; it would misread the new ones
        drop_scorer(bundle)
        bundle.metadata.provenance.pop("track_scorer", None)
    return record


def _fallback_for(bundle: ModelBundle, traces: list, heads: list[str], seed: int, min_tnr: float):
    """A flow scorer's fallback: the scorer the bundle decides with now (or the fallback of its flow
    scorer) where it reads only these heads, so adding the flow leaves the windows without it as
    they were; otherwise one fitted here without flow."""
    from .scorer import fit_track_scorer, kept_scorer

    scorer, decision = bundle.scorer, bundle.config.decision
    if scorer is not None and decision.scorer_threshold is not None:
        if not scorer.uses_flow and set(scorer.heads) <= set(heads):
            return kept_scorer(scorer, decision.scorer_threshold, traces)
        if scorer.fallback is not None and decision.fallback_threshold is not None and set(scorer.fallback.heads) <= set(heads):
            return kept_scorer(scorer.fallback, decision.fallback_threshold, traces)
    return fit_track_scorer(traces, heads, seed, min_tnr=min_tnr)


def train_decision_stage(bundle: ModelBundle, traces: list, data_dirs: list[Path], heads: list[str], seed: int = 0,
                         min_tnr: float | None = None, flow: bool = False, min_heads: float | None = None,
                         veto: float | None = None) -> dict:
    """Fit the track scorer (training.scorer) on traces of labelled clips run with `heads`, put it
    in the bundle with the threshold picked out of fold (keeping TNR >= `min_tnr`, by default
    training.scorer.MIN_TNR, where it can), and record how it compares with the
    bundle's k-of-n rule on the same clips (the rule's figure is in-sample when the rule was tuned
    on them, the scorer's is not). With `flow` the scorer also reads the flow in each region (the
    traces must carry it) and the bundle measures it, with a fallback without flow (the bundle's own
    scorer where it has one, else fitted first; `_fallback_for`) at decision.fallback_threshold;
    `veto`, by default training.scorer.FALLBACK_VETO, becomes decision.fallback_veto;
    `min_heads` becomes decision.scorer_min_heads."""
    from .evaluation.records import VoteOptions
    from .evaluation.scoring import score_traces
    from .scorer import FALLBACK_VETO, fit_track_scorer

    min_tnr = MIN_TNR if min_tnr is None else min_tnr
    fallback = _fallback_for(bundle, traces, heads, seed, min_tnr) if flow else None
    veto = (FALLBACK_VETO if veto is None else veto) if flow else None
    fit = fit_track_scorer(traces, heads, seed, min_tnr=min_tnr, flow=flow, min_heads=min_heads, fallback=fallback,
                           veto=veto)
    rule = bundle.config.decision.model_copy(update={"scorer_threshold": None})
    head = bundle.config.verifier.head
    rule_scores = score_traces(traces, [head], rule, VoteOptions(frames=bundle.config.tubes.window)).row(head).item
    bundle.scorer = fit.scorer
    bundle.config = bundle.config.with_overrides({
        "decision.scorer_threshold": fit.threshold, "flow.enabled": flow, "decision.scorer_min_heads": min_heads,
        "decision.fallback_threshold": fallback.threshold if fallback else None, "decision.fallback_veto": veto,
    })
    record = {"data": [str(d) for d in data_dirs], "clips": len(traces), "seed": seed, **fit.to_json(),
              "rule_on_same_clips": {"head": head, "threshold": rule.threshold, "confirm_k": rule.confirm_k,
                                     "confirm_n": rule.confirm_n, **rule_scores.to_json()}}
    bundle.metadata.provenance["track_scorer"] = record
    return record


def default_config() -> PipelineConfig:
    """The configuration of the shipped default bundle: sized for a 2-core CPU, kept sharp for small plumes.

    yolov8n rather than yolov3-tinyu: its head also predicts at stride 8 (YOLOv3-tiny stops at 16),
    which is what distant plumes of a few dozen pixels need, and it is 4x smaller and about twice as
    fast to train and run on a CPU. MobileNetV3-small at 112 px rather than ResNet50 at 224 px: it
    is trained from scratch here (no ImageNet weights), the crops are small regions anyway, and at
    about 0.6 ms a crop in ONNX Runtime (ResNet18: 7 ms) the dozen crops a frame needs stop being
    what limits a 2-core CPU. Motion proposals on:
    lookout cameras are fixed, and a detector trained from scratch on a CPU misses faint plumes
    that the background difference still sees. Change cues off (`DefaultRecipe.change_cues`
    turns them on): they helped the heads on synthetic clips but not on the real sample (training/EXPERIMENTS.md).
    """
    return PipelineConfig().with_overrides(
        {
            "detector.arch": "yolov8n.yaml",
            "detector.imgsz": 384,
            "detector.conf": 0.05,
            "extractor.backbone": "mobilenet_v3_small",
            "extractor.input_size": 112,
            "verifier.head": "deep-bilstm",
            "verifier.hidden_size": 128,
            "verifier.proj_dim": 256,
            "tubes.window": 8,
            "tubes.max_tracks": 8,
            "detector.max_det": 10,
            "motion.enabled": True,
            "sampling.fps": 4.0,
        }
    )


@dataclass
class DefaultRecipe:
    """Everything `smokewatch train default` does, with its seeds. Stages resume from the work
    folder when a finished stage with the same settings is already there."""

    out: Path
    work: Path
    real: list[RealSet]
    seed: int = 0
    train_clips: int = 320
    train_seed: int = 1000
    # 300 rather than 100: on 100 clips two or three items decide between rules
    tune_clips: int = 300
    tune_seed: int = 1500
    # 320 rather than 160 (whose clips are the first 160 of these): two draws of 160 clips disagreed
    # by more than the bundles they compared differed (training/EXPERIMENTS.md, "A second held-out
    # draw"); before that, 80 clips of seed 2000 moved F1 by about 10 points from one seed to another
    test_clips: int = 320
    test_seed: int = 3000
    detector_epochs: int = 12
    detector_hours: float | None = 1.75
    # optionally onward on lookout-style clips (summit cameras, fisheye lenses, sheared hazy plumes)
    # beside the first data; the backbone and heads then learn from those clips too. Off by default:
    # the shipped bundle was built without it, and the one candidate built with it (2026-11-27) found
    # far more plumes with the detector alone but picked a worse verifier rule on the tuning clips.
    lookout_clips: int = 120
    lookout_seed: int = 1100
    finetune_epochs: int = 0
    finetune_hours: float | None = 0.7
    # optionally more classic clips that only the verifier heads learn from (the stages before
    # them, hours of CPU, are not redone). Off by default: heads stop improving after about 5
    # epochs, but 320 more clips (2026-11-27, training/EXPERIMENTS.md) left them as they were, so scenes are not
    # what they lack.
    head_clips: int = 0
    head_seed: int = 1200
    # optionally heads that also read how each region changed over its window (extractor.change_cues).
    # Off by default: on 2026-11-28 it raised F1 on 160 held-out synthetic clips from 82.0 to 84.3
    # and TNR from 95.7 to 97.8, but got two of the four real-sample clips wrong (training/EXPERIMENTS.md).
    change_cues: bool = False
    frames_per_clip: int = 4
    max_real: int = 900
    backbone_epochs: int = 8
    # optionally off-centre positives for the backbone (BackboneOptions.positive_jitter and
    # detector_positives). Off by default: on 2026-11-28 three heads on such a backbone scored F1
    # 83.5 / TNR 93.5 on the held-out clips (shipped 82.0 / 95.7) and got the four real clips right
    # (training/EXPERIMENTS.md).
    positive_jitter: int = 0
    detector_positives: bool = False
    # more positives for small smoke boxes alone (BackboneOptions.small_jitter): this many shifted and
    # rescaled crops per box at most 48 px tall (716 more beside 2232 centred positives), for the small
    # plumes the heads scored too low. 2 since 2026-12-05, as the shipped backbones: against the same
    # recipe without them, 211 of 231 held-out plumes found at 4 false alarms instead of 204 at 3, and
    # the four real clips right instead of three (training/EXPERIMENTS.md, "More small-plume crops").
    small_positive_jitter: int = 2
    # frames per training clip the backbone's crops are cut from, spread evenly over the clip. The
    # shipped backbone used 6, which shows each plume at about four stages and few of them young,
    # while most missed plumes are young and small. 16 (2026-11-29: 2108 synthetic positives
    # instead of 767) raised the heads' window F1 on their validation clips from 0.79-0.84 to
    # 0.87-0.89 and held-out window AP from 0.58 to 0.60, but lowered held-out item F1 from 86.9
    # to 77.2 (paired interval -16.4 to -3.8 points), so the default stays (training/EXPERIMENTS.md).
    backbone_frames: int = BackboneOptions.frames_per_clip
    # optionally haze, colour casts, blur and noise on the backbone's training crops
    # (BackboneOptions.weather), for the grey plumes behind fog and haze it misses most. Off by
    # default: on 2026-12-03 it scored 84.30 / 97.83 held out (shipped 83.87 / 95.65, paired interval
    # -4.5 to +5.6), found one grey plume fewer, and missed the real drone clip (training/EXPERIMENTS.md).
    backbone_weather: bool = False
    # optionally one validation split for every stage: the backbone and the heads validate on the
    # training clips the detector validated on (training.splits), so the heads' validation figure
    # and their early stopping read clips no stage learnt from. Off by default, as the shipped bundle
    # was trained: there the heads validate on clips the backbone learnt from, and their validation
    # F1 rose with every backbone change tried while held-out F1 fell (training/EXPERIMENTS.md). On 2026-12-03 it
    # tied the shipped bundle held out (83.87 / 95.65) with 3 of 4 real clips right (training/EXPERIMENTS.md).
    shared_validation: bool = False
    # optionally pale landmarks standing still (trunks, rock, masts) in this share of the training
    # clips (`smokewatch synth --landmarks`); the tuning and held-out clips stay as they are.
    landmarks: float = 0.0
    # optionally the detector's false positives on the real training images as backbone negatives
    # (BackboneOptions.real_detector_negatives), beside those on synthetic frames.
    real_detector_negatives: bool = False
    # this many regions of each training clip held still for the whole clip, as more head windows
    # (HeadTrainingOptions.still_regions): the pale near-field things and the fog over near objects
    # that the heads took for smoke on real footage are never proposed in training. 4 since
    # 2026-12-04, as the shipped heads: 86.89 / 98.91 held out against 83.87 / 95.65 (training/EXPERIMENTS.md).
    still_regions: int = 4
    # optionally a detector trained before (a bundle folder, e.g. one `smokewatch train detector
    # --finetune` wrote) instead of the detector stage: the later stages then learn around it. Its
    # own provenance, which says how it was trained, goes into the new bundle.
    detector_from: Path | None = None
    # the track scorer (training.scorer), fitted on the tuning clips' traces, decides when its
    # out-of-fold F1 there beats the rule's (the rule's own figure is in-sample, so ties go to the
    # rule). On 2026-11-28, on the shipped heads, it raised held-out F1 from 82.9 to 86.9 and TNR
    # from 95.7 to 98.9, and stayed quiet on the real FIgLib sequence until the fire started (README).
    track_scorer: bool = True
    # optionally the scorer also reads the optical flow in each region (pipeline.flow), and confirms
    # only while the heads' mean p on the current window is at least scorer_min_heads. Off by
    # default: on 2026-12-03, fitted on the shipped heads' tuning traces, the flow raised held-out F1
    # but raised false alarms on the real fog clip and before the fire on the FIgLib sequence; with a
    # fallback without flow and its veto (train_decision_stage) it got the four real clips right and
    # 84.75 / 100 held out, within noise of the shipped 83.87 / 95.65 (training/EXPERIMENTS.md).
    scorer_flow: bool = False
    scorer_min_heads: float | None = None
    head_epochs: int = 40
    validation: list[Path] | None = None  # real validation folders (never trained on)
    force: bool = False
    # optionally another backbone architecture or crop side than default_config()'s MobileNetV3-small
    # at 112 px, e.g. the lecture's resnet50 at 224 where a GPU trains it. The backbone and heads
    # are then built for it and trained from random initialisation like the default one.
    backbone: BackboneName | None = None
    crop_size: int | None = None
    # optionally a second crop-feature network of the same architecture reading crops of this side,
    # trained like the first with six heads of its own, joined as ensemble member c<side>, which
    # the track scorer then reads beside the main heads (the shipped bundle's c64).
    member_crop_size: int | None = 64
    # where every stage trains and scores: "auto" takes a CUDA GPU when there is one. The shipped
    # bundle's backbones and heads were trained on a CPU (its detector on a GPU, by a --pack job); the
    # device changes how fast, not what is trained or on which clips, so a finished stage is reused
    # whichever device made it.
    device: str = "auto"

    def config(self) -> PipelineConfig:
        """default_config() with this recipe's backbone and crop side: what every stage builds."""
        return with_backbone(default_config(), self.backbone, self.crop_size)


def with_backbone(config: PipelineConfig, backbone: str | None, crop_size: int | None) -> PipelineConfig:
    """`config` with another backbone architecture and/or crop side; None keeps its own."""
    overrides = {"extractor.backbone": backbone, "extractor.input_size": crop_size}
    return config.with_overrides({k: v for k, v in overrides.items() if v is not None})


def deciding_among(config: PipelineConfig, heads: list[str]) -> PipelineConfig:
    """`config`, deciding by its configured head when it is among `heads`, else by the first of them."""
    return config if config.verifier.head in heads else config.with_overrides({"verifier.head": heads[0]})


def _synth(folder: Path, clips: int, seed: int, progress, style: str = "classic", landmarks: float = 0.0) -> Path:
    from .synth.dataset import SynthRequest, write_dataset

    manifest = folder / "manifest.csv"
    plans = folder / "plans.jsonl"
    try:
        first = json.loads(plans.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        first = {}
    # sets written before styles existed name none: they are classic
    same_set = first.get("seed") == seed and first.get("style", "classic") == style and first.get("landmarks", 0.0) == landmarks
    if not (same_set and manifest.exists() and len(manifest.read_text().splitlines()) - 1 == clips):
        write_dataset(SynthRequest(folder, clips=clips, seed=seed, style=style, landmarks=landmarks), progress=progress)
    return folder


def _saved(bundle: ModelBundle, path: Path) -> ModelBundle:
    """Save a finished stage and go on with it as read back (half precision, what ships), not with
    the models this run still holds. Every later stage then learns from the weights a resumed run
    and the shipped bundle have: on 2026-12-04 a scorer fitted on the held models took threshold
    0.66 and scored held-out TNR 90.2 with the saved weights, where one fitted on the saved bundle's
    own traces took 0.77 and scored 96.7; and the heads' window features (cached by the backbone's
    fingerprint) were computed twice, once per kind of run, so a resumed run trained other heads
    (training/EXPERIMENTS.md)."""
    bundle.save(path)
    return ModelBundle.load(path)


def _stage_done(path: Path, section: str, wanted: dict) -> ModelBundle | None:
    """A bundle saved by a finished stage, if its recorded settings match `wanted`."""
    if not (path / "metadata.json").is_file():
        return None
    bundle = ModelBundle.load(path)
    record = bundle.metadata.provenance.get(section, {})
    return bundle if all(record.get(k) == v for k, v in wanted.items()) else None


# Trained heads are sure of most windows, so the useful thresholds crowd towards 1.
DECISION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def tune_decision(traces, heads: list[str], base: "PipelineConfig") -> tuple[str, dict, dict]:
    """Pick the head and decision rule (threshold, k of n) with the best item-level F1 on the
    tuning clips; ties go to the higher TNR, then to the simpler rule."""
    from .evaluation.records import VoteOptions
    from .evaluation.scoring import score_traces

    best = None
    vote = VoteOptions(frames=base.tubes.window)
    for k, n in ((1, 1), (2, 3), (3, 4), (3, 5)):
        for threshold in DECISION_THRESHOLDS:
            decision = base.decision.model_copy(update={"threshold": threshold, "confirm_k": k, "confirm_n": n})
            evaluation = score_traces(traces, heads, decision, vote)
            for head in heads:
                item = evaluation.row(head).item
                key = (round(item.f1, 4), round(item.tnr, 4), -k, -abs(threshold - 0.5))
                if best is None or key > best[0]:
                    best = (key, head, {"threshold": threshold, "confirm_k": k, "confirm_n": n}, item.to_json())
    _, head, decision, scores = best
    return head, decision, scores


def _table_rows(evaluation, level: str) -> dict:
    out = {}
    for row in evaluation.rows:
        scores = getattr(row, level)
        out[row.spec.label] = {
            "precision": round(scores.precision, 4), "recall": round(scores.recall, 4), "f1": round(scores.f1, 4),
            "tpr": round(scores.tpr, 4), "tnr": round(scores.tnr, 4), "s_per_frame": round(row.seconds / max(row.frames, 1), 4),
            "counts": {"tp": scores.tp, "fp": scores.fp, "tn": scores.tn, "fn": scores.fn},
        }
    return out


def score_bundle(bundle: ModelBundle, data: Path, heads: list[str], progress=None, device: str = "cpu") -> dict:
    """Item- and window-level Table 7-1 rows of every head and both baselines on a manifest folder."""
    from pipeline.engine import Engine

    from .datasets import read_items
    from .evaluation.runner import run_items

    engine = Engine(bundle, device=device, heads=heads)
    return scores_of_traces(bundle, data, run_items(engine, read_items(data), progress=progress), heads)


def scores_of_traces(bundle: ModelBundle, data: Path, traces: list, heads: list[str]) -> dict:
    """:func:`score_bundle` of traces already run (a decision rule changes, the traces do not)."""
    from .evaluation.records import VoteOptions
    from .evaluation.scoring import score_traces

    vote = VoteOptions(frames=bundle.config.tubes.window)
    evaluation = score_traces(traces, heads, bundle.config.decision, vote, bundle.scorer)
    deciding = deciding_row(bundle.config)
    return {
        "data": str(data),
        "items": len(traces),
        "item_level": _table_rows(evaluation, "item"),
        "window_level": _table_rows(evaluation, "window"),
        "per_item": [
            {"item": t.item.path.name, "truth": t.item.label, "verdict": o[deciding].verdict,
             "first_alarm_frame": (o[deciding].first_alarm or (None,))[0]}
            for t, o in zip(traces, evaluation.outcomes)
        ],
    }


def _log(message: str) -> None:
    """One line per stage on stderr: a run of hours under nohup or in CI shows no progress bars."""
    print(f"[train default {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _backbone_stage(bundle: ModelBundle, config: PipelineConfig, path: Path, wanted: dict, recipe: DefaultRecipe,
                    learn_from: list[Path], options: BackboneOptions, label: str, progress: bool | None,
                    announce: str | None = None) -> ModelBundle:
    """A backbone of `config`'s architecture trained on crops around `bundle`'s detector, or the one
    saved at `path` when it was trained with the same settings around the same detector: its crops
    include that detector's false positives, so another detector's would not do."""
    done = None if recipe.force else _stage_done(path, "extractor", wanted)
    if done is not None and all(done.metadata.provenance.get(k) == bundle.metadata.provenance.get(k)
                                for k in ("detector", "detector_finetune")):
        _log(f"{label}: reusing {path}")
        return done
    if announce:
        _log(announce)
    trained = fresh_architecture(bundle, config)
    train_backbone_stage(trained, learn_from, recipe.real, options, progress)
    trained.metadata.provenance["extractor"]["inputs"] = wanted["inputs"]
    return _saved(trained, path)


def train_default(recipe: DefaultRecipe, progress: bool | None = None, command: str = "smokewatch train default") -> dict:
    """Synthetic data -> detector -> backbone -> six heads -> decision tuning -> held-out scores -> bundle."""
    from pipeline.config import HEAD_NAMES

    from .datasets import read_items, read_yolo_folder
    from .detector import evaluate_detector
    from .evaluation.runner import run_items

    work = recipe.work
    work.mkdir(parents=True, exist_ok=True)
    config = recipe.config()
    train_dir = _synth(work / "synth-train", recipe.train_clips, recipe.train_seed, progress, landmarks=recipe.landmarks)

    # What a stage learnt from: a finished stage is reused only when these match too.
    inputs = {"train_clips": recipe.train_clips, "train_seed": recipe.train_seed, "frames_per_clip": recipe.frames_per_clip,
              "max_real": recipe.max_real, "real": [f"{r.path.resolve()}:{sorted(r.smoke_classes)}" for r in recipe.real],
              **({"landmarks": recipe.landmarks} if recipe.landmarks else {})}  # stages saved before landmarks still match
    det_path = work / "bundle-det"
    wanted = {"arch": config.detector.arch, "imgsz": config.detector.imgsz, "seed": recipe.seed,
              "epochs_requested": recipe.detector_epochs, "hours_limit": recipe.detector_hours, "inputs": inputs}
    if recipe.detector_from is not None:
        bundle = ModelBundle.load(recipe.detector_from)
        _log(f"detector: taken from {recipe.detector_from}")
        # what the later stages check the detector by: its own record, and where it came from
        bundle.metadata.provenance["detector"] = {**bundle.metadata.provenance.get("detector", {}),
                                                  "taken_from": str(Path(recipe.detector_from).resolve())}
    else:
        bundle = None if recipe.force else _stage_done(det_path, "detector", wanted)
        _log(f"detector: reusing {det_path}" if bundle else f"detector: training from scratch (at most {recipe.detector_hours} h)")
    if bundle is None:
        bundle = ModelBundle.create(config, heads=list(HEAD_NAMES), name="smokewatch-default")
        train_detector_stage(bundle, [train_dir], recipe.real, work / "det-work", recipe.detector_epochs, recipe.detector_hours,
                             recipe.seed, frames_per_clip=recipe.frames_per_clip, max_real=recipe.max_real, progress=progress,
                             device=recipe.device)
        bundle.metadata.provenance["detector"]["inputs"] = inputs
        bundle = _saved(bundle, det_path)

    learn_from = [train_dir]  # the clips the backbone and the heads learn from
    if recipe.finetune_epochs:
        lookout_dir = _synth(work / "synth-lookout", recipe.lookout_clips, recipe.lookout_seed, progress, style="lookout")
        ft_path = work / "bundle-det-ft"
        wanted = {"epochs_requested": recipe.finetune_epochs, "hours_limit": recipe.finetune_hours,
                  "inputs": {**inputs, "lookout_clips": recipe.lookout_clips, "lookout_seed": recipe.lookout_seed},
                  "base": bundle.metadata.provenance["detector"]}
        done = None if recipe.force else _stage_done(ft_path, "detector_finetune", wanted)
        _log(f"detector fine-tuning on lookout clips: reusing {ft_path}" if done else
             f"detector fine-tuning on lookout clips (at most {recipe.finetune_hours} h)")
        if done is not None:
            bundle = done
        else:
            train_detector_stage(bundle, [train_dir, lookout_dir], recipe.real, work / "det-ft-work", recipe.finetune_epochs,
                                 recipe.finetune_hours, recipe.seed, frames_per_clip=recipe.frames_per_clip,
                                 max_real=recipe.max_real, progress=progress, finetune=True, device=recipe.device)
            bundle.metadata.provenance["detector_finetune"].update({"inputs": wanted["inputs"], "base": wanted["base"]})
            bundle = _saved(bundle, ft_path)
        learn_from.append(lookout_dir)
        inputs = wanted["inputs"]

    ext_path = work / "bundle-ext"
    extractor = config.extractor
    # the same clips the detector validated on (trained here, or taken from another bundle)
    split = detector_split(bundle.metadata.provenance, recipe.seed) if recipe.shared_validation else None
    backbone_options = BackboneOptions(epochs=recipe.backbone_epochs, seed=recipe.seed, positive_jitter=recipe.positive_jitter,
                                       small_jitter=recipe.small_positive_jitter, detector_positives=recipe.detector_positives,
                                       real_detector_negatives=recipe.real_detector_negatives,
                                       frames_per_clip=recipe.backbone_frames, weather=recipe.backbone_weather, split=split,
                                       device=recipe.device)
    backbone_wanted = {"backbone": extractor.backbone, "input_size": extractor.input_size, "epochs": recipe.backbone_epochs,
                       "seed": recipe.seed, "inputs": inputs, "positives": _positives(backbone_options),
                       "crop_frames": _crop_frames(backbone_options), "augment": _augment(backbone_options),
                       "split": split.to_json() if split else None}
    bundle = _backbone_stage(bundle, config, ext_path, backbone_wanted, recipe, learn_from, backbone_options, "backbone", progress,
                             announce="backbone: training on smoke / not-smoke crops")

    # a resumed stage brings the config it was saved with
    bundle.config = config.with_overrides({"extractor.change_cues": recipe.change_cues})
    options = HeadTrainingOptions(epochs=recipe.head_epochs, seed=recipe.seed, cache_dir=work / "window-cache", split=split,
                                  still_regions=recipe.still_regions, device=recipe.device)
    head_data = list(learn_from)
    if recipe.head_clips:
        head_data.append(_synth(work / "synth-heads", recipe.head_clips, recipe.head_seed, progress))
    _log(f"verifier heads: computing window features and training the six heads on {len(head_data)} sets of clips")
    train_verifier_stage(bundle, head_data, list(HEAD_NAMES), options, progress)
    bundle = _saved(bundle, work / "bundle-heads")
    member_heads: list[str] = []
    if recipe.member_crop_size:
        name = f"c{recipe.member_crop_size}"
        _log(f"ensemble member {name}: a backbone reading {recipe.member_crop_size} px crops, then its six heads")
        member = _backbone_stage(bundle, with_backbone(bundle.config, None, recipe.member_crop_size), work / f"bundle-ext-{name}",
                                 {**backbone_wanted, "input_size": recipe.member_crop_size}, recipe, learn_from,
                                 backbone_options, f"ensemble member {name}", progress)
        member.config = with_backbone(bundle.config, None, recipe.member_crop_size)  # change cues as the main heads
        train_verifier_stage(member, head_data, list(HEAD_NAMES), replace(options, cache_dir=work / f"window-cache-{name}"), progress)
        member_heads = bundle.add_member(name, member)
        bundle = _saved(bundle, work / "bundle-ensemble")

    from pipeline.engine import Engine

    tune_dir = _synth(work / "synth-tune", recipe.tune_clips, recipe.tune_seed, progress)
    _log(f"decision: tuning on {recipe.tune_clips} clips (seed {recipe.tune_seed})")
    measured = bundle.config.with_overrides({"flow.enabled": recipe.track_scorer and recipe.scorer_flow})
    traces = run_items(Engine(bundle, device=recipe.device, heads=[*HEAD_NAMES, *member_heads], config=measured),
                       read_items(tune_dir), progress=progress)
    head, decision, tune_scores = tune_decision(traces, list(HEAD_NAMES), bundle.config)
    bundle.config = bundle.config.with_overrides({"verifier.head": head, **{f"decision.{k}": v for k, v in decision.items()}})
    bundle.metadata.provenance["decision"] = {"tuned_on": str(tune_dir), "seed": recipe.tune_seed, "clips": recipe.tune_clips,
                                              "head": head, **decision, "item_scores_on_tuning_clips": tune_scores}
    if recipe.track_scorer:
        from .scorer import ScorerError

        _log("decision: fitting the track scorer on the same tuning clips")
        try:
            scorer = train_decision_stage(bundle, traces, [tune_dir], [*HEAD_NAMES, *member_heads], recipe.seed,
                                          flow=recipe.scorer_flow, min_heads=recipe.scorer_min_heads)
            honest = scorer["item_scores_out_of_fold"]
            scorer["used"] = (honest["f1"], honest["tnr"]) > (tune_scores["f1"], tune_scores["tnr"])
        except ScorerError as exc:
            bundle.metadata.provenance["track_scorer"] = scorer = {"used": False, "reason": str(exc)}
        if not scorer["used"]:  # the rule did as well on the clips it was picked on, or no scorer could be fitted
            drop_scorer(bundle)

    test_dir = _synth(work / "synth-test", recipe.test_clips, recipe.test_seed, progress)
    _log(f"scores: {recipe.test_clips} held-out clips (seed {recipe.test_seed}) and {len(recipe.validation or [])} real validation folders")
    metrics = {"synthetic_test": score_bundle(bundle, test_dir, list(HEAD_NAMES), progress, recipe.device)}
    for folder in recipe.validation or []:
        folder = Path(folder)
        if (folder / "manifest.csv").is_file():
            metrics[f"real:{folder.name}"] = score_bundle(bundle, folder, [head], progress, recipe.device)
        elif (folder / "images").is_dir():
            detector = _detector_for(bundle, recipe.device)
            images = read_yolo_folder(folder)
            metrics[f"detector:{folder.name}"] = {
                f"conf_{t}": evaluate_detector(detector, images, t, progress=progress).to_json()
                for t in sorted({bundle.config.detector.conf, 0.1, 0.25})  # the operating threshold and two stricter ones
            }
            metrics[f"regions:{folder.name}"] = _region_scores(bundle, folder, list(HEAD_NAMES), progress, recipe.device)
    bundle.metadata.metrics = metrics
    bundle.metadata.name = "smokewatch-default"
    bundle.metadata.description = (
        f"Default smokewatch bundle: {bundle.config.detector.arch.removesuffix('.yaml')} detector, "
        f"{bundle.config.extractor.backbone} crop features"
        + "".join(f", {m.extractor.backbone} at {m.extractor.input_size} px as member {m.name}" for m in bundle.config.ensemble)
        + ", six recurrent heads" + (" on each, a track scorer over all of them." if bundle.config.ensemble else ".")
    )
    bundle.metadata.provenance.update(
        {
            "recipe": {k: (str(v) if isinstance(v, Path) else [str(r.path) for r in v] if k == "real" else v)
                       for k, v in vars(recipe).items() if k not in ("out", "work")},
            "command": command,  # as typed, so the record says which flags made the bundle
            "synthetic_data": {"train": [str(train_dir), recipe.train_seed], "tune": [str(tune_dir), recipe.tune_seed],
                               "test": [str(test_dir), recipe.test_seed],
                               **({"lookout": [str(work / "synth-lookout"), recipe.lookout_seed]} if recipe.finetune_epochs else {}),
                               **({"heads_only": [str(work / "synth-heads"), recipe.head_seed]} if recipe.head_clips else {})},
            "attribution": CCBY_ATTRIBUTION if recipe.real else None,
            "environment": environment(),
        }
    )
    previous = recipe.out / "metadata.json"
    new_f1 = metrics["synthetic_test"]["item_level"][_label(deciding_row(bundle.config))]["f1"]
    compared: dict = {}  # the held-out F1 of the new and the existing bundle, when there is one to compare with
    if previous.is_file() and not recipe.force:
        # Scored again on these very clips with its own rule: the F1 in its metadata may come from
        # other clips (another seed or count), and a figure kept because it once won is optimistic.
        old_bundle = ModelBundle.load(recipe.out)
        old_head = old_bundle.config.verifier.head
        _log(f"scores: the existing bundle on the same {recipe.test_clips} held-out clips and real validation clips")
        old_test = score_bundle(old_bundle, test_dir, [old_head], progress, recipe.device)
        old_f1 = old_test["item_level"][_label(deciding_row(old_bundle.config))]["f1"]
        try:  # a figure beside the verdict: it must never cost the hours of training above
            difference = held_out_difference(metrics["synthetic_test"], old_test)
            spread = f"{100 * difference.low:+.1f} to {100 * difference.high:+.1f} points"
        except ValueError as exc:
            difference, spread = None, f"not computed ({exc})"
        _log(f"held-out F1 {new_f1:.4f} against {old_f1:.4f} for the existing bundle; new minus existing, "
             f"95 % interval over the clips: {spread}")
        real = [k.removeprefix("real:") for k in metrics if k.startswith("real:")]
        old_real = {name: real_items_right(score_bundle(old_bundle, Path(metrics[f"real:{name}"]["data"]), [old_head], progress,
                                                        recipe.device))
                    for name in real}
        new_real = {name: real_items_right(metrics[f"real:{name}"]) for name in real}
        new_tnr = metrics["synthetic_test"]["item_level"][_label(deciding_row(bundle.config))]["tnr"]
        old_tnr = old_test["item_level"][_label(deciding_row(old_bundle.config))]["tnr"]
        reason = keep_reason(new_f1, old_f1, new_real, old_real, new_tnr=new_tnr, old_tnr=old_tnr)
        compared = {"held_out_f1": {"new": new_f1, "existing": old_f1,
                                    "difference_interval": difference.to_json() if difference else None},
                    "held_out_tnr": {"new": new_tnr, "existing": old_tnr}}
        if reason is not None:
            bundle.save(work / "bundle-candidate")
            return {"replaced": False, "reason": reason, "candidate": str(work / "bundle-candidate"), **compared,
                    "metrics": metrics}
    bundle.save(recipe.out)
    return {"replaced": True, "bundle": str(recipe.out), "head": head, "decision": decision,
            "scorer_threshold": bundle.config.decision.scorer_threshold, **compared, "metrics": metrics}


def held_out_difference(new_scores: dict, old_scores: dict) -> Interval:
    """The new bundle's item F1 minus the existing one's on the same held-out clips, as a paired
    bootstrap interval (training.metrics.f1_difference_interval). The keep rule still asks only for
    a higher F1; the interval is reported beside it so a win of a clip or two is read as what it is.
    Clips are paired by name, so names must not repeat."""
    new_verdicts = {row["item"]: row["verdict"] == "smoke" for row in new_scores["per_item"]}
    old_rows = old_scores["per_item"]
    if len(new_verdicts) != len(new_scores["per_item"]) or len({row["item"] for row in old_rows}) != len(old_rows):
        raise ValueError("clip names repeat in the held-out scores: the two bundles' verdicts cannot be paired")
    if set(new_verdicts) != {row["item"] for row in old_rows}:
        raise ValueError("the two bundles were scored on different clips")
    truth = [row["truth"] == "smoke" for row in old_rows]
    return f1_difference_interval(truth, [row["verdict"] == "smoke" for row in old_rows],
                                  [new_verdicts[row["item"]] for row in old_rows])


def real_items_right(scores: dict) -> int:
    """Items of a real validation folder whose verdict matches the truth."""
    return sum(row["verdict"] == row["truth"] for row in scores["per_item"])


def keep_reason(new_f1: float, old_f1: float, new_real: dict[str, int], old_real: dict[str, int], *,
                new_tnr: float | None = None, old_tnr: float | None = None) -> str | None:
    """Why the bundle in place stays, or None when the new one replaces it. It must score a higher
    item F1 on the held-out synthetic clips and get no fewer items of any real validation folder
    right: those clips are never trained or tuned on, only used to stop a bundle that learnt the
    generator's quirks from replacing one that works on real footage.

    Given both held-out TNRs, it must also not fall below the lower of the existing bundle's TNR and
    smokewatch's bar (training.scorer.MIN_TNR): F1 alone lets a bundle buy a few more plumes with
    false alarms, and on 2026-12-04 a retrained bundle won F1 by a third of a point with TNR falling from
    95.7 to 90.2 (training/EXPERIMENTS.md). Users leave a tool that cries wolf on clouds.

    The heads' scores on still real regions (`regions:` metrics) are recorded but do not gate: on
    2026-11-28 they and the real clips disagreed about which of two candidates was better (training/EXPERIMENTS.md)."""
    if old_f1 >= new_f1:
        return f"existing bundle scores F1 {old_f1} >= {new_f1} on the same held-out clips"
    worse = [f"{name} ({new_real[name]} right, existing bundle {old_real[name]})"
             for name in sorted(new_real) if new_real[name] < old_real.get(name, 0)]
    if worse:
        return f"F1 {new_f1} > {old_f1} on the held-out clips, but fewer real validation items right: {', '.join(worse)}"
    if new_tnr is not None and old_tnr is not None and new_tnr < min(old_tnr, MIN_TNR):
        return (f"F1 {new_f1} > {old_f1} on the held-out clips, but TNR {new_tnr} there falls below "
                f"{min(old_tnr, MIN_TNR)} (existing bundle {old_tnr}, bar {MIN_TNR})")
    return None


def _region_scores(bundle: ModelBundle, folder: Path, heads: list[str], progress: bool | None, device: str = "cpu") -> dict:
    """The heads on still real regions of a YOLO image folder (training.regions)."""
    from pipeline.engine import Engine

    from .datasets import read_yolo_folder
    from .regions import score_regions

    scores = score_regions(Engine(bundle, device=device, heads=heads), read_yolo_folder(folder), progress=progress)
    return {"data": str(folder), "heads": {name: s.to_json() for name, s in scores.items()}}


def fresh_architecture(trained: ModelBundle, config: PipelineConfig, heads: list[str] | None = None) -> ModelBundle:
    """A fresh bundle of `config`'s backbone and heads that carries `trained`'s detector: a detector
    stage saved when the default backbone was another one, or a bundle whose backbone is being
    replaced by another architecture or crop size, keeps only its detector (the old heads read
    features the new backbone does not make)."""
    from pipeline.config import HEAD_NAMES

    heads = list(heads or HEAD_NAMES)
    fresh = ModelBundle.create(deciding_among(config, heads), heads=heads, name=trained.metadata.name)
    drop_scorer(fresh)  # `trained`'s scorer settings would name a scorer file that read its old heads
    fresh.detector, fresh.detector_names = trained.detector, dict(trained.detector_names)
    for section in ("detector", "detector_finetune", "attribution"):  # the detector's data keeps its credit
        if section in trained.metadata.provenance:
            fresh.metadata.provenance[section] = trained.metadata.provenance[section]
    return fresh


def deciding_row(config: PipelineConfig) -> str:
    """The evaluation row that says what the engine says: the track scorer's when it decides."""
    from .evaluation.records import SCORER_ROW

    return SCORER_ROW if config.decision.scorer_threshold is not None else config.verifier.head


def _label(row: str) -> str:
    from pipeline.verifier import TABLE_NAMES

    from .evaluation.records import SCORER_LABEL, SCORER_ROW

    return SCORER_LABEL if row == SCORER_ROW else TABLE_NAMES[row]
