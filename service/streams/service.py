"""Monitoring inside the HTTP service: the store, the webhook thread, the live feed and the monitor,
started with the app and stopped with it (see ``service.app.lifespan``).

Streams come from three places: the ``streams_file`` (read at start; an invalid file stops the
app from starting, loudly), the streams added earlier with ``POST /streams`` (kept in the
database), and new ``POST /streams`` calls. They start as soon as the model is loaded.

If the data folder cannot be used (not writable, or held by another process), ``/detect`` keeps
working and the monitoring routes answer 503 ``monitor_unavailable`` with the reason. If the monitor
cannot start (the model failed to load, invalid ``stream_overrides``), the ``/streams`` routes answer
503 ``monitor_unavailable`` with the reason too (``/events`` still serves what is stored), and
``/readyz`` says why in ``monitoring_error``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from pipeline.errors import ConfigError, SmokewatchError
from service.notify import DeliveryPolicy, Notifier
from service.store import EventStore

from .config import PathNotAllowed, StreamSpec, load_streams_file
from .hub import LiveHub
from .monitor import Monitor

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from service.api.state import ServiceState
    from service.settings import Settings

log = logging.getLogger("smokewatch.streams")


def delivery_policy(settings: "Settings") -> DeliveryPolicy:
    return DeliveryPolicy(
        timeout_s=settings.webhook_timeout_s,
        backoff_s=settings.webhook_backoff_s,
        backoff_max_s=settings.webhook_backoff_max_s,
        max_client_errors=settings.webhook_max_client_errors,
        give_up_s=settings.webhook_give_up_s,
        secret=settings.webhook_secret.get_secret_value() if settings.webhook_secret else None,
    )


def base_url(settings: "Settings") -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


class StreamService:
    def __init__(self, settings: "Settings", registry: "CollectorRegistry | None" = None) -> None:
        self.settings = settings
        self.hub = LiveHub()
        self.error: str | None = None
        self.store: EventStore | None = None
        self.notifier: Notifier | None = None
        self.monitor: Monitor | None = None
        self._registry, self._collector = registry, None
        # The streams file is the operator's configuration: a mistake in it stops the start.
        configured = load_streams_file(settings.streams_file) if settings.streams_file else []
        try:
            self.store = EventStore(settings.resolved_data_dir)
        except SmokewatchError as exc:
            self.error = str(exc)
            log.error("stream monitoring unavailable: %s", exc)
            return
        self.notifier = Notifier(self.store, delivery_policy(settings)).start()
        self.monitor = Monitor(settings, self.store, self.notifier, self.hub, base_url(settings))
        try:
            for spec in configured:
                self.monitor.add(spec, origin="config")
        except (PathNotAllowed, SmokewatchError) as exc:  # the operator's file names a source it cannot have
            self.notifier.close()
            self.store.close()
            raise ConfigError(f"streams file {settings.streams_file}: stream {spec.id}: {exc}") from None
        for data in self.store.saved_streams():
            try:
                spec = StreamSpec.model_validate(data)
                if spec.id not in self.monitor.workers:
                    self.monitor.add(spec, origin="api")
            except (ValidationError, PathNotAllowed, SmokewatchError, KeyError) as exc:
                log.error("stream %s saved earlier cannot start: %s", data.get("id"), str(exc).splitlines()[0])
        if registry is not None:
            from .metrics import StreamCollector

            self._collector = StreamCollector(self)
            registry.register(self._collector)

    @property
    def unavailable(self) -> str | None:
        """Why streams cannot be watched now, or None. While the model loads, streams may still be
        added: they start with the monitor."""
        if self.monitor is None:
            return self.error or "monitoring is not started"
        return self.error

    async def start(self, state: "ServiceState", loading: "asyncio.Task") -> None:
        """Once the model is loaded, build the stream engines and start every stream."""
        await asyncio.shield(loading)
        if self.monitor is None:
            return
        if state.bundle is None:
            if state.load_error:  # (no bundle and no error: the service is shutting down)
                self.error = f"the model failed to load: {state.load_error}"
                log.error("stream monitoring unavailable: %s", self.error)
            return
        try:
            await anyio.to_thread.run_sync(self.monitor.start, state.bundle)
        except SmokewatchError as exc:
            self.error = f"the monitor could not start: {exc}"
            log.error("stream monitoring unavailable: %s", self.error)
        except Exception as exc:  # a bug or a broken install: say so rather than leave streams waiting forever
            self.error = f"the monitor could not start: {type(exc).__name__}: {exc}"
            log.exception("stream monitoring unavailable")

    async def close(self, starting: "asyncio.Task | None" = None) -> None:
        if starting is not None:
            starting.cancel()
            try:
                await starting
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already logged or cancelled
                pass
        self.hub.close()
        if self._collector is not None and self._registry is not None:
            self._registry.unregister(self._collector)
            self._collector = None
        if self.monitor is not None:
            await anyio.to_thread.run_sync(self.monitor.close)
        if self.notifier is not None:
            await anyio.to_thread.run_sync(self.notifier.close)
        if self.store is not None:
            self.store.close()
