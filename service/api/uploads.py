"""Uploads: a multipart body streamed to a file on disk, never held whole in memory.

FastAPI's ``UploadFile`` parses the whole body before the route runs, so a 50 GB upload would be
spooled to disk before any limit could refuse it, and its spool file has no name for the decoder
to open. Here the body is read from the socket chunk by chunk, fed to python-multipart's parser,
and the ``file`` part goes to its own file (under the client's file name, made safe, in a private
folder, so error messages name the client's file); the byte count is checked as bytes arrive, so
an oversized upload is refused (413) after at most one chunk beyond the limit.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio
from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from service.settings import Settings

from .errors import ApiError

FILE_FIELD = "file"
FIELD_BYTES = 256  # fps, head, threshold: a few characters each
FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and small fields around the file


@dataclass
class Upload:
    """A received file, alone in its own folder, plus the small form fields sent with it."""

    path: Path
    filename: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def safe_filename(name: str | None) -> str:
    """The last path component of a client's file name, reduced to harmless characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")[-100:]
    return base or "upload"


async def receive_upload(request: Request, settings: Settings, root: Path, allowed_fields: frozenset[str]) -> Upload:
    """Stream the request's multipart body: the ``file`` part to disk, other parts to a small dict."""
    limit = settings.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > limit + FORM_OVERHEAD:
        raise ApiError("upload_too_large", f"the request declares {declared} bytes; uploads are limited to {limit} bytes")
    if declared == 0:
        raise ApiError("missing_file", f"the request has no body; send the clip as multipart/form-data field '{FILE_FIELD}'")
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        shown = content_type.decode("latin-1") or "none"
        raise ApiError("not_multipart", f"expected multipart/form-data with a '{FILE_FIELD}' field, got content type {shown}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError("malformed_multipart", "the multipart/form-data content type has no boundary")

    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    receiver = _Receiver(folder, limit, allowed_fields)
    try:
        try:
            parser = MultipartParser(boundary, receiver.callbacks())
        except ValueError as exc:  # python-multipart refuses absurd boundaries (FormParserError)
            raise ApiError("malformed_multipart", f"invalid multipart boundary: {exc}") from None
        with anyio.fail_after(settings.upload_timeout_s):
            async for chunk in request.stream():
                receiver.body_bytes += len(chunk)
                if receiver.body_bytes > limit + FORM_OVERHEAD:
                    raise ApiError("upload_too_large", f"the upload exceeds the limit of {limit} bytes")
                parser.write(chunk)
                if len(receiver.pending) >= settings.upload_chunk_bytes:
                    await receiver.flush()
            parser.finalize()
            await receiver.flush()
        return receiver.finish()
    except BaseException as exc:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)
        translated = _translate(exc, settings)
        if translated is None:
            raise
        raise translated from None


def _translate(exc: BaseException, settings: Settings) -> ApiError | None:
    """The answer for a failure while the body streams in; None lets the exception through."""
    if isinstance(exc, MultipartParseError):
        return ApiError("malformed_multipart", f"the body is not valid multipart/form-data ({exc})")
    if isinstance(exc, TimeoutError):
        return ApiError("upload_timeout", f"the upload did not arrive within {settings.upload_timeout_s:g} s")
    if isinstance(exc, ClientDisconnect):
        # Nobody will read this answer, but the access log and the metrics should say what happened.
        return ApiError("malformed_multipart", "the client disconnected before the upload was complete")
    return None


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise ApiError("malformed_multipart", f"Content-Length '{value}' is not a number") from None
    if length < 0:
        raise ApiError("malformed_multipart", f"Content-Length '{value}' is negative")
    return length


class _Receiver:
    """python-multipart callbacks: route each part's bytes to the file or to a small field buffer."""

    def __init__(self, folder: Path, limit: int, allowed_fields: frozenset[str]) -> None:
        self.folder = folder
        self.limit = limit
        self.allowed = allowed_fields
        self.fields: dict[str, str] = {}
        self.pending = bytearray()  # file bytes not yet on disk; bounded by upload_chunk_bytes + one chunk
        self.body_bytes = 0
        self.file_bytes = 0
        self.file_path: Path | None = None
        self.file_done = False
        self.ended = False
        self._file: BinaryIO | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._name = ""
        self._value = bytearray()
        self._in_file = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._value = bytearray()
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise ApiError("malformed_multipart", "a multipart part has no name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == FILE_FIELD:
            if self.file_path is not None:
                raise ApiError("invalid_field", f"send one '{FILE_FIELD}' per request")
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.file_path = self.folder / safe_filename(filename)
            self._file = self.file_path.open("wb")
            self._in_file = True
        elif self._name not in self.allowed:
            expected = ", ".join(sorted(self.allowed | {FILE_FIELD}))
            raise ApiError("invalid_field", f"unknown field '{self._name}' (this route takes {expected})")
        elif self._name in self.fields:
            raise ApiError("invalid_field", f"field '{self._name}' is sent more than once")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.file_bytes += end - start
            if self.file_bytes > self.limit:
                raise ApiError("upload_too_large", f"the file exceeds the limit of {self.limit} bytes")
            self.pending += data[start:end]
        else:
            self._value += data[start:end]
            if len(self._value) > FIELD_BYTES:
                raise ApiError("invalid_field", f"field '{self._name}' is longer than {FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._in_file:
            self.file_done = True
            return
        try:
            self.fields[self._name] = self._value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ApiError("invalid_field", f"field '{self._name}' is not UTF-8 text") from None

    def _end(self) -> None:
        self.ended = True

    async def flush(self) -> None:
        """Write buffered file bytes in a worker thread, so a slow disk never stalls the event loop."""
        if self.pending and self._file is not None:
            data, self.pending = bytes(self.pending), bytearray()
            await anyio.to_thread.run_sync(self._file.write, data)

    def finish(self) -> Upload:
        self.close()
        if self.body_bytes == 0:
            raise ApiError("missing_file", f"the request has no body; send the clip as multipart/form-data field '{FILE_FIELD}'")
        if not self.ended or (self.file_path is not None and not self.file_done):
            raise ApiError("malformed_multipart", "the multipart body ends before its closing boundary")
        if self.file_path is None:
            raise ApiError("missing_file", f"no '{FILE_FIELD}' field in the form; send the clip as field '{FILE_FIELD}'")
        filename = self.file_path.name
        return Upload(self.file_path, filename, self.file_bytes, self.fields)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
