"""Prometheus metrics, one registry per app (two apps in one test process never share counters).

Requests are labelled by route *template* (``/jobs/{job_id}``), never by the raw path, so job ids
and scanners probing random URLs cannot grow the label set without bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# From a health check (ms) to a long clip on a CPU (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "smokewatch_http_requests", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "smokewatch_http_request_duration_seconds", "Time from request to the end of the answer, by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.frames = Counter("smokewatch_frames_processed", "Kept frames run through the pipeline.", registry=r)
        self.upload_bytes = Counter("smokewatch_upload_bytes", "File bytes received in uploads.", registry=r)
        self.queue_depth = Gauge("smokewatch_queue_depth", "Accepted requests and jobs waiting for a worker.", registry=r)
        self.busy = Gauge("smokewatch_workers_busy", "Workers running a clip.", registry=r)
        self.slots = Gauge("smokewatch_slots_in_use", "Pool places taken (uploading, waiting or running).", registry=r)
        self.capacity = Gauge("smokewatch_slots_capacity", "Pool places in all (workers + queue_size).", registry=r)
        self.model_load = Gauge("smokewatch_model_load_seconds", "Seconds it took to load the bundle and build the engines.", registry=r)
        self.model_loaded = Gauge("smokewatch_model_loaded", "1 once the model is loaded and the service is ready.", registry=r)
        self.jobs = Gauge("smokewatch_jobs", "Jobs held in memory, by status.", ["status"], registry=r)

    def watch_pool(self, waiting: Callable[[], float], busy: Callable[[], float], held: Callable[[], float]) -> None:
        """Read the pool's gauges at scrape time, so they can never drift from the pool's own counts."""
        self.queue_depth.set_function(waiting)
        self.busy.set_function(busy)
        self.slots.set_function(held)

    def render(self, job_counts: dict[str, int]) -> bytes:
        for status, count in job_counts.items():
            self.jobs.labels(status).set(count)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every answer and its latency. Plain ASGI rather than BaseHTTPMiddleware, which would
    buffer streamed bodies and run the route in another task."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the server error middleware answers when the app raises

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)
