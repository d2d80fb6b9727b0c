"""How the verifier judges real smoke regions when the proposer is not in the way.

Real lookout footage with smoke is scarce here (four clips), but there are hundreds of real
lookout images with smoke boxes that may be used for validation. The detector finds few of those
plumes, so the whole pipeline says little about the verifier on them. This check hands the heads
the regions directly: each labelled smoke box, cut as the engine cuts a tube region, against a
background region of the same image, each seen still for a whole window.

A still window is not a video window: drift and growth are missing, and heads that learnt to
distrust a region that does not change will rank real smoke low here yet catch it in video. On
2026-11-28 a candidate scored AUC 0.59 here (shipped bundle 0.88) while it was surer than the
shipped bundle on both real smoke clips and calmer on both real negatives (training/EXPERIMENTS.md). So the figures
describe what the heads make of appearance alone; they are recorded, not used to pick bundles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from pipeline.engine import Engine
from pipeline.errors import SmokewatchError

from .backbone import BackboneOptions, collect_crops
from .datasets import YoloImage


@dataclass(frozen=True)
class RegionScores:
    """One head's verdicts on still real regions."""

    head: str
    smoke_regions: int
    background_regions: int
    auc: float  # how well the head ranks smoke regions above background, whatever the threshold
    threshold: float
    tpr: float  # smoke regions at or above the threshold
    tnr: float  # background regions below it

    def to_json(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@torch.inference_mode()
def score_regions(engine: Engine, images: list[YoloImage], threshold: float | None = None, seed: int = 0,
                  progress: bool | None = None) -> dict[str, RegionScores]:
    """Score every head of `engine` on the smoke boxes of `images` and one background region per image.

    Regions are cut by the backbone's crop sampler with no jitter, so a smoke region is exactly what
    the engine would crop around a perfect proposal; `threshold` defaults to the bundle's decision
    threshold.
    """
    if not engine.heads:
        raise SmokewatchError("the model bundle has no verifier heads to score")
    config = engine.config
    options = BackboneOptions(positive_jitter=0, max_real=None, negatives_per_frame=1, seed=seed)
    window, batch = config.tubes.window, config.runtime.feature_batch
    sources = {source.member: source for source in engine.bundle.feature_sources()}
    probs: dict[str, list[np.ndarray]] = {name: [] for name in engine.heads}
    labels: dict[str, np.ndarray] = {}
    for member, names in engine.head_groups.items():  # a member's heads read its own crops, cut at its own size
        source, extractor = sources[member], engine.extractors[member]
        crops = collect_crops([], images, source.config.input_size, config.tubes, options, progress=progress)
        smoke, background = int(crops.labels.sum()), int((crops.labels == 0).sum())
        if smoke == 0 or background == 0:
            raise SmokewatchError(f"the images hold {smoke} smoke boxes and gave {background} background regions; both are needed")
        extra = source.window_dim - source.feature_dim  # change cues: a still region's are zero
        for start in tqdm(range(0, len(crops.crops), batch), desc="regions", unit="batch", disable=None if progress is None else not progress):
            features = extractor(crops.crops[start : start + batch])
            x = features.unsqueeze(1).expand(-1, window, -1)
            if extra:
                x = torch.cat([x, x.new_zeros(*x.shape[:2], extra)], dim=2)
            for name in names:
                probs[name].append(torch.sigmoid(engine.heads[name](x)).cpu().numpy())
        labels.update({name: crops.labels.astype(bool) for name in names})

    threshold = config.decision.threshold if threshold is None else threshold
    scores = {}
    for name, parts in probs.items():
        p, truth = np.concatenate(parts), labels[name]
        scores[name] = RegionScores(
            head=name,
            smoke_regions=int(truth.sum()),
            background_regions=int((~truth).sum()),
            auc=float(roc_auc_score(truth, p)),
            threshold=threshold,
            tpr=float(np.mean(p[truth] >= threshold)),
            tnr=float(np.mean(p[~truth] < threshold)),
        )
    return scores
