"""Prometheus metrics of monitoring, read from the live objects at scrape time (never stale)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import StreamService


class StreamCollector(Collector):
    def __init__(self, service: "StreamService") -> None:
        self.service = service

    def collect(self) -> Iterator:
        monitor, store = self.service.monitor, self.service.store
        up = GaugeMetricFamily("smokewatch_stream_up", "1 while the stream delivers frames.", labels=["stream"])
        fps = GaugeMetricFamily("smokewatch_stream_fps", "Frames per second run through the pipeline, by stream.", labels=["stream"])
        age = GaugeMetricFamily("smokewatch_stream_last_frame_age_seconds", "Seconds since the stream's last frame.", labels=["stream"])
        processed = CounterMetricFamily("smokewatch_stream_frames_processed", "Sampled frames run through the pipeline.", labels=["stream"])
        dropped = CounterMetricFamily("smokewatch_stream_frames_dropped", "Sampled frames dropped because inference lagged.", labels=["stream"])
        reconnects = CounterMetricFamily("smokewatch_stream_reconnects", "Reconnections after a failure or silence.", labels=["stream"])
        now = time.time()
        for worker in monitor.list() if monitor is not None else []:
            labels = [worker.id]
            up.add_metric(labels, 1.0 if worker.state == "online" else 0.0)
            fps.add_metric(labels, worker.fps)
            if worker.last_frame_at is not None:
                age.add_metric(labels, now - worker.last_frame_at)
            processed.add_metric(labels, worker.processed)
            dropped.add_metric(labels, worker.dropped)
            reconnects.add_metric(labels, worker.reconnects)
        yield from (up, fps, age, processed, dropped, reconnects)
        if store is None or store.closed:
            return
        events = GaugeMetricFamily("smokewatch_events", "Stored events, by state.", labels=["state"])
        for state, count in store.counts().items():
            events.add_metric([state], count)
        hooks = GaugeMetricFamily("smokewatch_webhooks", "Webhook outbox rows, by state.", labels=["state"])
        for state, count in store.outbox_counts().items():
            hooks.add_metric([state], count)
        yield events
        yield hooks
