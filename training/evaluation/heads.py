"""`--train-heads`: train the verifier heads on a training manifest, then evaluate what was trained.

The heads are trained by the training code (training.recipe.train_verifier_stage, which runs
training.verifier.train_heads and records provenance in the bundle's metadata). The bundle is then
saved into OUT/bundle and read back, so the evaluation scores exactly the files a user would ship
(half-precision weights included) and the reported bundle hash names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.bundle import ModelBundle
from training.datasets import ManifestItem, read_manifest

from .runner import EvaluationError


def train_bundle_heads(
    bundle: ModelBundle,
    train_dir: Path,
    heads: Sequence[str],
    eval_items: Sequence[ManifestItem],
    out: Path,
    device: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[ModelBundle, dict]:
    """Train `heads` on `train_dir`, save the bundle into `out`, and return (the saved bundle read back,
    the training record per head). Refuses training data that shares an item with the evaluation data."""
    from pipeline.models import resolve_device
    from training.recipe import train_verifier_stage
    from training.verifier import HeadTrainingOptions

    train_items = read_manifest(train_dir)  # a malformed training manifest stops here, naming its row
    shared = sorted({i.path for i in train_items} & {i.path for i in eval_items})
    if shared:
        raise EvaluationError(
            f"the training data {train_dir} and the evaluation data share {len(shared)} item(s), e.g. "
            f"{shared[0]}: scores on training items say nothing about new footage"
        )
    # the trainer wants a concrete torch device name ("cuda:0", "cpu"), not "auto"
    options = HeadTrainingOptions(device=str(resolve_device(device or bundle.config.runtime.device)), seed=seed)
    if epochs is not None:
        options.epochs = epochs
    record = train_verifier_stage(bundle, [train_dir], list(heads), options, progress)
    bundle.metadata.provenance["evaluate"] = {"heads_trained_on": str(train_dir.resolve()), "heads": list(heads)}
    bundle.save(out)
    return ModelBundle.load(out), record
