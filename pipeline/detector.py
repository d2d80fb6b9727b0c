"""The candidate detector: a YOLO network plus our own pre- and post-processing.

We run the ultralytics network module directly instead of its predictor so that frames, tiles
and streams can be batched together, the device and precision are ours to choose, and the same
code serves PyTorch and exported backends. Boxes come back in source pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision

from .config import DetectorConfig, TileConfig
from .records import Box, Detection

LETTERBOX_FILL = 114  # the grey ultralytics pads with during training


@dataclass(frozen=True, slots=True)
class _View:
    """A square detector input cut from one frame: which frame, where, and how it was scaled."""

    frame: int
    x0: int
    y0: int
    scale: float
    pad_x: int
    pad_y: int

    def to_source(self, boxes: torch.Tensor) -> torch.Tensor:
        """Letterbox xyxy boxes -> source-frame pixels."""
        out = boxes.clone()
        out[:, [0, 2]] = (boxes[:, [0, 2]] - self.pad_x) / self.scale + self.x0
        out[:, [1, 3]] = (boxes[:, [1, 3]] - self.pad_y) / self.scale + self.y0
        return out


class Detector:
    """Proposes smoke boxes in RGB frames. Thread-compatible, not thread-safe (one per worker)."""

    def __init__(
        self,
        network: torch.nn.Module,
        config: DetectorConfig,
        class_index: int,
        device: torch.device,
        half: bool = False,
        name: str = "",
    ) -> None:
        self.network = network
        self.config = config
        self.class_index = class_index
        self.device = device
        self.half = half and device.type == "cuda"
        self.name = name or config.arch
        head = network.model[-1] if hasattr(network, "model") else None
        self.end2end = bool(getattr(head, "end2end", False))

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Boxes for each image, highest confidence first."""
        if not images:
            return []
        views, batch = self._prepare(images)
        raw = self._forward(batch)
        per_view = self._decode(raw)
        merged: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in images]
        for view, (boxes, scores) in zip(views, per_view):
            if boxes.numel():
                merged[view.frame].append((view.to_source(boxes), scores))
        results = []
        for i, parts in enumerate(merged):
            h, w = images[i].shape[:2]
            results.append(self._finish(parts, w, h))
        return results

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.network(batch)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    def _prepare(self, images: Sequence[np.ndarray]) -> tuple[list[_View], torch.Tensor]:
        size = self.config.imgsz
        views: list[_View] = []
        canvases = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            for x0, y0, x1, y1 in tile_rects(w, h, self.config.tiles):
                canvas, scale, pad_x, pad_y = letterbox(image[y0:y1, x0:x1], size)
                canvases.append(canvas)
                views.append(_View(i, x0, y0, scale, pad_x, pad_y))
        array = np.ascontiguousarray(np.stack(canvases).transpose(0, 3, 1, 2))
        batch = torch.from_numpy(array).to(self.device, non_blocking=True)
        batch = batch.half() if self.half else batch.float()
        return views, batch.div_(255.0)

    def _decode(self, raw: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per view: (N, 4) xyxy boxes in letterbox pixels and (N,) scores for the smoke class."""
        conf = self.config.conf
        out = []
        if self.end2end:  # (B, max_det, 6): x1, y1, x2, y2, score, class
            for det in raw:
                keep = (det[:, 4] >= conf) & (det[:, 5].round() == self.class_index)
                out.append((det[keep, :4], det[keep, 4]))
            return out
        for pred in raw:  # (4 + nc, anchors): cx, cy, w, h, class scores
            scores = pred[4 + self.class_index]
            keep = scores >= conf
            xywh = pred[:4, keep].T
            boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), dim=1)
            out.append((boxes, scores[keep]))
        return out

    def _finish(self, parts: list[tuple[torch.Tensor, torch.Tensor]], width: int, height: int) -> list[Detection]:
        if not parts:
            return []
        boxes = torch.cat([p[0] for p in parts])
        scores = torch.cat([p[1] for p in parts])
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, height)
        valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[valid], scores[valid]
        keep = torchvision.ops.nms(boxes, scores, self.config.iou)[: self.config.max_det]
        boxes, scores = boxes[keep].cpu().tolist(), scores[keep].cpu().tolist()
        return [Detection(Box(*b), float(s)) for b, s in zip(boxes, scores)]


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Fit an image into a size x size canvas keeping its aspect; returns canvas, scale and padding."""
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = image
    return canvas, scale, pad_x, pad_y


def tile_rects(width: int, height: int, tiles: TileConfig | None) -> list[tuple[int, int, int, int]]:
    """Rectangles (x0, y0, x1, y1) the detector looks at in a frame: the whole frame and/or tiles."""
    whole = (0, 0, width, height)
    if tiles is None or (width <= tiles.size and height <= tiles.size):
        return [whole]
    step = tiles.size - tiles.overlap

    def starts(extent: int) -> list[int]:
        if extent <= tiles.size:
            return [0]
        positions = list(range(0, extent - tiles.size, step))
        positions.append(extent - tiles.size)
        return positions

    rects = [
        (x, y, min(x + tiles.size, width), min(y + tiles.size, height))
        for y in starts(height)
        for x in starts(width)
    ]
    return ([whole] if tiles.include_full_frame else []) + rects
