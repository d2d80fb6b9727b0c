"""Which training clips are held out for validation, decided by name.

Each stage used to draw its own validation split: the detector by a hash of the clip name, the
backbone by random crop groups, the heads by random items. So the heads validated on clips the
backbone (and detector) had learnt from, where features are cleaner than on new footage, and their
validation figure rose with every backbone change while held-out scores did not (training/EXPERIMENTS.md). Deciding
by a hash of the clip's name lets every stage hold out the very same clips without passing lists
between stages or across resumed runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from .datasets import YoloImage

DETECTOR_VALIDATION_FRACTION = 0.12  # share of clips (and real source groups) the detector validates on


def held_out(key: str, fraction: float, seed: int) -> bool:
    """True for about `fraction` of keys; the same key, fraction and seed always give the same answer."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_group(image: YoloImage) -> str:
    """Frames of one video share a group; independent stills are each their own group."""
    return f"still:{image.image.name}" if image.group in ("", "still") else image.group


@dataclass(frozen=True)
class ClipSplit:
    """Validation clips shared by the backbone and the heads; with the detector's fraction and seed
    they are also the clips the detector validated on, so no stage has learnt from them."""

    fraction: float = DETECTOR_VALIDATION_FRACTION
    seed: int = 0

    def holds_out(self, key: str) -> bool:
        """`key`: a clip's file stem (as the detector keys clips) or a real image's source group."""
        return held_out(key, self.fraction, self.seed)

    def to_json(self) -> dict:
        return {"by": "clip name (sha256)", "fraction": self.fraction, "seed": self.seed}


def detector_split(provenance: Mapping, seed: int) -> ClipSplit:
    """The split a bundle's detector validated with. `train detector` splits by its own --seed, which
    its record keeps; a later stage run with another --seed must still hold out those clips, or the
    heads validate on clips the detector learnt from. `seed` stands in only for a detector with no
    record (one that smokewatch did not train)."""
    return ClipSplit(seed=int(provenance.get("detector", {}).get("seed", seed)))
