"""One error shape for every failure: ``{"error": {"code": "...", "message": "..."}}``.

Clients branch on ``code`` (stable words, listed in :data:`ERROR_CODES`) and show ``message`` to
people. FastAPI's own errors (validation, 404, 405) are rewritten into the same shape so that no
route ever answers with a different one.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.errors import SourceError

log = logging.getLogger("smokewatch.service")

# code -> (status, when). The table is the contract; the README and OpenAPI examples quote it.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "malformed_multipart": (400, "the body is not valid multipart/form-data"),
    "unauthorized": (401, "the X-API-Key header is missing or wrong"),
    "not_found": (404, "no such route"),
    "job_not_found": (404, "no job with this id (never created, or cleaned up)"),
    "path_not_allowed": (403, "a file source outside the folders allowed by stream_folders"),
    "stream_not_found": (404, "no stream with this id"),
    "event_not_found": (404, "no event with this id (never stored, or removed by retention)"),
    "no_frame": (404, "the stream has not processed a frame yet"),
    "no_media": (404, "the event has no such file (not written yet, or dropped by retention)"),
    "stream_exists": (409, "a stream with this id exists already"),
    "method_not_allowed": (405, "the route exists but not for this method"),
    "upload_timeout": (408, "the upload did not arrive within upload_timeout_s"),
    "upload_too_large": (413, "the upload is larger than max_upload_bytes (declared or counted)"),
    "frame_too_large": (413, "frames are larger than max_pixels (for example a PNG decompression bomb)"),
    "not_multipart": (415, "the body is not multipart/form-data"),
    "unsupported_media": (415, "the file is neither a video nor an image, judged by its content"),
    "missing_file": (422, "no 'file' field was sent"),
    "invalid_field": (422, "a form field is unknown or its value is invalid"),
    "invalid_request": (422, "the request does not match the route's parameters"),
    "empty_file": (422, "the file is empty or holds no decodable frame"),
    "truncated": (422, "the file is a video or image but cut short or corrupt"),
    "unreadable": (422, "the file cannot be read"),
    "too_long": (422, "the clip is longer (seconds or frames) than the route accepts"),
    "invalid_stream": (422, "the stream cannot be watched as given (a missing file, an invalid alert rule)"),
    "internal": (500, "a bug: the request could not be handled"),
    "busy": (503, "every worker and queue slot is taken; retry after Retry-After seconds"),
    "not_ready": (503, "the model is still loading, or failed to load"),
    "monitor_unavailable": (503, "stream monitoring cannot run (its data folder is unusable or held by another process, the model failed to load, or stream_overrides are invalid)"),
}

# SourceError.reason (pipeline) -> code. "missing" means our own temporary file vanished: a bug.
_SOURCE_CODES = {
    "not_media": "unsupported_media",
    "too_large": "frame_too_large",
    "empty": "empty_file",
    "truncated": "truncated",
    "unreadable": "unreadable",
    "missing": "internal",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable word; see the table in the API description.")
    message: str = Field(description="What went wrong, written for a person.")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "too_long", "message": "ridge.mp4 lasts 300.0 s; this route accepts up to 120 s (send longer clips to POST /jobs, up to 1800 s)"}}
            ]
        }
    )


class ApiError(Exception):
    """An answer that is not a success; raised anywhere, rendered by :func:`install_error_handlers`."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = ERROR_CODES[code][0]
        self.message = message
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_source_error(exc: SourceError) -> ApiError:
    return ApiError(_SOURCE_CODES.get(exc.reason, "unreadable"), str(exc))


def error_responses(*codes: str) -> dict[int | str, dict]:
    """OpenAPI `responses` entries for the given codes, one example per code, grouped by status."""
    by_status: dict[int, dict] = {}
    for code in codes:
        status, when = ERROR_CODES[code]
        entry = by_status.setdefault(status, {"model": ErrorBody, "description": "", "content": {"application/json": {"examples": {}}}})
        entry["description"] = "; ".join(filter(None, [entry["description"], f"`{code}`: {when}"]))
        entry["content"]["application/json"]["examples"][code] = {
            "summary": when,
            "value": {"error": {"code": code, "message": when}},
        }
    return dict(sorted(by_status.items()))


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Render ApiError, FastAPI's validation errors, Starlette's HTTP errors and bugs in the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}" for err in exc.errors()
        )
        return ApiError("invalid_request", problems or "invalid request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code)
        if code is None:
            body = {"error": {"code": f"http_{exc.status_code}", "message": str(exc.detail)}}
            return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
        message = exc.detail if code != "not_found" else f"no route {request.method} {request.url.path}"
        response = ApiError(code, str(message)).response()
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError("internal", f"internal error ({type(exc).__name__}); the server log has the details").response()
