"""Background jobs for long clips: accepted at once, processed by the pool, polled by id.

A job's record lives in memory, written by its worker thread (progress, result) and read by the
event loop; single attribute assignments are atomic in CPython, and the store's dict is guarded
by a lock. Finished jobs are kept ``job_ttl_s`` seconds whether or not anyone polls them, then
forgotten; at most ``max_finished_jobs`` are kept, so results cannot pile up without bound.
Unfinished jobs are bounded by the pool's slots.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .schemas import JobState, JobStatus


@dataclass
class Job:
    id: str
    filename: str
    frames_expected: int | None
    created_at: float = field(default_factory=time.time)
    status: JobState = "queued"
    frames_processed: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict | None = None
    error: dict | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")

    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        if not self.frames_expected:
            return 0.0
        # Never 1.0 before the verdict exists: a client may take 1.0 to mean "fetch the result now".
        return min(self.frames_processed / self.frames_expected, 0.99)

    def start(self) -> None:
        self.started_at = time.time()
        self.status = "running"

    def succeed(self, result: dict) -> None:
        self.result = result
        self.finished_at = time.time()
        self.status = "done"

    def fail(self, code: str, message: str) -> None:
        self.error = {"code": code, "message": message}
        self.finished_at = time.time()
        self.status = "failed"

    def view(self, ttl_s: float) -> JobStatus:
        return JobStatus(
            id=self.id,
            status=self.status,
            progress=round(self.progress(), 4),
            frames_processed=self.frames_processed,
            frames_expected=self.frames_expected,
            filename=self.filename,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            expires_at=None if self.finished_at is None else self.finished_at + ttl_s,
            result=self.result,
            error=self.error,
        )


class JobStore:
    def __init__(self, ttl_s: float, max_finished: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.max_finished = max_finished
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def create(self, filename: str, frames_expected: int | None) -> Job:
        job = Job(id=uuid.uuid4().hex, filename=filename, frames_expected=frames_expected)
        with self._lock:
            self._jobs[job.id] = job
        self.prune()
        return job

    def get(self, job_id: str) -> Job | None:
        self.prune()
        with self._lock:
            return self._jobs.get(job_id)

    def prune(self) -> int:
        """Forget expired finished jobs, then the oldest finished ones beyond the cap. Returns how many."""
        now = self._clock()
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.finished), key=lambda j: j.finished_at or 0.0)
            expired = [j for j in finished if (j.finished_at or 0.0) + self.ttl_s <= now]
            kept = finished[len(expired) :]
            drop = expired + kept[: max(0, len(kept) - self.max_finished)]
            for job in drop:
                del self._jobs[job.id]
        return len(drop)

    def counts(self) -> dict[str, int]:
        with self._lock:
            jobs = list(self._jobs.values())
        counts = {state: 0 for state in ("queued", "running", "done", "failed")}
        for job in jobs:
            counts[job.status] += 1
        return counts
