"""How many RTSP cameras at one frame every 5 s this machine watches without dropping frames, and
the alert latency at that load (from the first frame on the wire to the webhook's arrival).

    .venv/bin/python bench/stream_bench.py [--model DIR] [--levels auto|4,8,12] [--start 4] [--interval 5]
                                           [--seconds 40] [--warmup 10] [--size 1280x720] [--fps 10]

Real parts, all on loopback: GStreamer's RTSP server (tests/service/rtsp_server.py, run by the
system python3) serves a synthetic 1280x720 lookout clip at 10 frames/s to every camera; the
monitor (one inference lane, the service's defaults: queue of 2 frames per stream, alert rule
k=2 of n=3) reads them over RTSP/TCP, decoding every frame as it must; a webhook receiver on
loopback records when each alert arrives.

At each load level N, N-1 quiet cameras (alert threshold 1: they never alert) run for --warmup
seconds, then a probe camera with alert threshold 0 is added (every window counts, so its first
frame on the wire is the "first smoke frame"); the level runs --seconds more. Reported per level:
frames expected, processed and dropped in the measured span, the inference lane's busy share,
the delay from taking a frame to its result, and the probe's alert latency. A level is sustained
when nothing was dropped and inference kept pace (at least 95 % of the expected frames processed,
median delay under the interval: a backlog in the queues would end in drops on a longer run). The
automatic search doubles N until a level is not sustained, then bisects.

Without --model it uses the shipped default bundle, or, when none exists yet, the default
architecture with random weights and detector.conf 0 / max_det 4 (4 candidates a frame, as the
other benchmarks do): frames/s are real, detections mean nothing. The figures depend on what
else runs on the machine; say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.bundle import DEFAULT_BUNDLE, ModelBundle  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store import EventStore  # noqa: E402
from service.notify import Notifier  # noqa: E402
from service.streams.config import StreamSpec  # noqa: E402
from service.streams.monitor import Monitor  # noqa: E402

RANDOM_WEIGHT_OVERRIDES = {"detector.conf": 0.0, "detector.max_det": 4}


def lookout_clip(path: Path, size: tuple[int, int], fps: int, seconds: float, seed: int = 0) -> Path:
    """Sky over ridges, sensor noise, and a plume rising from a fixed point after the first fifth."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.zeros((h, w, 3), np.float32)
    base[:] = np.stack([110 + 40 * yy / h, 150 + 30 * yy / h, 205 - 20 * yy / h], -1)
    ridge = h * 0.62 + 18 * np.sin(xx / 97) + 9 * np.sin(xx / 31 + 1)
    base[yy > ridge] = (45, 62, 38)
    noise = [rng.normal(0, 2.5, (h, w, 3)).astype(np.float32) for _ in range(6)]
    frames = int(seconds * fps)
    onset = frames // 5
    sx, sy = w * 0.63, float(ridge[0, int(w * 0.63)])
    tmp = path.with_suffix(".partial.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26", "g": str(2 * fps)}
        for i in range(frames):
            image = base + noise[i % len(noise)]
            if i >= onset:
                age = (i - onset) / fps
                r = 6 + 1.2 * age
                cy = sy - r - 0.8 * age
                blob = np.exp(-(((xx - sx - 0.3 * age) ** 2) / (2 * r * r) + ((yy - cy) ** 2) / (2 * (1.6 * r) ** 2)))[..., None]
                image = image * (1 - 0.6 * blob) + 215 * 0.6 * blob
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                receiver.arrivals.append((time.time(), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def rtsp_server(clip: Path, log: Path):
    import subprocess

    script = ROOT / "tests" / "service" / "rtsp_server.py"
    port = _free_port()
    process = subprocess.Popen(["/usr/bin/python3", str(script), str(port), "/live", str(clip)], stdout=subprocess.PIPE, stderr=log.open("ab"))
    if process.stdout.readline().decode().strip() != "ready":
        raise SystemExit(f"the RTSP server did not start; see {log} (needs Debian's python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good/-bad)")
    return process, f"rtsp://127.0.0.1:{port}/live"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_bundle(model: str | None) -> tuple[ModelBundle, str, dict]:
    if model or (DEFAULT_BUNDLE / "metadata.json").exists():
        bundle = ModelBundle.load(model or DEFAULT_BUNDLE)
        return bundle, f"bundle {bundle.path}", {}
    from training.recipe import default_config

    torch.manual_seed(0)
    bundle = ModelBundle.create(default_config(), name="default-architecture-random")
    return bundle, "default architecture (training.recipe.default_config), random weights: speed only", dict(RANDOM_WEIGHT_OVERRIDES)


def run_level(n: int, args, bundle, overrides, url: str, receiver: Receiver, work: Path) -> dict:
    settings = Settings(
        _env_file=None, data_dir=work / f"level-{n}", stream_interval_s=args.interval, stream_overrides=overrides,
        alert_threshold=1.0, webhook_urls=[receiver.url], stream_timeout_s=10, clip_frames_before=2, clip_frames_after=2,
    )
    store = EventStore(settings.resolved_data_dir)
    notifier = Notifier(store).start()
    monitor = Monitor(settings, store, notifier)
    for i in range(n - 1):
        monitor.add(StreamSpec(id=f"cam{i:02d}", url=url), origin="cli")
    try:
        monitor.start(bundle)
        lane = monitor.lanes[0]
        time.sleep(args.warmup)
        probe = monitor.add(StreamSpec(id="probe", url=url, alert={"threshold": 0.0}), origin="cli")
        workers = monitor.list()
        before = {w.id: (w.processed, w.dropped) for w in workers}
        busy0, t0 = lane.busy_s, time.monotonic()
        delays: list[float] = []
        end = t0 + args.seconds
        while time.monotonic() < end:
            time.sleep(0.5)
            delays.extend(w.processing_s for w in workers if w.processing_s is not None)
        span = time.monotonic() - t0
        processed = sum(w.processed - before.get(w.id, (0, 0))[0] for w in workers)
        dropped = sum(w.dropped - before.get(w.id, (0, 0))[1] for w in workers)
        alerts = [t for t, body in receiver.arrivals if body["event"]["stream_id"] == "probe" and body["type"] == "event.opened"
                  and body["event"]["opened_at"] >= (probe.connected_at or 0) - 1]
        latency = (alerts[0] - probe.connected_at) if alerts and probe.connected_at else None
        offline = [w.id for w in workers if w.state != "online"]
        expected = n * span / args.interval  # one frame per interval from every camera, the probe included
        return {
            "streams": n,
            "seconds": round(span, 1),
            "frames_expected": round(expected),
            "frames_processed": processed,
            "frames_dropped": dropped,
            "lane_busy": round((lane.busy_s - busy0) / span, 3),
            "lane_s_per_frame": round((lane.busy_s - busy0) / processed, 3) if processed else None,
            "delay_s_median": round(statistics.median(delays), 3) if delays else None,
            "delay_s_max": round(max(delays), 3) if delays else None,
            "alert_latency_s": None if latency is None else round(latency, 2),
            "offline": offline,
        }
    finally:
        monitor.close()
        notifier.close()
        store.close()
        receiver.arrivals.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="bundle folder (default: the shipped bundle, else the default architecture with random weights)")
    parser.add_argument("--levels", default="auto", help="stream counts to try, e.g. 4,8,12 (default: double from --start until frames drop, then bisect)")
    parser.add_argument("--start", type=int, default=4, help="first level of the automatic search (default 4)")
    parser.add_argument("--max-streams", type=int, default=64, help="highest level the automatic search tries (default 64)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between frames taken from each camera (default 5)")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured seconds per level (default 40)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring (default 10)")
    parser.add_argument("--size", default="1280x720", help="camera frame size (default 1280x720)")
    parser.add_argument("--fps", type=int, default=10, help="camera frame rate on the wire (default 10)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    load_before = os.getloadavg()
    w, h = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="smokewatch-stream-bench-"))
    cache = Path(tempfile.gettempdir()) / "smokewatch-bench"
    cache.mkdir(exist_ok=True)
    clip = lookout_clip(cache / f"lookout_{w}x{h}_{args.fps}fps.mp4", (w, h), args.fps, args.warmup + args.seconds + 60)
    bundle, note, overrides = load_bundle(args.model)
    print(f"model: {note}; cameras {w}x{h} at {args.fps} frames/s; one frame every {args.interval:g} s", flush=True)
    server, url = rtsp_server(clip, work / "rtsp.log")
    receiver = Receiver()
    results: list[dict] = []

    def ok(result: dict) -> bool:
        """Sustained: nothing dropped, every camera online, and inference keeps pace (no backlog
        building up in the queues, which would end in drops on a longer run)."""
        return (
            not result["frames_dropped"]
            and not result["offline"]
            and result["frames_processed"] >= 0.95 * result["frames_expected"]
            and (result["delay_s_median"] or 0.0) < args.interval
        )

    def measure(n: int) -> dict:
        result = run_level(n, args, bundle, overrides, url, receiver, work)
        results.append(result)
        print(json.dumps(result), flush=True)
        return result

    try:
        if args.levels != "auto":
            for n in (int(v) for v in args.levels.split(",")):
                if not ok(measure(n)):
                    break
        else:  # double until frames drop, then bisect between the last good and the first bad level
            good, bad, n = 0, None, args.start
            while bad is None and n <= args.max_streams:
                if ok(measure(n)):
                    good, n = n, n * 2
                else:
                    bad = n
            while bad is not None and bad - good > max(1, good // 8):
                n = (good + bad) // 2
                if ok(measure(n)):
                    good = n
                else:
                    bad = n
    finally:
        server.terminate()
        server.wait()
        receiver.server.shutdown()
    sustained = [r for r in results if ok(r)]
    best = max(sustained, key=lambda r: r["streams"]) if sustained else None
    report = {
        "model": note,
        "camera": f"RTSP/TCP on loopback, {w}x{h} H.264 at {args.fps} frames/s (GStreamer RTSP server)",
        "interval_s": args.interval,
        "levels": results,
        "sustained_streams": best["streams"] if best else 0,
        "alert_latency_s_at_sustained": best["alert_latency_s"] if best else None,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.python_version()}",
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
