"""What one running service holds: its settings, the loaded model, the pool, the jobs, the metrics.

The model loads in the background after startup, so ``/healthz`` answers at once (the process is
alive) while ``/readyz`` says 503 until the engines exist: an orchestrator neither kills a
container that is slowly loading a large bundle nor sends it traffic too early.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, Request

from pipeline.bundle import ModelBundle
from pipeline.engine import Engine
from pipeline.errors import SmokewatchError
from service.settings import Settings

from .errors import ApiError
from .jobs import JobStore
from .metrics import Metrics
from .pool import InferencePool
from .schemas import ModelInfo

log = logging.getLogger("smokewatch.service")


class ServiceState:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.jobs = JobStore(settings.job_ttl_s, settings.max_finished_jobs)
        if settings.upload_dir is not None:
            settings.upload_dir.mkdir(parents=True, exist_ok=True)
        # One private folder per process: whatever a crash leaves behind is easy to find and remove.
        self.upload_root = Path(tempfile.mkdtemp(prefix="smokewatch-uploads-", dir=settings.upload_dir))
        self.bundle: ModelBundle | None = None
        self.pool: InferencePool | None = None
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self.device = ""
        self._closing = False

    @property
    def ready(self) -> bool:
        return self.pool is not None and not self._closing

    async def load(self) -> None:
        """Load the bundle and build one engine per worker, in a thread; failures are kept for /readyz."""
        from service.cli import resolve_model

        start = time.perf_counter()
        try:
            path = resolve_model(str(self.settings.model) if self.settings.model else None)
            bundle, engines = await anyio.to_thread.run_sync(self._build, path)
        except SmokewatchError as exc:
            self.load_error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        except Exception as exc:  # a bug or a broken install: say so on /readyz rather than die silently
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model not loaded")
            return
        if self._closing:
            return
        self.load_seconds = time.perf_counter() - start
        self.bundle = bundle
        self.device = str(engines[0].device)
        pool = InferencePool(engines, self.settings.queue_size)
        self.metrics.watch_pool(lambda: pool.waiting, lambda: pool.running, lambda: pool.held)
        self.metrics.capacity.set(pool.capacity)
        self.metrics.model_load.set(self.load_seconds)
        self.metrics.model_loaded.set(1)
        self.pool = pool
        log.info("model %s loaded in %.1f s on %s (%d workers)", bundle.metadata.name, self.load_seconds, self.device, pool.workers)

    def _build(self, path: Path) -> tuple[ModelBundle, list[Engine]]:
        bundle = ModelBundle.load(path)
        engines = [Engine(bundle, device=self.settings.device) for _ in range(self.settings.workers)]
        return bundle, engines

    async def prune_jobs_forever(self) -> None:
        """Forget expired jobs even when nobody calls the API (polling also prunes)."""
        interval = min(max(self.settings.job_ttl_s / 4, 0.5), 60.0)
        while True:
            await asyncio.sleep(interval)
            self.jobs.prune()

    async def close(self) -> None:
        self._closing = True
        if self.pool is not None:
            await anyio.to_thread.run_sync(self.pool.shutdown)
        self.metrics.model_loaded.set(0)
        shutil.rmtree(self.upload_root, ignore_errors=True)

    def model_info(self) -> ModelInfo:
        bundle = self.require_ready().bundle
        meta = bundle.metadata
        return ModelInfo(
            name=meta.name,
            description=meta.description,
            path=str(bundle.path) if bundle.path else None,
            created_at=meta.created_at,
            smokewatch_version=meta.smokewatch_version,
            format_version=meta.format_version,
            stages=bundle.describe(),
            heads=list(bundle.heads),
            default_head=bundle.primary_head,
            parameters=meta.parameters or bundle.parameter_counts(),
            metrics=meta.metrics,
            provenance=meta.provenance,
            sampling_fps=bundle.config.sampling.fps,
            threshold=bundle.config.decision.threshold,
            device=self.device,
            load_seconds=round(self.load_seconds or 0.0, 3),
        )

    def require_ready(self) -> "ReadyState":
        if self._closing:
            raise ApiError("not_ready", "the service is shutting down")
        if self.pool is None or self.bundle is None:
            if self.load_error:
                raise ApiError("not_ready", f"the model failed to load: {self.load_error}")
            raise ApiError("not_ready", "the model is still loading", headers={"Retry-After": "1"})
        return ReadyState(self, self.bundle, self.pool)


class ReadyState:
    """The state once the model is loaded: routes that need the model get this, never a None."""

    def __init__(self, state: ServiceState, bundle: ModelBundle, pool: InferencePool) -> None:
        self.state = state
        self.settings = state.settings
        self.metrics = state.metrics
        self.jobs = state.jobs
        self.bundle = bundle
        self.pool = pool


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def get_ready(state: Annotated[ServiceState, Depends(get_state)]) -> ReadyState:
    return state.require_ready()
