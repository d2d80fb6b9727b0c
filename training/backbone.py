"""Teaching the feature backbone what smoke looks like.

No ImageNet weights exist on these machines, and a randomly initialised CNN gives the verifier
little to work with. So the backbone is first trained as a smoke / not-smoke crop classifier
(its classification layer is thrown away afterwards): positives are crops around labelled smoke
(synthetic plumes and real smoke boxes), negatives are crops of the same scenes without smoke,
the detector's false positives on clouds, fog and dust among them. The crops are cut the way the
engine cuts them (square regions with the tube margin), at the extractor's input size.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
import torch
import torchvision
from torch import nn
from tqdm import tqdm

from pipeline.config import TubeConfig
from pipeline.detector import Detector
from pipeline.errors import SmokewatchError
from pipeline.features import IMAGENET_MEAN, IMAGENET_STD, cut_crop
from pipeline.models import resolve_device
from pipeline.records import Box
from pipeline.tubes import expand_region

from .datasets import ManifestItem, YoloImage, frame_boxes
from .metrics import binary_scores
from .splits import ClipSplit, split_group


@dataclass
class CropSet:
    crops: np.ndarray  # N x S x S x 3 uint8 RGB
    labels: np.ndarray  # N, 1 = smoke
    group: np.ndarray  # N, source id (for a split by source)
    counts: dict = field(default_factory=dict)
    group_keys: list[str] = field(default_factory=list)  # per source id: clip stem or real source group (ClipSplit keys)


BN_CALIBRATION_CROPS = 2048  # training crops whose statistics become the BatchNorm running statistics


@dataclass
class BackboneOptions:
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    # validate on the clips this split holds out (those the heads validate on too) instead of a random
    # `val_fraction` of the sources; None, as the shipped backbone was trained
    split: ClipSplit | None = None
    seed: int = 0
    frames_per_clip: int = 6
    negatives_per_frame: int = 2
    # Extra positives: shifted and rescaled crops per smoke box (real ones too, so real smoke keeps
    # its weight), and the detector's own boxes on a plume. Off by default, as the shipped backbone
    # was trained; measured in training/EXPERIMENTS.md ("Off-centre positives").
    positive_jitter: int = 0
    detector_positives: bool = False
    # Extra shifted and rescaled positives for small smoke boxes only (at most SMALL_BOX_PX tall), on
    # top of `positive_jitter`: the plumes the shipped bundle misses are small ones its heads score
    # low (README, "What it scores"), while they are a minority of the crops the backbone learns from.
    # Off here; `train default` asks for 2 (DefaultRecipe.small_positive_jitter).
    small_jitter: int = 0
    # The detector's false positives on the real images as negatives too, not only on synthetic
    # frames: real texture (bark, foliage, glare) is what a detector trained on synthetic plumes
    # mistakes for smoke on real footage, and the synthetic scenes hold none of it.
    real_detector_negatives: bool = False
    # Weather on the training crops (`weathered`): haze veils, colour casts, blur and sensor noise.
    # Off by default, as the shipped backbone was trained.
    weather: bool = False
    max_real: int | None = 2500
    device: str = "cpu"


def _random_region(width: int, height: int, rng: random.Random, avoid: list[Box], tubes: TubeConfig) -> tuple[int, int, int, int] | None:
    for _ in range(20):
        side = int(np.exp(rng.uniform(np.log(16), np.log(max(17, min(width, height) * 0.5)))))
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = Box(x, y, x + side, y + side)
        if all(box.intersection(a) < 0.1 * min(box.area, a.area) for a in avoid):
            return expand_region(box, tubes.model_copy(update={"margin": 0.0}), width, height)
    return None


def _jittered(box: Box, width: int, height: int, rng: random.Random) -> Box:
    """A box around part of `box`, the way a detector or motion box often sits on a plume.

    Proposals rarely frame smoke as the labeller did: a motion box holds only the growing edge, a
    detector box the dense base. Without such crops among the positives the backbone learns "a
    plume centred in a square" and the heads see features it was never taught at run time.
    """
    scale = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    cx, cy = box.center
    cx += rng.uniform(-0.25, 0.25) * box.width
    cy += rng.uniform(-0.25, 0.25) * box.height
    w, h = box.width * scale / 2, box.height * scale / 2
    return Box(max(0.0, cx - w), max(0.0, cy - h), min(float(width), cx + w), min(float(height), cy + h))


SMALL_BOX_PX = 48  # a smoke box at most this tall (source pixels) is small (BackboneOptions.small_jitter)
FALSE_POSITIVE_SHARE = 0.1  # a detector box with less of its area on labelled smoke is a false positive


def _smoke_share(box: Box, truth: list[Box]) -> float:
    """The largest share of `box`'s area that one labelled smoke box covers."""
    return max((box.intersection(t) / max(box.area, 1e-6) for t in truth), default=0.0)


def _false_positives(detections: list, truth: list[Box]) -> list:
    return [d for d in detections if _smoke_share(d.box, truth) < FALSE_POSITIVE_SHARE]


def collect_crops(
    synthetic: list[ManifestItem],
    real: list[YoloImage],
    size: int,
    tubes: TubeConfig,
    options: BackboneOptions,
    detector: Detector | None = None,
    progress: bool | None = None,
) -> CropSet:
    rng = random.Random(options.seed)
    crops, labels, groups = [], [], []
    group_keys = [item.path.stem for item in synthetic]
    counts = {"synthetic_positive": 0, "synthetic_positive_jittered": 0, "detector_true_positive": 0, "synthetic_negative": 0,
              "detector_false_positive": 0, "real_positive": 0, "real_positive_jittered": 0, "real_negative": 0,
              "real_detector_false_positive": 0}
    if options.small_jitter:  # only when asked for, so records of backbones trained without it read as before
        counts["small_positive_jittered"] = 0

    def add(image, region, label, group, key):
        crops.append(cut_crop(image, region, size))
        labels.append(label)
        groups.append(group)
        counts[key] += 1

    def add_jittered(image, box, group, key):
        """The shifted and rescaled positives `box` is owed (_jittered): `positive_jitter` for any box,
        `small_jitter` more for a small one."""
        h, w = image.shape[:2]
        small = options.small_jitter if box.height <= SMALL_BOX_PX else 0
        for name, count in ((key, options.positive_jitter), ("small_positive_jittered", small)):
            for _ in range(count):
                add(image, expand_region(_jittered(box, w, h, rng), tubes, w, h), 1, group, name)

    disable = None if progress is None else not progress
    for group, item in enumerate(tqdm(synthetic, desc="crops: synthetic", unit="clip", disable=disable)):
        with av.open(str(item.path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        picks = sorted(set(np.linspace(0, len(frames) - 1, options.frames_per_clip).astype(int).tolist()))
        images = [frames[i] for i in picks]
        found = detector.detect(images) if detector is not None else [[] for _ in images]
        for index, image, dets in zip(picks, images, found):
            h, w = image.shape[:2]
            truth = frame_boxes(item, index, w, h) or []
            for box in truth:
                add(image, expand_region(box, tubes, w, h), 1, group, "synthetic_positive")
                add_jittered(image, box, group, "synthetic_positive_jittered")
            for det in dets[:3]:
                overlap = _smoke_share(det.box, truth)
                if overlap < FALSE_POSITIVE_SHARE:
                    add(image, expand_region(det.box, tubes, w, h), 0, group, "detector_false_positive")
                elif overlap >= 0.5 and options.detector_positives:  # what the engine crops on this plume at run time
                    add(image, expand_region(det.box, tubes, w, h), 1, group, "detector_true_positive")
            for _ in range(options.negatives_per_frame):
                region = _random_region(w, h, rng, truth, tubes)
                if region is not None:
                    add(image, region, 0, group, "synthetic_negative")

    if options.max_real is not None and len(real) > options.max_real:
        real = rng.sample(real, options.max_real)
    offset = len(synthetic)
    group_keys += [split_group(image_item) for image_item in real]
    for index, image_item in enumerate(tqdm(real, desc="crops: real", unit="img", disable=disable)):
        image = cv2.imread(str(image_item.image))
        if image is None:
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        truth = image_item.boxes(w, h)
        group = offset + index
        for box in truth[:3]:
            add(image, expand_region(box, tubes, w, h), 1, group, "real_positive")
            add_jittered(image, box, group, "real_positive_jittered")  # as many as the synthetic ones, or real smoke loses weight
        region = _random_region(w, h, rng, truth, tubes)
        if region is not None:
            add(image, region, 0, group, "real_negative")
        if options.real_detector_negatives and detector is not None:
            for det in _false_positives(detector.detect([image])[0][:3], truth):
                add(image, expand_region(det.box, tubes, w, h), 0, group, "real_detector_false_positive")
    if not crops:
        raise SmokewatchError("no training crops: the training data holds no images")
    return CropSet(np.stack(crops), np.array(labels, np.int64), np.array(groups, np.int64), counts, group_keys)


def validation_crops(data: CropSet, options: BackboneOptions, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of the crops held out for validation, whole sources at a time."""
    if options.split is None:
        unique = np.unique(data.group)
        val_groups = rng.choice(unique, size=max(1, int(len(unique) * options.val_fraction)), replace=False)
        return np.isin(data.group, val_groups)
    val_groups = [g for g, key in enumerate(data.group_keys) if options.split.holds_out(key)]
    if not val_groups:
        raise SmokewatchError(f"the validation split ({options.split.fraction:.0%} of clips by name) holds out none of the "
                              f"{len(data.group_keys)} training sources: give more clips")
    return np.isin(data.group, val_groups)


def train_backbone(backbone: nn.Module, dim: int, data: CropSet, options: BackboneOptions, progress: bool | None = None) -> dict:
    """Train `backbone` (in place) with a temporary linear classifier; returns a report."""
    torch.manual_seed(options.seed)
    device = resolve_device(options.device)
    rng = np.random.default_rng(options.seed)
    val = validation_crops(data, options, rng)
    train_idx, val_idx = np.nonzero(~val)[0], np.nonzero(val)[0]
    labels = torch.from_numpy(data.labels.astype(np.float32))
    pos = float(labels[train_idx].sum())
    neg = float(len(train_idx) - pos)
    if pos == 0 or neg == 0:
        raise SmokewatchError("backbone training needs both smoke and non-smoke crops")

    model = nn.Sequential(backbone, nn.Flatten(1), nn.Linear(dim, 1)).to(device)
    # Channels-last pays on a GPU; on a CPU it made MobileNetV3's depthwise convolutions 40 % slower.
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(memory_format=layout)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / pos, device=device))
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps = options.epochs * len(_batches(train_idx, options.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=options.lr, total_steps=max(steps, 1), pct_start=0.15)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255

    def batch_tensor(indices: np.ndarray, augment: bool) -> torch.Tensor:
        x = torch.from_numpy(data.crops[indices]).to(device).permute(0, 3, 1, 2).float()
        if augment:
            flip = torch.rand(len(indices), device=device) < 0.5
            x[flip] = x[flip].flip(-1)
            gain = torch.empty(len(indices), 1, 1, 1, device=device).uniform_(0.75, 1.25)
            bias = torch.empty(len(indices), 1, 1, 1, device=device).uniform_(-20, 20)
            x = (x * gain + bias).clamp(0, 255)
            if options.weather:
                x = weathered(x)
        return ((x - mean) / std).contiguous(memory_format=layout)

    start = time.perf_counter()
    history = []
    for epoch in range(options.epochs):
        model.train()
        order = rng.permutation(train_idx)
        bar = tqdm(_batches(order, options.batch_size), desc=f"backbone epoch {epoch + 1}/{options.epochs}", unit="batch",
                   disable=None if progress is None else not progress)
        running = 0.0
        for i, idx in enumerate(bar):
            loss = loss_fn(model(batch_tensor(idx, True)).squeeze(1), labels[idx].to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            running = 0.9 * running + 0.1 * loss.item() if i else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        bar.close()
        calibration = np.sort(rng.choice(train_idx, size=min(len(train_idx), BN_CALIBRATION_CROPS), replace=False))
        _recalibrate_batch_norm(model, batch_tensor, calibration, options.batch_size)
        scores = _validate(model, batch_tensor, val_idx, data.labels, options.batch_size)
        history.append({"epoch": epoch + 1, "train_loss": round(running, 4), **{k: round(v, 4) for k, v in scores.items() if isinstance(v, float)}})
    # back where the bundle keeps its networks, as fit_head leaves a head: later stages copy it onto their own device
    backbone.to("cpu").to(memory_format=torch.contiguous_format).eval()
    return {
        "epochs": options.epochs,
        "device": str(device),
        "crops": {"train": int(len(train_idx)), "val": int(len(val_idx)), **data.counts},
        "history": history,
        "val": history[-1] if history else {},
        "seconds": round(time.perf_counter() - start, 1),
    }


HAZE_SHARE = 0.5  # of the crops that get a veil
BLUR_SHARE = 0.3


def weathered(x: torch.Tensor) -> torch.Tensor:
    """The same crops (N, 3, H, W, 0-255) seen through haze, another light, a softer lens and a noisier sensor.

    Meant for the plumes the shipped bundle misses most, grey ones behind fog, haze or in changing
    light: a few grey levels of contrast on a pale veil. A veil blended over a crop (up to half a
    pale, slightly blue grey, as distance does) keeps the plume's shape and texture but takes much of
    its contrast; the negatives get the same veils, so contrast alone stops telling them apart. Tried
    once (training/EXPERIMENTS.md, "Weather on the backbone's crops"): it found one grey plume fewer, not more.
    """
    n, device = len(x), x.device
    veil = torch.empty(n, 1, 1, 1, device=device).uniform_(150, 235)
    tint = torch.empty(n, 3, 1, 1, device=device).uniform_(-6, 6) + torch.tensor([-4.0, 0.0, 6.0], device=device).view(1, 3, 1, 1)
    amount = torch.empty(n, 1, 1, 1, device=device).uniform_(0, 0.5) * (torch.rand(n, 1, 1, 1, device=device) < HAZE_SHARE)
    x = x * (1 - amount) + (veil + tint) * amount
    x = x * torch.empty(n, 3, 1, 1, device=device).uniform_(0.94, 1.06)  # white balance, dusk or noon light
    soft = torch.nonzero(torch.rand(n, device=device) < BLUR_SHARE).flatten()
    if len(soft):
        sigma = float(torch.empty(1).uniform_(0.5, 1.5))
        x[soft] = torchvision.transforms.functional.gaussian_blur(x[soft], kernel_size=5, sigma=sigma)
    x = x + torch.randn_like(x) * torch.empty(n, 1, 1, 1, device=device).uniform_(0, 6)
    return x.clamp(0, 255)


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`indices` in batches of `batch_size`, a last batch of one joined to the one before: in training
    mode BatchNorm refuses a batch of one after pooling, and crop counts are whatever the data gives."""
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return chunks


@torch.no_grad()
def _recalibrate_batch_norm(model: nn.Module, batch_tensor, indices: np.ndarray, batch_size: int) -> None:
    """Set every BatchNorm's running mean and variance to a plain average over `indices`.

    torchvision's MobileNetV3 updates them with momentum 0.01, so after the few hundred steps a CPU
    can afford they still hold mostly their initial values: the network then trains well but, in
    eval mode, answers "no smoke" to every crop. Averaging fresh statistics after each epoch
    makes the evaluated (and shipped) network the one that was trained, whatever the momentum.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(indices) == 0:
        return
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches below
    model.train()
    for chunk in _batches(indices, batch_size):
        model(batch_tensor(chunk, False))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


@torch.inference_mode()
def _validate(model, batch_tensor, val_idx, labels, batch_size) -> dict:
    if len(val_idx) == 0:
        return {}
    model.eval()
    probs = []
    for i in range(0, len(val_idx), batch_size):
        probs.append(torch.sigmoid(model(batch_tensor(val_idx[i : i + batch_size], False)).squeeze(1)).cpu())
    predicted = torch.cat(probs).numpy() >= 0.5
    return binary_scores(labels[val_idx].astype(bool), predicted).to_json()
