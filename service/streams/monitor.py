"""Monitoring at work: a reader thread per stream, inference lanes, a watchdog, events and clips.

Threads:
- one *reader* per stream (:class:`StreamWorker`) opens the source, keeps a frame every
  interval_s and offers it to its lane; on failure or silence it reconnects with capped
  exponential back-off, forever, until the stream is removed (a video file played once gives up
  after :data:`FILE_MAX_FAILURES` failures and is marked failed);
- one *lane* per engine (:class:`Lane`, ``stream_workers`` of them; an Engine is not thread-safe)
  takes frames round-robin from the queues of its streams and runs them through each stream's own
  :class:`pipeline.engine.Session`, then the stream's alert policy;
- a *watchdog* marks silent streams offline and computes rates; it also applies retention;
- a *media* thread encodes event clips, off the lanes.

Queues are bounded (``stream_queue_size`` frames per stream): when inference lags, the oldest
waiting frame is dropped and counted, and the reader never blocks (file sources with
``realtime: false`` are the exception: they wait, since a file can).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.annotate import VideoWriter, draw_result
from pipeline.config import override_bundle_config
from pipeline.engine import Engine, Session
from pipeline.errors import ConfigError, SmokewatchError
from pipeline.records import Frame
from service.notify import Notifier
from service.store import EventRecord, EventStore

from .backoff import Backoff
from .config import Resolved, StreamSpec, check_file_allowed, file_path, resolve
from .health import FrameHealth, HealthConfig
from .hub import LiveHub
from .policy import AlertPolicy, Change, Window
from .redact import redact_url, scrub
from .sources import Grab, IntervalSampler, SourceFailure, SourceOptions, open_live
from .views import EventView, Origin, StreamState, StreamStatus, StreamView, event_view

if TYPE_CHECKING:
    from pipeline.bundle import ModelBundle
    from service.settings import Settings

log = logging.getLogger("smokewatch.streams")

ALERT_RED = (230, 40, 40)

# A video file played once that fails this many times in a row is given up (state "failed"): unlike
# a camera, a file that cannot be decoded does not come back by waiting. More than one try covers a
# file still being copied into place; with the default back-off the tries span about 3 s.
FILE_MAX_FAILURES = 3


def encode_jpeg(image: np.ndarray, quality: int = 85, max_side: int | None = None) -> bytes:
    """JPEG bytes of an RGB image, shrunk so its longer side is at most `max_side`."""
    if max_side and max(image.shape[:2]) > max_side:
        image = shrink(image, max_side)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(2, int(w * scale)), max(2, int(h * scale))), interpolation=cv2.INTER_AREA)


def banner(image: np.ndarray, text: str) -> None:
    """A red alert banner across the bottom of an annotated frame (in place; the frame stamp is at the top)."""
    scale = max(image.shape[:2]) / 720
    height = max(14, int(26 * scale))
    image[-height:] = (image[-height:] * 0.3 + np.array(ALERT_RED) * 0.7).astype(np.uint8)
    cv2.putText(image, text, (8, image.shape[0] - max(3, int(7 * scale))), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * max(scale, 0.5),
                (255, 255, 255), max(1, round(1.5 * scale)), cv2.LINE_AA)


@dataclass
class _Rates:
    """Frames per second over the last few seconds, from cumulative counts."""

    samples: deque = field(default_factory=lambda: deque(maxlen=6))

    def update(self, now: float, received: int, processed: int) -> tuple[float, float]:
        self.samples.append((now, received, processed))
        t0, r0, p0 = self.samples[0]
        span = now - t0
        if span <= 0:
            return 0.0, 0.0
        return (received - r0) / span, (processed - p0) / span


class StreamWorker:
    """One stream: its reader thread, queue, pipeline session, alert policy and clip in progress."""

    def __init__(self, monitor: "Monitor", resolved: Resolved, origin: Origin) -> None:
        self.monitor = monitor
        self.resolved = resolved
        self.spec: StreamSpec = resolved.spec
        self.id = self.spec.id
        self.origin = origin
        self.stop = threading.Event()
        self.removed = False
        self.busy = False  # the lane is processing one of its frames
        # status, written by the reader and the lane, read by anyone (plain attribute writes)
        self.state: StreamState = "starting"
        self.condition = "unknown"
        self.received_before = 0  # frames received on earlier connections
        self.source = None
        self.processed = 0
        self.dropped = 0
        self.reconnects = 0
        self.last_frame_at: float | None = None
        self.last_received_mono = time.monotonic()
        self.last_received_count = 0
        self.connected_at: float | None = None
        self.processing_s: float | None = None
        self.detail = ""
        self.last_error: str | None = None
        self.fps_in = 0.0
        self.fps = 0.0
        self._rates = _Rates()
        # queue (guarded by the lane's condition)
        self.queue: deque[Grab] = deque()
        self.lane: Lane | None = None
        # pipeline and alert state (touched by the lane thread, and by removal under _alert_lock)
        self.session: Session | None = None
        self._geometry: tuple[int, int] | None = None
        self.policy = AlertPolicy(resolved.policy)
        self.health = FrameHealth(monitor.health_config)
        self.event: EventRecord | None = None
        self._alert_lock = threading.RLock()
        self.pre_roll: deque[np.ndarray] = deque(maxlen=max(1, monitor.settings.clip_frames_before))
        self.clip: list[np.ndarray] | None = None
        self.clip_event: EventRecord | None = None
        self.clip_left = 0
        self.latest_jpeg: bytes | None = None
        self._origin_mono = time.monotonic()
        self._last_time_s = 0.0
        self.thread = threading.Thread(target=self._read, name=f"smokewatch-stream-{self.id}", daemon=True)

    # --- status ------------------------------------------------------------------------------

    @property
    def received(self) -> int:
        source = self.source
        return self.received_before + (source.received if source is not None else 0)

    def status(self) -> StreamStatus:
        event = self.event
        return StreamStatus(
            state=self.state,
            online=self.state == "online",
            condition=self.condition,  # type: ignore[arg-type]
            fps_in=round(self.fps_in, 2),
            fps=round(self.fps, 3),
            frames_received=self.received,
            frames_processed=self.processed,
            frames_dropped=self.dropped,
            reconnects=self.reconnects,
            last_frame_at=self.last_frame_at,
            connected_at=self.connected_at,
            processing_s=None if self.processing_s is None else round(self.processing_s, 3),
            source=self.detail,
            last_error=self.last_error,
            open_event_id=event.id if event is not None and event.state == "open" else None,
        )

    def view(self) -> StreamView:
        return StreamView(
            id=self.id,
            name=self.spec.display_name,
            url=redact_url(self.spec.url),
            kind=self.spec.kind,
            origin=self.origin,
            interval_s=self.resolved.interval_s,
            loop=self.spec.loop,
            alert=self.resolved.policy,
            frame_url=f"/streams/{self.id}/frame.jpg",
            status=self.status(),
        )

    def _set_state(self, state: StreamState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state == self.state:
            return
        self.state = state
        if state == "online":
            self.connected_at = time.time()
        if state in ("online", "ended"):
            log.info("stream %s %s", self.id, state)
        elif state == "failed":
            log.error("stream %s failed: %s", self.id, self.last_error)
        self.monitor.publish_status(self)

    # --- reader thread -----------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def _clock(self) -> float:
        return time.monotonic() - self._origin_mono

    def _read(self) -> None:
        settings = self.monitor.settings
        spec, kind = self.spec, self.spec.kind
        backoff = Backoff(settings.stream_backoff_s, settings.stream_backoff_max_s)
        sampler = IntervalSampler(self.resolved.interval_s)
        blocking = kind == "file" and not spec.realtime
        gives_up = kind == "file" and not spec.loop  # a file played once has an end; failing is one too
        failures = 0
        first = True
        while not self.stop.is_set():
            if not first:
                self.reconnects += 1
            first = False
            self._set_state("connecting")
            error = "the stream ended"
            source = None
            try:
                offset = self._last_time_s + 1e-3 if kind == "file" else 0.0
                options = SourceOptions(
                    timeout_s=self.resolved.timeout_s, max_pixels=settings.max_pixels, transport=spec.rtsp_transport,
                    realtime=spec.realtime, loop=spec.loop, clock_offset_s=offset, clock=self._clock,
                )
                source = open_live(kind, spec.url, self.stop, options)
                self.source = source
                for grab in source.grabs(sampler):
                    if self.stop.is_set():
                        break
                    self._last_time_s = grab.time_s
                    self.last_frame_at = grab.wall
                    self.last_received_mono = time.monotonic()
                    self.detail = source.detail
                    if self.state != "online":
                        backoff.reset()
                        self.last_error = None
                        self._set_state("online")
                    self.monitor.offer(self, grab, blocking)
                if self.stop.is_set():
                    break
                if getattr(source, "ended", False):
                    self.monitor.stream_ended(self)  # waits for the queued frames first
                    self._set_state("ended")
                    return
            except SourceFailure as exc:
                error = str(exc)
            except Exception as exc:  # a bug: keep the stream alive, say why in the status
                log.exception("stream %s: reader failed", self.id)
                error = scrub(f"internal error: {type(exc).__name__}: {exc}", spec.url)
            finally:
                if source is not None:
                    self.source = None  # first, so that `received` never counts this connection twice
                    self.received_before += source.received
                    source.close()
            if self.stop.is_set():
                break
            failures += 1
            if gives_up and failures >= FILE_MAX_FAILURES:
                error = f"{error} (gave up after {failures} tries)"
                self.monitor.stream_ended(self, f"the source failed: {error}")  # frames read before still count
                self._set_state("failed", error)
                return
            delay = backoff.next_delay()
            self._set_state("offline", error)
            log.warning("stream %s offline: %s; reconnecting in %.1f s", self.id, error, delay)
            self.stop.wait(delay)
        if self.removed:
            self._set_state("stopped")

    # --- lane thread -------------------------------------------------------------------------

    def process(self, engine: Engine, grab: Grab) -> None:
        """Run one sampled frame through the pipeline and the alert policy (on the lane's thread)."""
        image = grab.image
        size = (image.shape[1], image.shape[0])
        self.condition = self.health.update(image)  # reported only: a still scene can look frozen
        if self.session is None or self._geometry != size:
            self.session = engine.session()  # one geometry per session: tubes hold pixel regions
            self._geometry = size
        result = self.session.process([Frame(index=grab.index, time_s=grab.time_s, image=image)])[-1]
        annotated = draw_result(result)
        # With a track scorer a window counts by its region's score, which weighs the region's whole
        # history; with the k-of-n rule by the deciding head's p (the policy does its own k of n).
        scored = engine.config.decision.scorer_threshold is not None
        windows = [
            Window(w.score if scored else w.smoke_prob, w.track_id, (w.box.x1, w.box.y1, w.box.x2, w.box.y2), w.detector_conf)
            for w in result.windows
        ]
        with self._alert_lock:
            if self.removed:
                return
            change = self.policy.update(grab.time_s, windows)
            if self.policy.is_open:
                banner(annotated, f"SMOKE ALERT  p={max((w.smoke_prob for w in windows), default=0):.2f}")
            self.latest_jpeg = encode_jpeg(annotated, 80, max_side=1280)
            self._clip_frame(annotated)
            if change is not None:
                self.monitor.apply_change(self, change, grab, annotated)
        self.processed += 1
        self.processing_s = time.time() - grab.wall

    def _clip_frame(self, annotated: np.ndarray) -> None:
        small = shrink(annotated, self.monitor.settings.clip_max_side)
        self.pre_roll.append(small)
        if self.clip is not None:
            self.clip.append(small)
            self.clip_left -= 1
            if self.clip_left <= 0:
                self.finish_clip()

    def start_clip(self, event: EventRecord) -> None:
        if self.clip is not None:
            self.finish_clip()
        self.clip = list(self.pre_roll)  # the frames before, the confirming one included
        self.clip_event = event
        self.clip_left = self.monitor.settings.clip_frames_after

    def finish_clip(self) -> None:
        frames, event = self.clip, self.clip_event
        self.clip, self.clip_event = None, None
        if frames and event is not None:
            self.monitor.encode_clip(self, event, frames)


class Lane:
    """One inference thread and its engine, serving its streams round-robin."""

    def __init__(self, monitor: "Monitor", engine: Engine, index: int) -> None:
        self.monitor = monitor
        self.engine = engine
        self.index = index
        self.cond = threading.Condition()
        self.workers: list[StreamWorker] = []
        self._next = 0
        self.busy_s = 0.0
        self.thread = threading.Thread(target=self._run, name=f"smokewatch-lane-{index}", daemon=True)

    def attach(self, worker: StreamWorker) -> None:
        with self.cond:
            self.workers.append(worker)
            worker.lane = self

    def detach(self, worker: StreamWorker) -> None:
        with self.cond:
            if worker in self.workers:
                self.workers.remove(worker)
            worker.queue.clear()
            self.cond.notify_all()

    def offer(self, worker: StreamWorker, grab: Grab, size: int, block: bool) -> None:
        with self.cond:
            if block:
                while len(worker.queue) >= size and not worker.stop.is_set() and not self.monitor.stopping.is_set():
                    self.cond.wait(0.5)
            elif len(worker.queue) >= size:
                worker.queue.popleft()
                worker.dropped += 1
            worker.queue.append(grab)
            self.cond.notify_all()

    def _take(self) -> tuple[StreamWorker, Grab] | None:
        with self.cond:
            while not self.monitor.stopping.is_set():
                count = len(self.workers)
                for step in range(count):
                    worker = self.workers[(self._next + step) % count]
                    if worker.queue:
                        self._next = (self._next + step + 1) % max(1, count)
                        grab = worker.queue.popleft()
                        worker.busy = True  # set before the queue looks empty to anyone waiting for it
                        self.cond.notify_all()  # a blocked reader may go on
                        return worker, grab
                self.cond.wait(0.5)
        return None

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            worker, grab = item
            start = time.perf_counter()
            try:
                if worker.removed:
                    continue
                worker.process(self.engine, grab)
            except SmokewatchError as exc:
                worker.last_error = scrub(str(exc), worker.spec.url)
                log.error("stream %s: %s", worker.id, worker.last_error)
            except Exception as exc:  # a bug: the lane must keep serving the other streams
                worker.last_error = scrub(f"internal error: {type(exc).__name__}: {exc}", worker.spec.url)
                log.exception("stream %s: processing failed", worker.id)
            finally:
                worker.busy = False
            self.busy_s += time.perf_counter() - start


class Monitor:
    """All monitored streams of one process. Streams may be added before the model is loaded; they
    start when :meth:`start` gets the bundle."""

    def __init__(
        self,
        settings: "Settings",
        store: EventStore,
        notifier: Notifier | None = None,
        hub: LiveHub | None = None,
        base_url: str = "",
        extra_folders: list | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier
        self.hub = hub or LiveHub()
        self.base_url = base_url.rstrip("/")
        self.folders = [*settings.stream_folders, *(extra_folders or [])]
        self.health_config = HealthConfig(
            dark_level=settings.dark_level, frozen_diff=settings.frozen_diff, frames=settings.condition_frames
        )
        self.workers: dict[str, StreamWorker] = {}
        self.lanes: list[Lane] = []
        self.stopping = threading.Event()
        self.started = False
        self.bundle_threshold = 0.5
        self.listeners: list[Callable[[str, EventView], None]] = []  # e.g. `smokewatch monitor` printing
        self._lock = threading.RLock()
        self._media = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smokewatch-media")
        self._watchdog = threading.Thread(target=self._watch, name="smokewatch-watchdog", daemon=True)
        self._resumable = {e.stream_id: e for e in store.open_events()}

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, bundle: "ModelBundle") -> None:
        """Build the engines (blocking: run it in a thread) and start every stream added so far."""
        try:
            config = override_bundle_config(bundle.config, dict(self.settings.stream_overrides))
        except ConfigError as exc:
            raise ConfigError(f"stream_overrides: {exc}") from None
        engines = [Engine(bundle, device=self.settings.device, config=config) for _ in range(self.settings.stream_workers)]
        with self._lock:
            if self.stopping.is_set():
                return
            decision = config.decision
            self.bundle_threshold = decision.scorer_threshold if decision.scorer_threshold is not None else decision.threshold
            self.lanes = [Lane(self, engine, i) for i, engine in enumerate(engines)]
            for lane in self.lanes:
                lane.thread.start()
            self.started = True
            for worker in list(self.workers.values()):
                self._rebuild_policy(worker)
                self._launch(worker)
        self._watchdog.start()
        self._close_orphaned_events()

    def close(self, timeout: float = 5.0) -> None:
        """Stop every stream (open events stay open, to be resumed after a restart), finish clips."""
        self.stopping.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop.set()
        for lane in self.lanes:
            with lane.cond:
                lane.cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in [*(w.thread for w in workers), *(lane.thread for lane in self.lanes)]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            with worker._alert_lock:
                worker.finish_clip()  # whatever post-roll there is
        self._media.shutdown(wait=True)
        self.hub.close()

    # --- streams -------------------------------------------------------------------------------

    def check_source(self, spec: StreamSpec) -> None:
        """Refuse file sources outside the allowed folders (PathNotAllowed) and missing files (ConfigError)."""
        if spec.kind == "file":
            path = check_file_allowed(spec.url, self.folders)
            if not path.is_file():
                raise ConfigError(f"{file_path(spec.url).name}: no such file in the allowed folders")

    def add(self, spec: StreamSpec, origin: Origin = "api") -> StreamWorker:
        """Add and (once the model is loaded) start a stream. KeyError if the id is taken."""
        self.check_source(spec)
        resolved = resolve(spec, self.settings, self.bundle_threshold)
        with self._lock:
            if spec.id in self.workers:
                raise KeyError(spec.id)
            if origin == "api":
                self.store.save_stream(spec.id, spec.model_dump(mode="json", exclude_none=True))
            worker = StreamWorker(self, resolved, origin)
            resumed = self._resumable.pop(spec.id, None)
            if resumed is not None:
                worker.event = resumed
                worker.policy.resume(0.0)
                log.info("stream %s: continuing open event %d", spec.id, resumed.id)
            self.workers[spec.id] = worker
            if self.started:
                self._launch(worker)
        log.info("stream %s added (%s, %s, every %g s)", spec.id, spec.kind, redact_url(spec.url), resolved.interval_s)
        self.publish_status(worker)
        return worker

    def _rebuild_policy(self, worker: StreamWorker) -> None:
        # Thresholds may depend on the bundle, which was not known when the stream was added.
        worker.resolved = resolve(worker.spec, self.settings, self.bundle_threshold)
        was_open = worker.policy.is_open
        worker.policy = AlertPolicy(worker.resolved.policy)
        if was_open:
            worker.policy.resume(0.0)

    def _launch(self, worker: StreamWorker) -> None:
        lane = min(self.lanes, key=lambda l: len(l.workers))
        lane.attach(worker)
        worker.start()

    def remove(self, stream_id: str) -> bool:
        with self._lock:
            worker = self.workers.pop(stream_id, None)
            if worker is None:
                return False
            if worker.origin == "api":
                self.store.delete_stream(stream_id)
        worker.stop.set()
        with worker._alert_lock:
            worker.removed = True
            if worker.lane is not None:
                worker.lane.detach(worker)
            self._close_event(worker, "the stream was removed")
            worker.finish_clip()
        worker.state = "stopped"
        self.publish_status(worker)
        log.info("stream %s removed", stream_id)
        return True

    def get(self, stream_id: str) -> StreamWorker | None:
        return self.workers.get(stream_id)

    def list(self) -> list[StreamWorker]:
        with self._lock:
            return list(self.workers.values())

    def offer(self, worker: StreamWorker, grab: Grab, block: bool) -> None:
        lane = worker.lane
        if lane is not None:
            lane.offer(worker, grab, self.settings.stream_queue_size, block)

    def stream_ended(self, worker: StreamWorker, reason: str = "the source ended") -> None:
        """A file source reached its end (or was given up): wait for its queued frames, then close its alert."""
        if self.stopping.is_set():
            return  # shutting down: the alert stays open, like any other, for the next start
        while worker.lane is not None and (worker.queue or worker.busy) and not self.stopping.is_set():
            time.sleep(0.05)
        with worker._alert_lock:
            if self.stopping.is_set():
                return
            self._close_event(worker, reason)
            worker.finish_clip()

    @property
    def all_ended(self) -> bool:
        """Every stream is over: ended, failed (a file given up) or stopped."""
        workers = self.list()
        return bool(workers) and all(w.state in ("ended", "failed", "stopped") for w in workers)

    def failed(self) -> list[StreamWorker]:
        return [w for w in self.list() if w.state == "failed"]

    # --- events --------------------------------------------------------------------------------

    def payload(self, record: EventRecord, kind: str) -> dict:
        worker = self.workers.get(record.stream_id)
        view = event_view(record, self.base_url)
        stream = {"id": record.stream_id, "name": record.stream_name}
        if worker is not None:
            stream["url"] = redact_url(worker.spec.url)
        return {
            "type": kind,
            "event": view.model_dump(mode="json"),
            "stream": stream,
            "boxes": view.model_dump(mode="json")["boxes"],
            "snapshot_url": view.snapshot_url,
            "sent_at": time.time(),
        }

    def apply_change(self, worker: StreamWorker, change: Change, grab: Grab, annotated: np.ndarray) -> None:
        """Write what the policy decided (on the lane thread, under the worker's alert lock)."""
        spec, hooks = worker.spec, worker.resolved.webhooks
        boxes = [
            {"track_id": w.track_id, "box": [round(v, 1) for v in w.box], "smoke_prob": round(w.smoke_prob, 4),
             "detector_conf": round(w.detector_conf, 4)}
            for w in change.windows
        ]
        if change.kind == "opened" or (change.kind == "reopened" and worker.event is None):
            first = grab.wall - (grab.time_s - (change.first_time_s if change.first_time_s is not None else grab.time_s))
            record = self.store.open_event(
                spec.id, spec.display_name, grab.wall, first, change.score, boxes,
                snapshot=encode_jpeg(annotated, 90), hooks=hooks, payload=self.payload,
            )
            worker.event = record
            worker.start_clip(record)
            kind = "event.opened"
            log.warning("stream %s: SMOKE event %d opened (p=%.2f)", spec.id, record.id, change.score)
        elif change.kind == "reopened":
            record = self.store.reopen_event(worker.event.id, grab.wall, change.score, boxes, hooks=hooks, payload=self.payload)
            worker.event = record
            kind = "event.reopened"
            log.warning("stream %s: SMOKE event %d reopened (p=%.2f)", spec.id, record.id, change.score)
        elif change.kind == "updated":
            if worker.event is None:
                return
            self.store.update_event(worker.event.id, grab.wall, change.score, boxes)
            record = self.store.get_event(worker.event.id)
            worker.event = record
            kind = "event.updated"
        else:
            self._close_event(worker, change.reason, policy_closed=True)
            return
        self._announce(kind, record)

    def _close_event(self, worker: StreamWorker, reason: str, policy_closed: bool = False) -> None:
        if not policy_closed:
            worker.policy.close(worker._last_time_s, reason)
        event = worker.event
        if event is None or event.state != "open":
            return
        record = self.store.close_event(event.id, time.time(), reason, hooks=worker.resolved.webhooks, payload=self.payload)
        if record is None:
            return
        worker.event = record
        log.info("stream %s: event %d closed (%s)", worker.id, record.id, reason)
        self._announce("event.closed", record)

    def _announce(self, kind: str, record: EventRecord) -> None:
        view = event_view(record, "")
        self.hub.publish(kind, view.model_dump(mode="json"))
        if self.notifier is not None and kind != "event.updated":
            self.notifier.wake()
        for listener in list(self.listeners):
            try:
                listener(kind, view)
            except Exception:  # noqa: BLE001 - a printing listener must not stop monitoring
                log.exception("event listener failed")

    def encode_clip(self, worker: StreamWorker, event: EventRecord, frames: list[np.ndarray]) -> None:
        def work() -> None:
            draft = None
            try:
                folder, draft = self.store.clip_draft(event.media_dir)
                with VideoWriter(draft, fps=self.settings.clip_fps) as writer:
                    for image in frames:
                        writer.write(image)
                record = self.store.attach_clip(event.id, draft, folder)
            except Exception:  # noqa: BLE001 - a clip is a nice-to-have; the event stands without it
                log.exception("event %d: clip not written", event.id)
                if draft is not None:
                    draft.unlink(missing_ok=True)  # (gone already if attach_clip moved it in place)
                return
            if record is not None:
                if worker.event is not None and worker.event.id == record.id:
                    worker.event = record
                self._announce("event.updated", record)

        try:
            self._media.submit(work)
        except RuntimeError:  # shut down: write it here
            work()

    def _close_orphaned_events(self) -> None:
        """Open events of streams that no longer exist (removed from the streams file) are closed."""
        with self._lock:
            leftovers, self._resumable = list(self._resumable.values()), {}
        for event in leftovers:
            record = self.store.close_event(event.id, time.time(), "the stream is no longer configured",
                                            hooks=tuple(self.settings.webhook_urls), payload=self.payload)
            if record is not None:
                self._announce("event.closed", record)

    # --- watchdog ------------------------------------------------------------------------------

    def publish_status(self, worker: StreamWorker) -> None:
        self.hub.publish("stream.status", {"id": worker.id, "name": worker.spec.display_name, **worker.status().model_dump(mode="json")})

    def _watch(self) -> None:
        settings = self.settings
        next_retention = time.monotonic()
        while not self.stopping.wait(1.0):
            now = time.monotonic()
            for worker in self.list():
                worker.fps_in, worker.fps = worker._rates.update(now, worker.received, worker.processed)
                received = worker.received
                if received != worker.last_received_count:
                    worker.last_received_count = received
                    worker.last_received_mono = now
                if worker.state != "online":
                    continue
                limit = settings.stream_stall_s
                source = worker.source
                if getattr(source, "mode", "") == "snapshot":
                    limit = max(limit, worker.resolved.interval_s + worker.resolved.timeout_s + 1)
                silent = now - worker.last_received_mono
                if silent > limit:
                    worker._set_state("offline", f"no frame for {silent:.0f} s")
                    log.warning("stream %s: no frame for %.0f s; marked offline", worker.id, silent)
            if now >= next_retention:
                next_retention = now + settings.retention_interval_s
                try:
                    done = self.store.apply_retention(time.time(), settings.event_retention_days * 86400, settings.event_max_media_mb << 20)
                    if any(done.values()):
                        log.info("retention: %s", done)
                except Exception:  # noqa: BLE001
                    log.exception("retention failed")
