"""The HTTP service: ``create_app(settings)`` builds a FastAPI app; ``smokewatch serve`` runs it.

The app is made by a factory, not at import, so each test (and each uvicorn worker) gets its own
state, metrics and model. Settings reach routes through ``Depends(get_settings)``; passing
settings to the factory installs them as the override, and the lifespan resolves them the same
way, so a test that overrides ``get_settings`` before startup changes the model and pool too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from pipeline import __version__
from service.settings import Settings, get_settings

from .api import dashboard, detect, events, ops, streams
from .api.errors import ERROR_CODES, install_error_handlers
from .api.metrics import Metrics, MetricsMiddleware
from .api.state import ServiceState
from .streams.service import StreamService

log = logging.getLogger("smokewatch.service")

_ERROR_TABLE = "\n".join(f"| `{code}` | {status} | {when} |" for code, (status, when) in ERROR_CODES.items())
DESCRIPTION = f"""
Finds wildfire smoke in uploaded clips: YOLO proposals, verified over time by a recurrent head.

`POST /detect` answers with the verdict; `POST /jobs` takes long clips and answers at once with a
job to poll. When `SMOKEWATCH_API_KEY` is set, every route but `/healthz` and `/readyz` needs it in
the `X-API-Key` header.

Every error has the body `{{"error": {{"code": "...", "message": "..."}}}}`; clients branch on `code`:

| code | status | when |
|---|---|---|
{_ERROR_TABLE}
"""


def _settings_of(app: FastAPI) -> Settings:
    return app.dependency_overrides.get(get_settings, get_settings)()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start loading the model (in the background: /healthz answers meanwhile) and tear everything
    down on shutdown: running clips stop at their next frame, queued ones are dropped, uploads deleted."""
    settings = _settings_of(app)
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    state = ServiceState(settings, app.state.metrics)  # makes this process's upload folder
    app.state.service = state
    try:
        # Raises ConfigError for a bad streams file: the start stops, and the upload folder goes.
        app.state.streams = monitoring = StreamService(settings, app.state.metrics.registry)
    except BaseException:
        await state.close()
        raise
    loading = asyncio.create_task(state.load(), name="smokewatch-load-model")
    pruning = asyncio.create_task(state.prune_jobs_forever(), name="smokewatch-prune-jobs")
    starting = asyncio.create_task(monitoring.start(state, loading), name="smokewatch-streams")
    try:
        yield
    finally:
        pruning.cancel()
        await loading  # a load in progress cannot be interrupted; let it end before the pool is shut
        await monitoring.close(starting)
        await state.close()


def uvicorn_log_config() -> dict:
    """uvicorn's own logging setup, plus the service's logger (model loading, failed jobs) beside it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["smokewatch"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app. Without `settings`, they come from the environment via :func:`get_settings`."""
    app = FastAPI(
        title="smokewatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        license_info={"name": "AGPL-3.0-only", "identifier": "AGPL-3.0-only"},
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_error_handlers(app)
    app.include_router(ops.health)
    app.include_router(detect.router)
    app.include_router(ops.operations)
    app.include_router(streams.router)
    app.include_router(events.router)
    dashboard.install(app)
    return app
