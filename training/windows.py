"""Labelled smoke-tube windows for training verifiers, with their features cached on disk.

The engine runs over each training item exactly as it will in service (same sampler, detector,
tubes and backbone), so the verifier learns on the windows it will be shown, including the
detector's false positives on clouds, fog and dust: those are the hard negatives it exists to
reject. Beside them, a second tube builder follows the ground-truth boxes, so every plume yields
positive windows even where the detector (early in training, or on faint smoke) missed it, and
optionally a third holds a few regions still for the whole clip (`still_boxes`): pale spots and
random places that nothing proposes, so the heads also see what a region looks like when nothing
in it rises (a pale trunk, a dirt track, a rock) or when fog drifts through it.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from pipeline.cues import VERSION as CUES_VERSION
from pipeline.engine import Engine, Session
from pipeline.records import Box, Detection, Frame, WindowRequest, WindowResult
from pipeline.tubes import TubeBuilder

from .datasets import ManifestItem, frame_boxes

GT_TRACK_OFFSET = 1_000_000  # track ids of ground-truth tubes, apart from detector tubes
STILL_TRACK_OFFSET = 2_000_000  # track ids of still tubes (`still_boxes`)
STILL_VERSION = 1  # raise when `still_boxes` picks other boxes, so cached windows are recomputed
MIN_OVERLAP = 0.3  # share of a ground-truth box a region must hold to count as showing it


@dataclass
class WindowSet:
    """Windows of many items: features (N, T, D) float16, labels, and where each came from."""

    features: np.ndarray
    labels: np.ndarray  # 1 smoke, 0 not
    item: np.ndarray  # index into `items`
    from_detector: np.ndarray  # True: a detector tube; False: a ground-truth tube
    detector_conf: np.ndarray
    items: list[str] = field(default_factory=list)
    still: np.ndarray | None = None  # True: a still tube (`still_boxes`); None: none collected

    def __post_init__(self) -> None:
        if self.still is None:
            self.still = np.zeros(len(self.labels), bool)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> "WindowSet":
        return WindowSet(
            self.features[mask], self.labels[mask], self.item[mask], self.from_detector[mask],
            self.detector_conf[mask], self.items, self.still[mask],
        )

    def summary(self) -> dict[str, int]:
        det = self.from_detector
        return {
            "windows": len(self),
            "positive": int(self.labels.sum()),
            "negative": int((1 - self.labels).sum()),
            "detector_windows": int(det.sum()),
            "detector_false_positives": int((det & (self.labels == 0)).sum()),
            "ground_truth_windows": int((~det & ~self.still).sum()),
            **({"still_windows": int(self.still.sum()), "still_positive": int((self.still & (self.labels == 1)).sum())}
               if self.still.any() else {}),
        }


@dataclass(frozen=True)
class LabelledWindow:
    """One window the labelling session saw: its features (T, D) and what the ground truth says."""

    features: np.ndarray
    label: int  # 1 smoke, 0 not
    from_detector: bool
    detector_conf: float
    still: bool = False


def _overlap(region: tuple[int, int, int, int], box) -> float:
    x1, y1, x2, y2 = region
    w = min(x2, box.x2) - max(x1, box.x1)
    h = min(y2, box.y2) - max(y1, box.y1)
    return (w * h) / box.area if w > 0 and h > 0 and box.area > 0 else 0.0


def still_boxes(image: np.ndarray, count: int, rng: np.random.Generator) -> list[Box]:
    """`count` boxes to hold still over a clip: half on the palest spots against their
    surroundings (what the heads took for smoke on real footage: a birch trunk, a dirt track
    below a mast, fog lying on a building), half anywhere, so sky, ridges and forest are there too.
    Sized as the detector's boxes on distant plumes are (5 to 16 % of the frame height)."""
    H, W = image.shape[:2]
    scale = min(1.0, 160.0 / W)
    grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (max(1, round(W * scale)), max(1, round(H * scale))),
                      interpolation=cv2.INTER_AREA).astype(np.float64)
    h, w = grey.shape
    chosen: list[Box] = []

    def keep(box: Box) -> bool:
        """Takes the box unless it mostly covers one already taken."""
        if all(box.iou(c) < 0.3 for c in chosen):
            chosen.append(box)
            return True
        return False

    def in_frame(x: float, y: float, bw: int, bh: int) -> Box:  # from the small image's pixels
        return Box(x / scale, y / scale, min(W, (x + bw) / scale), min(H, (y + bh) / scale))

    def size() -> tuple[int, int]:  # (width, height) in the small image
        side = float(rng.uniform(0.05, 0.16)) * h
        return max(1, min(w - 1, round(side * float(rng.uniform(0.6, 1.6))))), max(1, min(h - 1, round(side)))

    for _ in range((count + 1) // 2):
        bw, bh = size()
        # mean inside each box minus the mean of the ring half its size around it, for every place
        mx, my = (bw + 1) // 2, (bh + 1) // 2
        ii = cv2.integral(cv2.copyMakeBorder(grey, my, my, mx, mx, cv2.BORDER_REFLECT))

        def sums(y0: int, x0: int, hh: int, ww: int) -> np.ndarray:
            ys, xs = slice(y0, y0 + h - bh + 1), slice(x0, x0 + w - bw + 1)
            ye, xe = slice(y0 + hh, y0 + hh + h - bh + 1), slice(x0 + ww, x0 + ww + w - bw + 1)
            return ii[ye, xe] - ii[ys, xe] - ii[ye, xs] + ii[ys, xs]

        inner = sums(my, mx, bh, bw)
        ring = sums(0, 0, bh + 2 * my, bw + 2 * mx) - inner
        contrast = inner / (bw * bh) - ring / ((bh + 2 * my) * (bw + 2 * mx) - bw * bh)
        for flat in np.argsort(contrast, axis=None)[::-1][:2000]:
            y, x = divmod(int(flat), contrast.shape[1])
            if keep(in_frame(x, y, bw, bh)):
                break
    for _ in range(20 * count):
        if len(chosen) >= count:
            break
        bw, bh = size()
        x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
        keep(in_frame(x, y, bw, bh))
    return chosen[:count]


def _item_rng(item: ManifestItem) -> np.random.Generator:
    """The same still boxes for an item on every run (the cache relies on it)."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(item.path.name.encode()).digest()[:8], "little"))


class LabellingSession(Session):
    """A session that also follows ground-truth tubes (and, with `still` > 0, that many still
    regions) and keeps every window's features and label."""

    def __init__(self, engine: Engine, item: ManifestItem, still: int = 0) -> None:
        super().__init__(engine)
        self.item = item
        self.gt_tubes = TubeBuilder(self.config.tubes.model_copy(update={"max_missed": 0}))
        self.still = still
        self.still_tubes = TubeBuilder(self.config.tubes.model_copy(update={"max_missed": 0, "max_tracks": still})) if still else None
        self._still_boxes: list[Box] | None = None
        self.records: list[LabelledWindow] = []
        self._truth: dict[int, tuple[int, list | None]] = {}

    def link(self, seq: int, frame: Frame, detections: list) -> list[WindowRequest]:
        requests = super().link(seq, frame, detections)
        width, height = frame.size
        boxes = frame_boxes(self.item, frame.index, width, height)
        self._truth[seq] = (frame.index, boxes)
        if boxes:
            gt = self.gt_tubes.update(seq, [Detection(b, 1.0) for b in boxes], width, height)
            requests += [
                WindowRequest(r.track_id + GT_TRACK_OFFSET, r.seq, r.region, r.frame_seqs, r.box, r.detector_conf)
                for r in gt
            ]
        else:
            self.gt_tubes.update(seq, [], width, height)
        if self.still_tubes is not None:
            if self._still_boxes is None:  # picked on the first frame, held for the whole clip
                self._still_boxes = still_boxes(frame.image, self.still, _item_rng(self.item))
            held = self.still_tubes.update(seq, [Detection(b, 0.0) for b in self._still_boxes], width, height)
            requests += [
                WindowRequest(r.track_id + STILL_TRACK_OFFSET, r.seq, r.region, r.frame_seqs, r.box, 0.0)
                for r in held
            ]
        return requests

    def window_features(self, requests: list[WindowRequest], member: str | None = None) -> torch.Tensor:
        stacked = super().window_features(requests, member)
        if member is not None:  # the heads trained here read the main extractor's features
            return stacked
        array = stacked.detach().to("cpu", torch.float16).numpy()
        for request, features in zip(requests, array):
            frame_index, boxes = self._truth[request.seq]
            self.records.append(LabelledWindow(
                features, self._label(request, frame_index, boxes), request.track_id < GT_TRACK_OFFSET,
                request.detector_conf, request.track_id >= STILL_TRACK_OFFSET,
            ))
        return stacked

    def _label(self, request: WindowRequest, frame_index: int, boxes) -> int:
        return int(shows_smoke(self.item, frame_index, request.region, boxes))


def shows_smoke(item: ManifestItem, frame_index: int, region: tuple, boxes: list | None) -> bool:
    """Whether a window's region shows smoke at its last frame: the frame shows smoke and the region
    holds enough of one of its ground-truth boxes (`boxes`, from `frame_boxes`)."""
    return _filled(item, frame_index, region, boxes) > 0


def _filled(item: ManifestItem, frame_index: int, region: tuple, boxes: list | None) -> float:
    """The largest share of the region's area covered by a ground-truth box it holds (MIN_OVERLAP of
    the box); 0.0 on a frame without smoke, 1.0 without per-frame boxes (the frame's truth is all we know)."""
    if not item.smoke_at(frame_index):
        return 0.0
    if boxes is None:
        return 1.0
    area = max((region[2] - region[0]) * (region[3] - region[1]), 1)
    held = [o * b.area / area for b in boxes if (o := _overlap(region, b)) >= MIN_OVERLAP]
    return max(held, default=0.0)


def window_on_smoke(item: ManifestItem, window: WindowResult, width: int, height: int) -> bool:
    """`shows_smoke` for a window the engine judged: its region at its last frame."""
    return smoke_share(item, window, width, height) > 0


def smoke_share(item: ManifestItem, window: WindowResult, width: int, height: int) -> float:
    """How much of a window's region the smoke fills at its last frame (`_filled`).

    A region can hold a whole plume and still not show it: a 10 px wisp inside the square cut
    around a 270 px ridge band is 3 px once the crop is resized for the backbone."""
    if not item.smoke_at(window.frame_index):
        return 0.0  # no need to read the frame's boxes
    region = (window.region.x1, window.region.y1, window.region.x2, window.region.y2)
    return _filled(item, window.frame_index, region, frame_boxes(item, window.frame_index, width, height))


def _cache_key(engine: Engine, item: ManifestItem, bundle_fingerprint: str, still: int = 0) -> str:
    cfg = engine.config
    stat = item.path.stat()
    record = {
        "path": str(item.path),
        "size": stat.st_size,
        "mtime": int(stat.st_mtime),
        "label": [item.label, item.smoke_from, item.smoke_to],
        "bundle": bundle_fingerprint,
        "config": cfg.model_dump(mode="json", include={"sampling", "detector", "motion", "tubes", "extractor"}),
    }
    if cfg.motion.spread == "std":  # as before the choice existed: windows cached then stay valid
        del record["config"]["motion"]["spread"]
    if not cfg.motion.edge_shift:  # likewise for windows cached before edge_shift existed
        del record["config"]["motion"]["edge_shift"]
    if cfg.extractor.change_cues:  # only then: windows cached without cues stay valid
        record["cues_version"] = CUES_VERSION
    if still:  # only then: windows cached without still tubes stay valid
        record["still"] = [still, STILL_VERSION]
    payload = json.dumps(record, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def network_fingerprint(*modules: torch.nn.Module) -> str:
    """A hash of networks' weights, so cached features are recomputed when a network changes."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _read_cached(path: Path) -> tuple[np.ndarray, ...] | None:
    """A cached item's arrays (features, labels, from_detector, detector_conf, still), or None when
    absent or unreadable (then it is simply recomputed)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            still = data["still"] if "still" in data.files else np.zeros(len(data["labels"]), bool)
            return data["features"], data["labels"], data["from_detector"], data["detector_conf"], still
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def collect_windows(
    engine: Engine, items: list[ManifestItem], cache_dir: Path | None = None, progress: bool | None = None,
    still: int = 0,
) -> WindowSet:
    """Run the pipeline over every item and return its labelled windows (cached per item on disk);
    `still` regions per item are also held still for the whole clip (`still_boxes`)."""
    fingerprint = network_fingerprint(engine.detector.network, engine.extractor.backbone)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    feats, labels, owners, from_det, confs, stills = [], [], [], [], [], []
    window, dim = engine.config.tubes.window, engine.bundle.window_dim  # change_cues is fixed by the bundle
    for index, item in enumerate(tqdm(items, desc="windows", unit="item", disable=None if progress is None else not progress)):
        cached = cache_dir / f"{_cache_key(engine, item, fingerprint, still)}.npz" if cache_dir is not None else None
        loaded = _read_cached(cached) if cached is not None else None
        if loaded is not None:
            f, l, d, c, st = loaded
        else:
            session = LabellingSession(engine, item, still)
            with engine.open(item.path) as source:
                for _ in engine.run(source, session):
                    pass
            records = session.records
            f = np.stack([r.features for r in records]) if records else np.zeros((0, window, dim), np.float16)
            l = np.array([r.label for r in records], np.int64)
            d = np.array([r.from_detector for r in records], bool)
            c = np.array([r.detector_conf for r in records], np.float32)
            st = np.array([r.still for r in records], bool)
            if cached is not None:  # written aside and renamed: a stopped run leaves no half file
                partial = cached.with_name(cached.stem + ".partial.npz")
                np.savez(partial, features=f, labels=l, from_detector=d, detector_conf=c, still=st)
                partial.replace(cached)
        feats.append(f)
        labels.append(l)
        owners.append(np.full(len(l), index, np.int64))
        from_det.append(d)
        confs.append(c)
        stills.append(st)
    return WindowSet(
        np.concatenate(feats) if feats else np.zeros((0, window, dim), np.float16),
        np.concatenate(labels) if labels else np.zeros(0, np.int64),
        np.concatenate(owners) if owners else np.zeros(0, np.int64),
        np.concatenate(from_det) if from_det else np.zeros(0, bool),
        np.concatenate(confs) if confs else np.zeros(0, np.float32),
        [str(i.path) for i in items],
        np.concatenate(stills) if stills else np.zeros(0, bool),
    )
