"""Routes for operators: liveness, readiness, what model is loaded, Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from .errors import error_responses
from .schemas import Health, ModelInfo, Readiness
from .security import require_api_key
from .state import ServiceState, get_state

# Health routes stay open even with an API key: probes from an orchestrator carry no secrets.
health = APIRouter(tags=["health"])
operations = APIRouter(tags=["operations"], dependencies=[Depends(require_api_key)])


@health.get("/healthz", summary="Is the process alive?", response_model=Health)
async def healthz() -> Health:
    """200 as long as the event loop answers, model loaded or not."""
    return Health(status="ok")


@health.get(
    "/readyz",
    summary="Can it take clips?",
    response_model=Readiness,
    responses=error_responses("not_ready"),
)
async def readyz(request: Request, state: Annotated[ServiceState, Depends(get_state)]) -> Readiness:
    """200 once the model bundle is loaded and the workers exist; 503 while it loads, after it
    failed to load (the message says why) and while the service shuts down. Stream monitoring does
    not decide readiness (clips are verified without it); `monitoring` and `monitoring_error` say
    how it is doing."""
    ready = state.require_ready()
    streams = getattr(request.app.state, "streams", None)
    error = streams.unavailable if streams is not None else "monitoring is not started"
    if error is not None:
        monitoring = "unavailable"
    else:
        monitoring = "running" if streams.monitor.started else "starting"
    return Readiness(
        status="ready", model=ready.bundle.metadata.name, workers=ready.pool.workers, queue_capacity=ready.pool.capacity - ready.pool.workers,
        monitoring=monitoring, monitoring_error=error,
    )


@operations.get(
    "/models",
    summary="The loaded model bundle",
    response_model=ModelInfo,
    responses=error_responses("unauthorized", "not_ready"),
)
async def models(state: Annotated[ServiceState, Depends(get_state)]) -> ModelInfo:
    """Name, metadata, scores measured at training time, provenance, heads and parameter counts of
    the bundle that answers, so a result can be traced to the model that produced it."""
    return state.model_info()


_METRICS_EXAMPLE = """\
# HELP smokewatch_http_requests_total HTTP requests answered, by route template, method and status.
# TYPE smokewatch_http_requests_total counter
smokewatch_http_requests_total{method="POST",route="/detect",status="200"} 12.0
smokewatch_http_requests_total{method="POST",route="/detect",status="503"} 3.0
# HELP smokewatch_queue_depth Accepted requests and jobs waiting for a worker.
# TYPE smokewatch_queue_depth gauge
smokewatch_queue_depth 2.0
"""


@operations.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {"example": _METRICS_EXAMPLE}}},
        **error_responses("unauthorized"),
    },
)
async def metrics(state: Annotated[ServiceState, Depends(get_state)]) -> Response:
    """Requests by route and status, latency histogram, frames processed, upload bytes, queue depth,
    busy workers, pool places, jobs by status and model load time."""
    body = state.metrics.render(state.jobs.counts())
    return Response(body, media_type=state.metrics.content_type)
