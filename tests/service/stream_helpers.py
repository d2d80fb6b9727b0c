"""Real peers on loopback for the stream tests: a webhook receiver, an HTTP camera (snapshot and
MJPEG), an RTSP server (GStreamer), and small waiting helpers. Plain classes; fixtures live in the
test modules."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np

from api_helpers import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")

# Alert settings that make the random-weight tiny bundle alert on anything: every window counts
# at threshold 0 (p(smoke) >= 0 always). Tests that must stay quiet use threshold 1.0 instead.
ALERT_ANYTHING = {"alert_threshold": 0.0, "alert_confirm_k": 2, "alert_confirm_n": 3, "alert_clear_s": 600.0}


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # noqa: ANN002 - keep test output clean
        pass


class Receiver:
    """A webhook receiver on 127.0.0.1:`port`. `statuses` answers requests in turn (the last one
    repeats). It can be started late or stopped and restarted on the same port (a receiver that is
    down at first)."""

    def __init__(self, port: int | None = None, statuses: list[int] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.statuses = list(statuses or [200])
        self.requests: list[dict] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> "Receiver":
        receiver = self

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses) - 1)]
                    receiver.requests.append({"headers": dict(self.headers), "body": json.loads(body), "raw": body, "status": status})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def accepted(self) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def clip_frames(path: Path, limit: int = 200) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(limit), container.decode(video=0))]


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


class HttpCamera:
    """An HTTP camera: GET /snapshot.jpg answers the next frame, /frozen.jpg always the same one,
    /mjpeg streams the frames (multipart/x-mixed-replace) at `fps`. Basic auth is checked when set."""

    def __init__(self, frames: list[np.ndarray], fps: float = 10.0, auth: tuple[str, str] | None = None) -> None:
        self.frames = [jpeg(f) for f in frames]
        self.fps = fps
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.served = 0
        self.unauthorized = 0
        camera = self
        expected = None
        if auth:
            import base64

            expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802
                if expected and self.headers.get("authorization") != expected:
                    camera.unauthorized += 1
                    self.send_response(401)
                    self.send_header("www-authenticate", 'Basic realm="cam"')
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/mjpeg"):
                    self.send_response(200)
                    self.send_header("content-type", "multipart/x-mixed-replace; boundary=frame")
                    self.send_header("connection", "close")
                    self.end_headers()
                    try:
                        for i in range(100000):
                            data = camera.frames[i % len(camera.frames)]
                            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data) + data + b"\r\n")
                            self.wfile.flush()
                            camera.served += 1
                            time.sleep(1 / camera.fps)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    return
                data = camera.frames[0] if self.path.startswith("/frozen") else camera.frames[camera.served % len(camera.frames)]
                camera.served += 1
                self.send_response(200)
                self.send_header("content-type", "image/jpeg")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def rtsp_unavailable() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [n for n in ('filesrc', 'qtdemux', 'h264parse', 'rtph264pay') if Gst.ElementFactory.find(n) is None];"
        "print(' '.join(missing))"
    )
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if out.returncode != 0:
        return ("GStreamer's RTSP server is not installed (Debian: python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; .ci/run installs them)")
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()} (gstreamer1.0-plugins-good / -bad)"
    return None


class RtspServer:
    """GStreamer's RTSP server serving `clip` at rtsp://127.0.0.1:port/live; stop and start at will."""

    def __init__(self, clip: Path, log: Path, port: int | None = None) -> None:
        self.clip = clip
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    def url(self, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/live"

    def start(self) -> "RtspServer":
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), "/live", str(self.clip)],
            stdout=subprocess.PIPE, stderr=out,
        )
        line = self.process.stdout.readline().decode().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"RTSP server did not start ({line!r}); see {self.log}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def have(program: str) -> bool:
    return shutil.which(program) is not None


class ServeProcess:
    """`smokewatch serve` in a subprocess on a free port, with SMOKEWATCH_* settings from `env` only."""

    def __init__(self, bundle: Path, home: Path, env: dict[str, str], port: int | None = None) -> None:
        import os
        import sys

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}-{int(time.time() * 1000)}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SMOKEWATCH_") or k == "SMOKEWATCH_HOME"}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--model", str(bundle)],
                env={**inherited, **env}, cwd=home, stdout=out, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 120.0) -> "ServeProcess":
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while True:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if client.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.process.returncode
