"""Training the recurrent verifier heads on cached window features.

Windows are split into training and validation by *item* (all windows of a clip on one side),
since consecutive windows of a clip are near-duplicates. Classes are balanced by weighting the
loss, and each head keeps the weights of its best validation epoch (early stopping), so a head
that starts to memorise its clips stops there.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline.bundle import ModelBundle
from pipeline.config import HEAD_NAMES
from pipeline.engine import Engine
from pipeline.errors import SmokewatchError
from pipeline.models import resolve_device
from pipeline.verifier import HeadSpec, RecurrentHead, build_head, count_parameters

from .datasets import ManifestItem
from .metrics import binary_scores
from .splits import ClipSplit
from .windows import WindowSet, collect_windows


@dataclass
class HeadTrainingOptions:
    """How heads are trained."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    val_fraction: float = 0.2
    # validate on the clips this split holds out (by name, as the backbone can) instead of a random
    # `val_fraction` of the items; None, as the shipped heads were trained
    split: ClipSplit | None = None
    seed: int = 0
    feature_noise: float = 0.05  # Gaussian noise on standardised features, against memorising clips
    # regions per clip held still for the whole clip as extra windows (training.windows.still_boxes),
    # labelled by the ground truth like every window; 0, as the shipped heads were trained
    still_regions: int = 0
    cache_dir: Path | None = None
    device: str = "cpu"


@dataclass
class HeadReport:
    """What training one head achieved (validation windows, threshold 0.5)."""

    name: str
    parameters: int
    epochs_run: int
    best_epoch: int
    val_loss: float
    val_scores: dict
    seconds: float
    windows: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "parameters": self.parameters,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "val_loss": round(self.val_loss, 5),
            "val": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.val_scores.items()},
            "seconds": round(self.seconds, 1),
            "windows": self.windows,
        }


def split_by_item(windows: WindowSet, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val) with whole items on one side, both classes in validation when possible."""
    rng = np.random.default_rng(seed)
    items = np.unique(windows.item)
    positive_items = np.unique(windows.item[windows.labels == 1])
    negative_items = np.setdiff1d(items, positive_items)
    val_items = []
    for group in (positive_items, negative_items):
        group = rng.permutation(group)
        count = int(round(len(group) * fraction))
        if len(group) >= 2:
            count = max(1, count)
        val_items.extend(group[:count].tolist())
    val = np.isin(windows.item, val_items)
    return ~val, val


def split_by_name(windows: WindowSet, split: ClipSplit) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, val): validation holds the items whose clip the split holds out."""
    val_items = [index for index, path in enumerate(windows.items) if split.holds_out(Path(path).stem)]
    val = np.isin(windows.item, val_items)
    if not val.any() or val.all():
        raise SmokewatchError(f"the validation split ({split.fraction:.0%} of clips by name) leaves "
                              f"{'no' if not val.any() else 'only'} validation windows among {len(windows.items)} items: give more clips")
    return ~val, val


def fit_head(
    head: RecurrentHead,
    train: WindowSet,
    val: WindowSet,
    options: HeadTrainingOptions,
    progress: bool | None = None,
) -> tuple[RecurrentHead, HeadReport]:
    torch.manual_seed(options.seed)
    device = resolve_device(options.device)
    head = head.to(device)
    x_train = torch.from_numpy(train.features.astype(np.float32))
    y_train = torch.from_numpy(train.labels.astype(np.float32))
    x_val = torch.from_numpy(val.features.astype(np.float32)).to(device)
    y_val = torch.from_numpy(val.labels.astype(np.float32)).to(device)
    positives = float(y_train.sum())
    negatives = float(len(y_train) - positives)
    if positives == 0 or negatives == 0:
        raise SmokewatchError("verifier training needs both smoke and non-smoke windows; check the training data")
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(negatives / positives, device=device))
    val_loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(negatives / positives, device=device))
    optimiser = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(options.epochs, 1))
    scale = x_train.std().clamp_min(1e-6)
    generator = torch.Generator().manual_seed(options.seed)

    best_state, best_loss, best_epoch, epochs_run = copy.deepcopy(head.state_dict()), float("inf"), 0, 0
    start = time.perf_counter()
    bar = tqdm(range(options.epochs), desc=f"head {head.spec.name}", unit="epoch", disable=None if progress is None else not progress)
    for epoch in bar:
        head.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), options.batch_size):
            idx = order[i : i + options.batch_size]
            xb = x_train[idx].to(device)
            if options.feature_noise:
                xb = xb + torch.randn_like(xb) * options.feature_noise * scale
            loss = loss_fn(head(xb), y_train[idx].to(device))
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            optimiser.step()
        scheduler.step()
        epochs_run = epoch + 1
        val_loss = _evaluate_loss(head, x_val, y_val, val_loss_fn, options.batch_size) if len(y_val) else float(loss)
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, best_state = val_loss, epoch + 1, copy.deepcopy(head.state_dict())
        elif epoch + 1 - best_epoch >= options.patience:
            break
    bar.close()
    head.load_state_dict(best_state)
    head.eval()
    probs = predict(head, x_val, options.batch_size) if len(y_val) else np.zeros(0)
    scores = binary_scores(val.labels.astype(bool), probs >= 0.5).to_json()
    report = HeadReport(head.spec.name, count_parameters(head), epochs_run, best_epoch, best_loss, scores, time.perf_counter() - start)
    return head.cpu(), report


@torch.inference_mode()
def predict(head: RecurrentHead, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    head.eval()
    out = [torch.sigmoid(head(x[i : i + batch])).cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.inference_mode()
def _evaluate_loss(head, x, y, loss_fn, batch) -> float:
    head.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(loss_fn(head(x[i : i + batch]), y[i : i + batch])) * len(y[i : i + batch])
    return total / max(len(y), 1)


def set_change_cues(bundle: ModelBundle, enabled: bool, retrained: list[str]) -> list[str]:
    """Switch the bundle's change cues before training `retrained` heads. The other heads were
    trained on the other input and cannot read the new one, so they leave the bundle; returns
    their names (empty when the setting does not change)."""
    if bundle.config.extractor.change_cues == enabled:
        return []
    bundle.config = bundle.config.with_overrides({"extractor.change_cues": enabled})
    dropped = [name for name in bundle.heads if name not in retrained]
    for name in dropped:
        del bundle.heads[name]
    if bundle.scorer is not None:  # every head it reads is now retrained or gone
        drop_scorer(bundle)
        bundle.metadata.provenance.pop("track_scorer", None)
    return dropped


def drop_scorer(bundle: ModelBundle) -> None:
    """Decide with the k-of-n rule again: no scorer file, no scorer threshold."""
    bundle.scorer = None
    bundle.config = bundle.config.with_overrides({"decision.scorer_threshold": None, "decision.scorer_min_heads": None,
                                                  "decision.fallback_threshold": None, "decision.fallback_veto": None,
                                                  "flow.enabled": False})


def train_heads(
    bundle: ModelBundle,
    items: list[ManifestItem],
    heads: list[str],
    options: HeadTrainingOptions | None = None,
    progress: bool | None = None,
) -> dict[str, HeadReport]:
    """Train the named heads on windows from `items` and put them into the bundle (in place)."""
    options = options or HeadTrainingOptions()
    unknown = [h for h in heads if h not in HEAD_NAMES]
    if unknown:
        raise SmokewatchError(f"unknown verifier head {', '.join(unknown)}; choose from {', '.join(HEAD_NAMES)}")
    # No head runs while windows are collected: not even those a track scorer reads, which may
    # expect another input than these windows have (change cues switched) and are being replaced.
    quiet = bundle.config.with_overrides({"decision.scorer_threshold": None})
    engine = Engine(bundle, device=options.device, heads=[], config=quiet)
    windows = collect_windows(engine, items, options.cache_dir, progress, still=options.still_regions)
    if len(windows) == 0:
        raise SmokewatchError("the training items gave no windows: the detector found no candidates and no item has per-frame boxes")
    if options.split is None:
        train_mask, val_mask = split_by_item(windows, options.val_fraction, options.seed)
    else:
        train_mask, val_mask = split_by_name(windows, options.split)
    train, val = windows.subset(train_mask), windows.subset(val_mask)
    reports = {}
    for name in heads:
        spec = HeadSpec.from_config(bundle.config.verifier, bundle.window_dim, name)
        # a head's first weights come from the seed, not from whatever the stages before drew: a
        # resumed `train default` (detector and backbone read from disk) trained other heads than a
        # fresh run on the same windows until 2026-12-04
        torch.manual_seed(options.seed)
        head, report = fit_head(build_head(spec), train, val, options, progress)
        report.windows = {"train": train.summary(), "val": val.summary()}
        bundle.heads[name] = head
        reports[name] = report
    return reports
