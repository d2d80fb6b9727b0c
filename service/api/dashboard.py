"""The dashboard: static pages served from the package (no CDN, nothing fetched from elsewhere).

``/`` shows every camera with its status and latest annotated frame, and the events as they
happen; ``/ui/events/{id}`` shows one event with its snapshot and clip. The pages read the API
(``/streams``, ``/events``, ``/events/live``); with an API key set they ask for it once and keep
it in a cookie, which the read-only monitoring routes accept.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/events/{event_id}")
async def event_page(event_id: int) -> FileResponse:
    return FileResponse(STATIC / "event.html", headers={"Cache-Control": "no-cache"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
