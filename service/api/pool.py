"""The inference pool: a few worker threads, each with its own engine, and a bounded waiting room.

An :class:`~pipeline.engine.Engine` is not thread-safe (its networks and stage timers are shared
by every session it runs), so each worker thread takes one engine from a free list and gives it
back: as many engines as workers, never two threads on one engine. Inference runs off the event
loop, so health checks and uploads keep being answered while clips are processed.

Admission is by :class:`Slot`: a request takes one *before* its upload is read and gives it back
when its answer is computed. ``workers + queue_size`` slots exist, so at most that many uploads
sit on disk or wait for a worker; when none is free the request is refused at once (503 with
Retry-After) instead of joining an unbounded backlog.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from pipeline.engine import Engine

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a worker when the service shuts down while a clip is being processed."""


class Slot:
    """A place in the pool, held from before the upload until the answer. Releasing twice is harmless."""

    def __init__(self, pool: "InferencePool") -> None:
        self._pool = pool
        self._released = False

    def release(self) -> None:
        with self._pool._lock:
            if not self._released:
                self._released = True
                self._pool._held -= 1


class InferencePool:
    def __init__(self, engines: list[Engine], queue_size: int) -> None:
        if not engines:
            raise ValueError("the pool needs at least one engine")
        self.workers = len(engines)
        self.capacity = self.workers + queue_size
        self.stopping = threading.Event()
        self._engines: queue.SimpleQueue[Engine] = queue.SimpleQueue()
        for engine in engines:
            self._engines.put(engine)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="smokewatch-worker")
        self._lock = threading.Lock()
        self._held = 0
        self._waiting = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        """Submitted tasks not yet on a worker (the queue depth)."""
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    @property
    def held(self) -> int:
        """Slots taken: uploads in progress, tasks waiting and tasks running."""
        return self._held

    def reserve(self) -> Slot | None:
        """A slot, or None when the pool is full or shutting down."""
        with self._lock:
            if self._held >= self.capacity or self.stopping.is_set():
                return None
            self._held += 1
        return Slot(self)

    def submit(self, slot: Slot, fn: Callable[[Engine], T], on_drop: Callable[[], None] | None = None) -> Future[T]:
        """Run ``fn(engine)`` on a worker. The pool owns `slot` from here on and releases it when the
        task ends, whatever happens to the caller (a client that hangs up does not free a busy worker).
        `on_drop` runs instead of `fn` when the task is cancelled before a worker takes it."""
        with self._lock:
            self._waiting += 1

        def task() -> T:
            with self._lock:
                self._waiting -= 1
                self._running += 1
            engine = self._engines.get_nowait()  # never empty: one engine per worker thread
            try:
                if self.stopping.is_set():
                    if on_drop is not None:
                        on_drop()
                    raise Cancelled("the service is shutting down")
                return fn(engine)
            finally:
                self._engines.put(engine)
                with self._lock:
                    self._running -= 1
                slot.release()

        def cancelled(future: Future) -> None:
            if future.cancelled():  # dropped from the queue (shutdown, or its caller gave up): task() never ran
                with self._lock:
                    self._waiting -= 1
                slot.release()
                if on_drop is not None:
                    on_drop()

        try:
            future = self._executor.submit(task)
        except RuntimeError:  # the executor is shut down
            with self._lock:
                self._waiting -= 1
            slot.release()
            raise Cancelled("the service is shutting down") from None
        future.add_done_callback(cancelled)
        return future

    def shutdown(self) -> None:
        """Refuse new work, drop what waits, stop running clips at their next frame, join the threads."""
        self.stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)  # drop the queue now...
        self._executor.shutdown(wait=True)  # ...then wait for the running clips to notice `stopping`
