"""Crop features: the CNN that turns each tube crop into one vector, and the cache that computes
each (frame, region) crop once.

With a window of T frames and a stride of 1, consecutive windows of a candidate share T-1
crops; the cache is what makes verification cost one backbone pass per candidate per frame
instead of T.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Region = tuple[int, int, int, int]


def cut_crop(image: np.ndarray, region: Region, size: int) -> np.ndarray:
    """The region of a full-resolution RGB frame, resized to size x size."""
    x1, y1, x2, y2 = region
    patch = image[y1:y2, x1:x2]
    if patch.size == 0:
        return np.zeros((size, size, 3), dtype=np.uint8)
    interp = cv2.INTER_AREA if patch.shape[0] > size or patch.shape[1] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


class FeatureExtractor:
    """A backbone without its classifier, fed uint8 crops, giving float32 vectors on its device."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        dim: int,
        input_size: int,
        device: torch.device,
        half: bool = False,
        name: str = "",
    ) -> None:
        self.backbone = backbone
        self.dim = dim
        self.input_size = input_size
        self.device = device
        self.half = half and device.type == "cuda"
        self.name = name
        dtype = torch.float16 if self.half else torch.float32
        self._mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1) * 255

    def to_input(self, crops: np.ndarray) -> torch.Tensor:
        """(N, S, S, 3) uint8 RGB crops -> normalised (N, 3, S, S) tensor on the device, channels-last."""
        batch = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device, non_blocking=True)
        batch = batch.permute(0, 3, 1, 2).to(torch.float16 if self.half else torch.float32)
        batch = (batch - self._mean) / self._std
        return batch.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        if len(crops) == 0:
            return torch.empty((0, self.dim), device=self.device)
        return self.backbone(self.to_input(crops)).flatten(1).float()


class CropFeatureCache:
    """Features of (kept-frame seq, region) crops, evicted once their frame has left every window."""

    def __init__(self) -> None:
        self._store: dict[tuple[int, Region], torch.Tensor] = {}
        self.computed = 0
        self.reused = 0

    def __contains__(self, key: tuple[int, Region]) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: tuple[int, Region]) -> torch.Tensor:
        return self._store[key]

    def put(self, key: tuple[int, Region], value: torch.Tensor) -> None:
        self._store[key] = value

    def missing(self, keys: Iterable[tuple[int, Region]]) -> list[tuple[int, Region]]:
        """Keys not yet computed, each once, in first-seen order; counts the hits as reuse."""
        wanted: dict[tuple[int, Region], None] = {}
        for key in keys:
            if key in self._store:
                self.reused += 1
            elif key not in wanted:
                wanted[key] = None
            else:
                self.reused += 1
        self.computed += len(wanted)
        return list(wanted)

    def evict_before(self, seq: int) -> None:
        for key in [k for k in self._store if k[0] < seq]:
            del self._store[key]
