"""Helpers shared by the HTTP service tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import socket
import struct
import time
import warnings
import zlib

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # starlette 1.x prefers httpx2 for its TestClient; httpx 0.28 works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient  # noqa: F401 - re-exported for the tests

# Settings of the shared test app (conftest.py), which tests check against.
QUEUE_SIZE = 2
RETRY_AFTER_S = 7


def wait_ready(get, timeout: float = 120.0) -> None:
    """Poll /readyz (through `get`, a client's get method) until the model is loaded."""
    deadline = time.monotonic() + timeout
    while True:
        response = get("/readyz")
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        if "failed to load" in response.text or time.monotonic() > deadline:
            pytest.fail(f"service never became ready: {response.text}")
        time.sleep(0.05)


def wait_finished(client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll a job until it is done or failed; returns its last status document."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def comparable(document: dict) -> dict:
    """A detection document without what legitimately differs between two runs or two front ends:
    wall times, and the source path (the CLI shows the file's path, the API only its name)."""
    document = json.loads(json.dumps(document))
    document.pop("timing")
    document["source"].pop("path")
    return document


def post_file(client, route: str, data: bytes, filename: str = "clip.mp4", **fields):
    return client.post(route, files={"file": (filename, data, "application/octet-stream")}, data=fields or None)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring a huge image, with a tiny body: decoding it would need ~30 GB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
