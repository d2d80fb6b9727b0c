"""The engine: a model bundle put to work on frames.

    source -> sampler -> detector -> tubes -> features -> verifier -> decision

:class:`Engine` owns the networks (loaded once, on one device). :class:`Session` owns the state
of one source or one camera stream (tracks, cached crop features, the last frames, decisions),
so one engine can serve many clips and streams. Frames are processed in chunks: the detector and
the backbone each see a whole chunk as one batch, which is where a GPU earns its keep, while the
tube builder still walks the frames in order.

Speed on a GPU (none of it changes a result):
- decoding overlaps inference: a background thread decodes and letterboxes the next chunk(s)
  while the current one is inferred (``runtime.prefetch``);
- :meth:`Engine.detect_many` / :meth:`Engine.process_many` put the chunks of several clips or
  streams through the detector as one batch;
- half precision and channels-last convolutions on CUDA (``runtime.half``);
- within a chunk the device is waited on a handful of times (detections, head outputs), never
  per frame or per box, and cached crop features stay on the device.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .bundle import ModelBundle
from .config import PipelineConfig, head_member
from .cues import thumbnail, window_cues
from .decision import RegionDecider
from .detector import Detector, Prepared
from .errors import BundleError, ConfigError
from .features import CropFeatureCache, FeatureExtractor, cut_crop
from .models import fuse_for_inference, resolve_device, smoke_class_index
from .flow import FlowMeter
from .motion import MotionProposer
from .motion import merge as merge_proposals
from .records import Box, ClipResult, Frame, FrameResult, StageTimes, WindowRequest, WindowResult
from .sampler import Sampler
from .scorer import NO_SCORER, TrackEvidence
from .sources import FrameSource, expected_kept_frames, open_source
from .tubes import TubeBuilder


@dataclass(frozen=True)
class Chunk:
    """Kept frames decoded and letterboxed together, with the seconds each step took."""

    frames: list[Frame]
    prepared: Prepared
    decode_s: float
    prepare_s: float


@dataclass(frozen=True)
class SessionStep:
    """Frames for one session in a :meth:`Engine.process_many` batch (`prepared` None: letterbox here)."""

    session: "Session"
    frames: list[Frame]
    prepared: Prepared | None = None


def _scorer_heads(bundle: ModelBundle, config: PipelineConfig, names: list[str], available) -> list[str]:
    """`names` plus the heads the track scorer reads, when it decides: its features need every one
    of them for every window. Refuses a scorer threshold on a bundle without a scorer."""
    if config.decision.scorer_threshold is None:
        return names
    if bundle.scorer is None:
        raise BundleError(NO_SCORER)
    absent = [h for h in bundle.scorer.heads if h not in available]
    if absent:
        raise BundleError(f"the track scorer reads head {', '.join(absent)}, which is not loaded")
    if bundle.scorer.uses_flow and not config.flow.enabled:
        raise ConfigError("the track scorer reads the flow in each region: set flow.enabled (or decide with the "
                          "k-of-n rule: decision.scorer_threshold=null)")
    return list(dict.fromkeys([*names, *bundle.scorer.heads]))


class Engine:
    """Networks of one bundle on one device. Not thread-safe: use one engine per worker thread."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: str | None = None,
        heads: Iterable[str] | None = None,
        config: PipelineConfig | None = None,
        backend: str | None = None,
    ) -> None:
        self.bundle = bundle
        self.config = config or bundle.config
        self.device = resolve_device(device or self.config.runtime.device)
        self.backend = backend or self.config.runtime.backend
        if self.backend not in ("torch", "onnx"):
            raise BundleError(f"unknown backend '{self.backend}' (use torch or onnx)")
        half = self.config.runtime.half and self.device.type == "cuda" and self.backend == "torch"
        dtype = torch.float16 if half else torch.float32

        # An ensemble member's heads run when asked for or when the track scorer reads them: each
        # member costs a backbone pass per crop, wasted under the k-of-n rule, which reads none.
        names = list(heads) if heads is not None else [h for h in bundle.heads if head_member(h)[0] is None]
        names = _scorer_heads(bundle, self.config, names, bundle.heads)
        unknown = [h for h in names if h not in bundle.heads]
        if unknown:
            raise BundleError(f"the model bundle has no head {', '.join(unknown)} (it has {', '.join(bundle.heads)})")
        # With no heads the engine still detects, links and extracts features (training uses that).
        self.primary: str | None = self.config.verifier.head if self.config.verifier.head in names else (names[0] if names else None)

        if self.backend == "onnx":
            from .backends import onnx_networks

            exported = onnx_networks(bundle, self.device)
            network, backbone, members = exported.detector, exported.extractor, exported.members
        else:
            network = fuse_for_inference(copy.deepcopy(bundle.detector)).to(self.device, dtype)
            backbone = copy.deepcopy(bundle.backbone).eval().to(self.device, dtype)
            backbone = backbone.to(memory_format=torch.channels_last)
            if self.device.type == "cuda":
                network = network.to(memory_format=torch.channels_last)
            members = {source.member: source.backbone for source in bundle.feature_sources()[1:]}
        self.detector = Detector(
            network,
            self.config.detector,
            class_index=smoke_class_index(bundle.detector_names, self.config.detector.smoke_class),
            device=self.device,
            half=half,
            name=bundle.describe()["detector"],
        )
        ex = self.config.extractor
        self.extractor = FeatureExtractor(
            backbone, bundle.feature_dim, ex.input_size, self.device, half, f"{ex.backbone}@{ex.input_size}"
        )
        # ensemble members, only those whose heads run (the track scorer's, or heads asked for)
        read = {head_member(name)[0] for name in names}
        self.extractors: dict[str | None, FeatureExtractor] = {None: self.extractor}
        for source in bundle.feature_sources()[1:]:
            if source.member not in read:
                continue
            member = members[source.member]
            if self.backend == "torch":
                member = copy.deepcopy(member).eval().to(self.device, dtype).to(memory_format=torch.channels_last)
            self.extractors[source.member] = FeatureExtractor(
                member, source.feature_dim, source.config.input_size, self.device, half,
                f"{source.config.backbone}@{source.config.input_size}",
            )
        # Heads are tiny; they run in float32 for stable recurrences even when the CNNs run in half.
        self.heads = {name: copy.deepcopy(bundle.heads[name]).eval().to(self.device) for name in names}
        self.head_groups = self._group_heads()

    @classmethod
    def from_path(cls, path: str | Path, device: str | None = None, heads: Iterable[str] | None = None) -> "Engine":
        wanted = list(heads) if heads is not None else None
        return cls(ModelBundle.load(path, heads=wanted), device=device, heads=wanted)

    @property
    def model_names(self) -> dict[str, str]:
        names = self.bundle.describe()
        names["verifier"] = self.primary or "none"
        return names

    def with_config(self, config: PipelineConfig, heads: Iterable[str] | None = None) -> "Engine":
        """The same networks under another run-time config (sampling, tubes, decision, detector
        thresholds) and optionally fewer heads; nothing is copied or reloaded, so a service can
        honour per-request settings cheaply. Network-shaping settings must not differ."""
        view = copy.copy(self)
        view.config = config
        names = _scorer_heads(self.bundle, config, list(heads) if heads is not None else list(self.heads), self.heads)
        missing = [h for h in names if h not in self.heads]
        if missing:
            raise BundleError(f"head {', '.join(missing)} is not loaded (loaded: {', '.join(self.heads)})")
        view.heads = {name: self.heads[name] for name in names}
        view.head_groups = view._group_heads()
        view.primary = config.verifier.head if config.verifier.head in view.heads else (names[0] if names else None)
        view.detector = copy.copy(self.detector)
        view.detector.config = config.detector
        return view

    def _group_heads(self) -> dict[str | None, list[str]]:
        """The loaded heads grouped by the crop features they read (None: the main extractor), in
        extractor order: what a chunk's features and heads run as, fixed while the engine lives."""
        groups: dict[str | None, list[str]] = {}
        for name in self.heads:
            groups.setdefault(head_member(name)[0], []).append(name)
        return {member: groups[member] for member in self.extractors if member in groups}

    def session(self) -> "Session":
        return Session(self)

    def open(self, path: str | Path) -> FrameSource:
        return open_source(path, folder_interval_s=self.config.sampling.folder_interval_s)

    def run(self, source: FrameSource, session: "Session | None" = None) -> Iterator[FrameResult]:
        """Sample a finite source and yield a result for every kept frame, in order.

        Close the generator (or exhaust it) before closing the source: with prefetch on, a
        decoding thread reads the source until the generator is closed.
        """
        session = session or self.session()
        chunks = self._decoded(source)
        try:
            for chunk in chunks:
                session.times.decode += chunk.decode_s
                session.times.detect += chunk.prepare_s
                yield from session.process(chunk.frames, chunk.prepared)
        finally:
            chunks.close()

    def _decoded(self, source: FrameSource) -> Iterator[Chunk]:
        """Chunks of kept frames, letterboxed for the detector, with the seconds spent decoding and
        letterboxing them; read `runtime.prefetch` chunks ahead on a background thread."""
        chunks = self._chunks(source)
        depth = self.config.runtime.prefetch
        return prefetched(chunks, depth) if depth else chunks

    def _chunks(self, source: FrameSource) -> Iterator[Chunk]:
        sampler = Sampler(self.config.sampling, by_time=source.info.kind == "video")
        size = self.config.runtime.batch_frames
        chunk: list[Frame] = []
        decode_s = 0.0
        frames = source.frames(sampler.keep)
        try:
            while True:
                start = time.perf_counter()
                frame = next(frames, None)
                decode_s += time.perf_counter() - start
                if frame is not None:
                    chunk.append(frame)
                done = frame is None or sampler.exhausted
                if chunk and (done or len(chunk) >= size):
                    start = time.perf_counter()
                    prepared = self.detector.prepare([f.image for f in chunk])
                    yield Chunk(chunk, prepared, decode_s, time.perf_counter() - start)
                    chunk, decode_s = [], 0.0
                if done:
                    break
        finally:
            frames.close()

    def detect(
        self,
        path_or_source: str | Path | FrameSource,
        on_frame: Callable[[FrameResult], None] | None = None,
        progress: bool | None = None,
        session: "Session | None" = None,
    ) -> ClipResult:
        """Run a whole clip, folder or image and return its verdict.

        `progress` shows a bar on stderr (None: only when stderr is a terminal).
        """
        start = time.perf_counter()
        source = path_or_source if isinstance(path_or_source, FrameSource) else self.open(path_or_source)
        session = session or self.session()
        windows: list[WindowResult] = []
        processed = 0
        total = expected_kept_frames(
            source.info,
            self.config.sampling.fps if source.info.kind == "video" else None,
            self.config.sampling.folder_stride,
        )
        if total is not None and self.config.sampling.max_frames:
            total = min(total, self.config.sampling.max_frames)
        bar = tqdm(total=total, unit="frame", desc="smokewatch", disable=None if progress is None else not progress, leave=False)
        results = self.run(source, session)
        try:
            for result in results:
                processed += 1
                windows.extend(result.windows)
                bar.update(1)
                if on_frame is not None:
                    on_frame(result)
        finally:
            results.close()  # stops the decoding thread before the source is closed under it
            bar.close()
            source.close()
        return self._clip_result(source, session, windows, processed, time.perf_counter() - start)

    def detect_many(self, paths_or_sources: Sequence[str | Path | FrameSource]) -> list[ClipResult]:
        """Run several clips at once, for throughput: each is decoded on its own thread, and their
        chunks go through the detector together (:meth:`process_many`). Same results as
        :meth:`detect` on each; `seconds` of each result is the wall time of the whole batch."""
        start = time.perf_counter()
        sources: list[FrameSource] = []
        try:
            for p in paths_or_sources:
                sources.append(p if isinstance(p, FrameSource) else self.open(p))
        except BaseException:
            for src in sources:  # one unreadable clip must not leave the others' decoders open
                src.close()
            raise
        sessions = [self.session() for _ in sources]
        windows: list[list[WindowResult]] = [[] for _ in sources]
        processed = [0] * len(sources)
        streams = [prefetched(self._chunks(src), max(1, self.config.runtime.prefetch)) for src in sources]
        try:
            live = list(range(len(sources)))
            while live:
                work, owners = [], []
                for i in list(live):
                    item = next(streams[i], None)
                    if item is None:
                        live.remove(i)
                        continue
                    sessions[i].times.decode += item.decode_s
                    sessions[i].times.detect += item.prepare_s
                    work.append(SessionStep(sessions[i], item.frames, item.prepared))
                    owners.append(i)
                for i, results in zip(owners, self.process_many(work) if work else []):
                    processed[i] += len(results)
                    windows[i].extend(w for r in results for w in r.windows)
        finally:
            for stream in streams:
                stream.close()
            for src in sources:
                src.close()
        seconds = time.perf_counter() - start
        return [self._clip_result(*args, seconds) for args in zip(sources, sessions, windows, processed)]

    def process_many(self, work: Sequence[SessionStep]) -> list[list[FrameResult]]:
        """One step of several sessions (clips or camera streams) sharing this engine: all their
        frames go through the detector as one batch, then each session links, verifies and
        decides its own. Detection time is shared out by frame count."""
        images = [f.image for step in work for f in step.frames]
        parts = [step.prepared if step.prepared is not None else self.detector.prepare([f.image for f in step.frames]) for step in work]
        start = _synchronized(self.device)
        detections = self.detector.detect(images, Prepared.concat(parts))
        elapsed = _synchronized(self.device) - start
        out, offset = [], 0
        for step in work:
            step.session.times.detect += elapsed * len(step.frames) / max(1, len(images))
            out.append(step.session.process_detected(step.frames, detections[offset : offset + len(step.frames)]))
            offset += len(step.frames)
        return out

    def _clip_result(
        self, source: FrameSource, session: "Session", windows: list[WindowResult], processed: int, seconds: float
    ) -> ClipResult:
        decider = session.decider
        first = decider.first_confirmed
        return ClipResult(
            source=source.info,
            verdict=decider.verdict,
            score=decider.best_score,
            first_smoke_frame=first.frame if first else None,
            first_smoke_time_s=first.time_s if first else None,
            frames_read=source.frames_read,
            frames_processed=processed,
            windows=windows,
            seconds=seconds,
            device=str(self.device),
            model=self.model_names,
            stage_times=session.times,
            crops_computed=sum(c.computed for c in session.caches.values()),
            crops_reused=sum(c.reused for c in session.caches.values()),
        )


def _synchronized(device: torch.device) -> float:
    """perf_counter after the device has finished its queued work (so GPU time lands where it is spent)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


_END = object()


def prefetched(items: Iterator, depth: int) -> Iterator:
    """Run a generator on a background thread, up to `depth` items ahead of the consumer.

    Items, and an exception the generator raises, arrive in order. Closing the returned
    generator stops the thread (after the item it is producing) and closes `items` on it, so
    whatever `items` reads is released before the close returns.
    """
    ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not offer((True, item)):
                    return
            offer((True, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            offer((False, exc))
        finally:
            items.close()

    thread = threading.Thread(target=work, name="smokewatch-decode", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()


class Session:
    """State of one source or stream: push frames in order with :meth:`process`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config = engine.config
        self.tubes = TubeBuilder(self.config.tubes)
        self.motion = MotionProposer(self.config.motion) if self.config.motion.enabled else None
        self.flow = FlowMeter(self.config.flow) if self.config.flow.enabled else None
        # one cache per crop-feature network (the main one: None); `cache` is the main one's
        self.caches = {member: CropFeatureCache() for member in engine.extractors}
        self.cache = self.caches[None]
        self._cues = {None: self.config.extractor.change_cues, **{m.name: m.extractor.change_cues for m in self.config.ensemble}}
        # grey thumbnails of (kept frame, region) for the change cues, when the bundle uses them
        self.thumbs: dict[tuple[int, tuple[int, int, int, int]], np.ndarray] | None = (
            {} if any(self._cues.values()) else None
        )
        self.decider = RegionDecider(self.config.decision, engine.bundle.scorer)
        self.times = StageTimes(heads={name: 0.0 for name in engine.heads})
        self._images: dict[int, np.ndarray] = {}
        self._next_seq = 0

    def process(self, frames: list[Frame], prepared: Prepared | None = None) -> list[FrameResult]:
        """Detect, link, verify and decide for a chunk of consecutive kept frames (`prepared`: the
        detector's letterbox of them, when done ahead)."""
        with self._timed("detect"):
            detections = self.engine.detector.detect([f.image for f in frames], prepared)
        return self.process_detected(frames, detections)

    def process_detected(self, frames: list[Frame], detections: list[list]) -> list[FrameResult]:
        """Link, verify and decide for a chunk whose detections are known."""
        engine = self.engine
        start = time.perf_counter()
        staged: list[tuple[int, Frame, list, list[WindowRequest]]] = []
        for frame, dets in zip(frames, detections):
            seq = self._next_seq
            self._next_seq += 1
            self._images[seq] = frame.image
            staged.append((seq, frame, dets, self.link(seq, frame, dets)))
        requests = [r for *_, reqs in staged for r in reqs]
        self.times.other += time.perf_counter() - start

        probs: dict[str, list[float]] = {name: [] for name in engine.heads}
        if requests and engine.heads:
            outputs = []
            for member, names in engine.head_groups.items():
                with self._timed("features"):
                    stacked = self.window_features(requests, member)
                for name in names:
                    with self._timed("heads", name), torch.inference_mode():
                        outputs.append(torch.sigmoid(engine.heads[name](stacked)))
            order = [name for names in engine.head_groups.values() for name in names]
            probs = dict(zip(order, torch.stack(outputs).cpu().tolist()))  # one copy for all heads
        elif requests:
            with self._timed("features"):
                self.window_features(requests)

        start = time.perf_counter()
        results = []
        index = 0
        for seq, frame, dets, reqs in staged:
            windows = []
            for req in reqs:
                head_probs = {name: probs[name][index] for name in engine.heads}
                index += 1
                p = head_probs[engine.primary] if engine.primary else 0.0
                flow = self.flow.measure(req.region, req.frame_seqs) if self.flow is not None else None
                evidence = TrackEvidence(head_probs, req.box, flow) if self.decider.scorer else None
                verdict = self.decider.update(req.track_id, p, frame.index, frame.time_s, evidence)
                x1, y1, x2, y2 = req.region
                windows.append(
                    WindowResult(
                        track_id=req.track_id,
                        frame_index=frame.index,
                        time_s=frame.time_s,
                        box=req.box,
                        region=Box(float(x1), float(y1), float(x2), float(y2)),
                        detector_conf=req.detector_conf,
                        smoke_prob=p,
                        verified=verdict.verified,
                        confirmed=verdict.confirmed,
                        head_probs=head_probs,
                        score=verdict.score,
                        flow=flow,
                    )
                )
            results.append(FrameResult(frame=frame, seq=seq, detections=dets, windows=windows))
        self.decider.forget({t.id for t in self.tubes.tracks})
        oldest_needed = self._next_seq - self.config.tubes.window + 1
        for seq in [s for s in self._images if s < oldest_needed]:
            del self._images[seq]
        for cache in self.caches.values():
            cache.evict_before(oldest_needed)
        if self.flow is not None:
            self.flow.evict_before(oldest_needed)
        if self.thumbs is not None:
            for key in [k for k in self.thumbs if k[0] < oldest_needed]:
                del self.thumbs[key]
        self.times.other += time.perf_counter() - start
        return results

    def link(self, seq: int, frame: Frame, detections: list) -> list[WindowRequest]:
        """The windows due at this frame (the tubes stage), from the detector's boxes and, when
        enabled, motion proposals."""
        width, height = frame.size
        if self.motion is not None:
            detections = merge_proposals(detections, self.motion.propose(frame.image))
        if self.flow is not None:
            self.flow.push(seq, frame.image, frame.time_s)
        return self.tubes.update(seq, detections, width, height)

    def window_features(self, requests: list[WindowRequest], member: str | None = None) -> torch.Tensor:
        """(W, T, D) vectors the heads of `member` (None: the main extractor) read: each crop's
        backbone features, followed by the window's change cues when that network uses them."""
        features = self.crop_features(requests, member)
        if not self._cues[member]:
            return features
        cues = np.stack([window_cues(np.stack([self._thumbnail(s, r.region) for s in r.frame_seqs])) for r in requests])
        return torch.cat([features, torch.from_numpy(cues).to(features.device, features.dtype)], dim=2)

    def _thumbnail(self, seq: int, region: tuple[int, int, int, int]) -> np.ndarray:
        key = (seq, region)
        thumb = self.thumbs.get(key)
        if thumb is None:
            thumb = self.thumbs[key] = thumbnail(self._images[seq], region)
        return thumb

    def crop_features(self, requests: list[WindowRequest], member: str | None = None) -> torch.Tensor:
        """(W, T, D) backbone features of the requested windows; each (frame, region) crop goes
        through the backbone once, in batches across candidates and frames, and is reused by
        later windows."""
        extractor, cache = self.engine.extractors[member], self.caches[member]
        missing = cache.missing((s, r.region) for r in requests for s in r.frame_seqs)
        size = extractor.input_size
        step = self.config.runtime.feature_batch
        for i in range(0, len(missing), step):
            keys = missing[i : i + step]
            crops = np.stack([cut_crop(self._images[seq], region, size) for seq, region in keys])
            for key, vector in zip(keys, extractor(crops)):
                cache.put(key, vector)
        return torch.stack([torch.stack([cache.get((s, r.region)) for s in r.frame_seqs]) for r in requests])

    @contextmanager
    def _timed(self, stage: str, head: str | None = None) -> Iterator[None]:
        """Time a stage; on CUDA, synchronise first and last so queued kernels are counted where they run."""
        cuda = self.engine.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.engine.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(self.engine.device)
            elapsed = time.perf_counter() - start
            if head is not None:
                self.times.heads[head] = self.times.heads.get(head, 0.0) + elapsed
            else:
                setattr(self.times, stage, getattr(self.times, stage) + elapsed)


class NaiveSession(Session):
    """The straightforward loop the engine is checked and benchmarked against: every window
    recomputes every one of its T crops, one crop at a time. Same answers, much slower."""

    def crop_features(self, requests: list[WindowRequest], member: str | None = None) -> torch.Tensor:
        extractor = self.engine.extractors[member]
        windows = []
        for request in requests:
            vectors = [extractor(cut_crop(self._images[seq], request.region, extractor.input_size)[None])[0]
                       for seq in request.frame_seqs]
            self.caches[member].computed += len(vectors)
            windows.append(torch.stack(vectors))
        return torch.stack(windows)
