"""The candidate detector: a YOLO network plus our own pre- and post-processing.

We run the ultralytics network module directly instead of its predictor so that frames, tiles
and streams can be batched together, the device and precision are ours to choose, and the same
code serves PyTorch and exported backends. Boxes come back in source pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
        # An exported network (pipeline.backends) carries the flag itself.
        self.end2end = bool(getattr(head, "end2end", getattr(network, "end2end", False)))
        # On a GPU, convolutions in NHWC layout use the tensor cores best (half precision above all).
        self.channels_last = device.type == "cuda" and isinstance(network, torch.nn.Module) and hasattr(network, "model")

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray], prepared: "Prepared | None" = None) -> list[list[Detection]]:
        """Boxes for each image, highest confidence first.

        `prepared` is :meth:`prepare` of the same images, when it was done ahead (on a decoding
        thread); otherwise it is done here.
        """
        if not images:
            return []
        prepared = prepared if prepared is not None else self.prepare(images)
        # Per-view geometry goes to the device before the forward pass, so that nothing in the
        # post-processing waits on a host-to-device copy.
        geometry = torch.tensor(
            [(v.pad_x, v.pad_y, v.scale, v.x0, v.y0, images[v.frame].shape[1], images[v.frame].shape[0], v.frame) for v in prepared.views],
            dtype=torch.float32,
        ).to(self.device, non_blocking=True)
        return self._postprocess(self._raw(prepared), geometry, len(images))

    def prepare(self, images: Sequence[np.ndarray]) -> "Prepared":
        """The CPU half of detection: tiles and letterbox. Holds no state, so it may run on another thread."""
        size, rect = self.config.imgsz, self.config.rect
        views: list[_View] = []
        canvases = []
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            for x0, y0, x1, y1 in tile_rects(w, h, self.config.tiles):
                canvas, scale, pad_x, pad_y = letterbox(image[y0:y1, x0:x1], size, rect)
                canvases.append(canvas)
                views.append(_View(i, x0, y0, scale, pad_x, pad_y))
        return Prepared(views, [np.ascontiguousarray(c.transpose(2, 0, 1)) for c in canvases])

    def _raw(self, prepared: "Prepared") -> torch.Tensor:
        """Network outputs of every view, in view order. Views with canvases of one shape go
        through the network together; shapes are never padded to match, so a frame's boxes do not
        depend on what shares its batch (a whole frame beside its tiles, streams of other sizes)."""
        groups = prepared.groups()
        if len(groups) == 1:
            return self._forward(self._batch(groups[0][1]))
        outputs = [(indices, self._forward(self._batch(stacked))) for indices, stacked in groups]
        if not self.end2end:  # (G, 4 + nc, anchors): fewer anchors on smaller canvases, padded with empty ones
            anchors = max(out.shape[-1] for _, out in outputs)
            outputs = [(i, torch.nn.functional.pad(out, (0, anchors - out.shape[-1]))) for i, out in outputs]
        order = torch.tensor([i for indices, _ in outputs for i in indices], device=self.device)
        raw = torch.cat([out for _, out in outputs])
        return torch.empty_like(raw).index_copy_(0, order, raw)

    def _batch(self, canvases: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(canvases).to(self.device, non_blocking=True)
        batch = batch.half() if self.half else batch.float()
        batch = batch.div_(255.0)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.network(batch)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    def _postprocess(self, raw: torch.Tensor, geometry: torch.Tensor, count: int) -> list[list[Detection]]:
        """Smoke boxes in source pixels, per frame: confidence filter, per-frame NMS, `max_det` best.

        Every view of the batch is handled at once on the network's device: two waits for the
        device in all (the candidate count and the final copy), not a few per frame.
        """
        if self.end2end:  # (V, max_det, 6): x1, y1, x2, y2, score, class
            boxes, scores = raw[..., :4], raw[..., 4]
            wanted = raw[..., 5].round() == self.class_index
        else:  # (V, 4 + nc, anchors): cx, cy, w, h, class scores
            scores = raw[:, 4 + self.class_index]
            xywh = raw[:, :4].transpose(1, 2)
            boxes = torch.cat((xywh[..., :2] - xywh[..., 2:] / 2, xywh[..., :2] + xywh[..., 2:] / 2), dim=-1)
            wanted = None
        pad_x, pad_y, scale, x0, y0, width, height, frame = (g[:, None] for g in geometry.unbind(1))
        # Letterbox pixels -> source pixels, clipped to the frame (as _View.to_source does one view at a time).
        x1 = ((boxes[..., 0] - pad_x) / scale + x0).clamp(min=0)
        x2 = ((boxes[..., 2] - pad_x) / scale + x0).clamp(min=0)
        y1 = ((boxes[..., 1] - pad_y) / scale + y0).clamp(min=0)
        y2 = ((boxes[..., 3] - pad_y) / scale + y0).clamp(min=0)
        x1, x2 = torch.minimum(x1, width), torch.minimum(x2, width)
        y1, y2 = torch.minimum(y1, height), torch.minimum(y2, height)
        keep = (scores >= self.config.conf) & (x2 - x1 >= 1) & (y2 - y1 >= 1)
        if wanted is not None:
            keep &= wanted
        view, anchor = keep.nonzero(as_tuple=True)
        if view.numel() == 0:
            return [[] for _ in range(count)]
        candidates = torch.stack([t[view, anchor] for t in (x1, y1, x2, y2)], dim=1)
        confidence = scores[view, anchor]
        frames = frame[view, 0]
        order = torchvision.ops.batched_nms(candidates, confidence, frames.long(), self.config.iou)
        # Equal confidences (common with untrained heads) keep candidate order, as per-frame NMS
        # does, so a frame's boxes never depend on which other frames share its batch.
        order = order.sort().values
        order = order[torch.sort(confidence[order], descending=True, stable=True).indices]
        rows = torch.cat((candidates[order], confidence[order, None], frames[order, None]), dim=1).cpu().tolist()
        results: list[list[Detection]] = [[] for _ in range(count)]
        for bx1, by1, bx2, by2, conf, index in rows:  # highest confidence first, across all frames
            found = results[int(index)]
            if len(found) < self.config.max_det:
                found.append(Detection(Box(bx1, by1, bx2, by2), conf))
        return results


@dataclass(frozen=True, slots=True)
class Prepared:
    """Letterboxed detector inputs of a list of images: one (3, H, W) uint8 canvas per view."""

    views: list[_View]
    canvases: list[np.ndarray]

    def groups(self) -> list[tuple[list[int], np.ndarray]]:
        """The views by canvas shape: (view indices, their canvases stacked as (G, 3, H, W))."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, canvas in enumerate(self.canvases):
            by_shape.setdefault(canvas.shape, []).append(i)
        return [(indices, np.stack([self.canvases[i] for i in indices])) for indices in by_shape.values()]

    @staticmethod
    def concat(parts: Sequence["Prepared"]) -> "Prepared":
        """Several lists of images prepared apart, as one list (image indices follow on)."""
        if len(parts) == 1:
            return parts[0]
        views, offset = [], 0
        for part in parts:
            views.extend(replace(v, frame=v.frame + offset) for v in part.views)
            offset += max((v.frame for v in part.views), default=-1) + 1
        return Prepared(views, [c for p in parts for c in p.canvases])


def letterbox(image: np.ndarray, size: int, rect: bool = False) -> tuple[np.ndarray, float, int, int]:
    """Fit an image into a size x size canvas keeping its aspect; returns canvas, scale and padding.

    With `rect` the canvas keeps only as much padding as the network's stride of 32 needs (a
    1920x1080 frame at 384 gives 384x224, not 384x384): the same scale, fewer pixels to run.
    """
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    cw, ch = (-(-nw // 32) * 32, -(-nh // 32) * 32) if rect else (size, size)
    pad_x, pad_y = (cw - nw) // 2, (ch - nh) // 2
    canvas = np.full((ch, cw, 3), LETTERBOX_FILL, dtype=np.uint8)
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
