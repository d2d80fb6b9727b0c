"""HTTP benchmark: requests/s and latency of POST /detect for a 10-second clip at 1, 4 and 16 clients.

    .venv/bin/python bench/http_bench.py                     # shipped bundle, or a random one
    .venv/bin/python bench/http_bench.py --model my_bundle/ --clients 1 4 16 --seconds 60

Starts `smokewatch serve` on a free local port, writes its own synthetic clip, and runs each
level for `--seconds` (in-flight requests are then finished and counted). Clients behave as
well-mannered clients do: on 503 they wait Retry-After and try again. Reported: successful
requests per second, p50 / p95 latency of successful requests (upload + queueing + inference),
how many answers were 503, and any failures. Without a trained bundle the benchmark builds one
with random weights and the default architecture: the timings are real, the verdicts are not,
and a random detector may propose more or fewer candidates than a trained one would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_clip(path: Path, seconds: float, fps: int, size: tuple[int, int], seed: int = 0) -> Path:
    """A synthetic H.264 clip: sky over a ridge, a grey plume growing from the ridge line."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.zeros((height, width, 3), np.float32)
            image[:] = (120, 160, 210)
            image[yy > height * 0.65 + 0.04 * height * np.sin(xx / (0.1 * width))] = (40, 60, 35)
            r = 0.02 * height + 0.004 * height * i
            cx, cy = width * 0.6, height * 0.65 - r
            blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
            image = image * (1 - 0.7 * blob) + 200 * 0.7 * blob + rng.normal(0, 3, image.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def model_folder(given: str | None, scratch: Path) -> tuple[Path, str]:
    """The bundle to serve, and a note on what it is."""
    from pipeline.bundle import DEFAULT_BUNDLE

    if given:
        return Path(given), f"bundle {given}"
    if (DEFAULT_BUNDLE / "metadata.json").is_file():
        return DEFAULT_BUNDLE, f"shipped default bundle {DEFAULT_BUNDLE}"
    import torch

    from pipeline.bundle import ModelBundle
    from pipeline.config import PipelineConfig

    torch.manual_seed(0)
    path = ModelBundle.create(PipelineConfig(), name="random-default").save(scratch / "random-default")
    return path, (
        "NOTE: no trained default bundle exists yet; serving a RANDOM-WEIGHT bundle with the default "
        "architecture (PipelineConfig()). Timings are real, verdicts are meaningless, and a random "
        "detector may propose a different number of candidates than a trained one."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, args: argparse.Namespace, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "SMOKEWATCH_WORKERS": str(args.workers),
        "SMOKEWATCH_QUEUE_SIZE": str(args.queue_size),
        "SMOKEWATCH_MAX_DURATION_S": "3600",
        "SMOKEWATCH_MAX_FRAMES": "100000",
        "SMOKEWATCH_JOB_MAX_DURATION_S": "3600",
        "SMOKEWATCH_JOB_MAX_FRAMES": "100000",
    }
    if args.torch_threads:
        env["SMOKEWATCH_TORCH_THREADS"] = str(args.torch_threads)
    if args.device:
        env["SMOKEWATCH_DEVICE"] = args.device
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--model", str(model)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited:\n{log.read_text()}")
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                return
            if "failed" in response.text:
                sys.exit(f"the model failed to load: {response.text}")
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    sys.exit("the server did not become ready in time")


@dataclass
class Level:
    clients: int
    latencies: list[float] = field(default_factory=list)
    busy: int = 0
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    frames: int = 0

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        p95 = lat[max(0, math.ceil(0.95 * len(lat)) - 1)] if lat else None  # nearest rank

        return {
            "clients": self.clients,
            "ok": len(lat),
            "busy_503": self.busy,
            "failed": len(self.failures),
            "wall_s": round(self.wall_s, 1),
            "req_per_s": round(len(lat) / self.wall_s, 3) if self.wall_s else 0.0,
            "p50_s": None if not lat else round(statistics.median(lat), 2),
            "p95_s": None if p95 is None else round(p95, 2),
            "frames_per_s": round(self.frames / self.wall_s, 2) if self.wall_s else 0.0,
        }


def run_level(url: str, clip: bytes, clients: int, seconds: float, fields: dict[str, str]) -> Level:
    level = Level(clients)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=3600) as client:
            while time.monotonic() < stop_at:
                start = time.perf_counter()
                try:
                    response = client.post("/detect", files={"file": ("bench.mp4", clip)}, data=fields or None)
                except httpx.HTTPError as exc:
                    with lock:
                        level.failures.append(repr(exc))
                    continue
                elapsed = time.perf_counter() - start
                if response.status_code == 200:
                    with lock:
                        level.latencies.append(elapsed)
                        level.frames += response.json()["frames_processed"]
                elif response.status_code == 503:
                    with lock:
                        level.busy += 1
                    time.sleep(min(float(response.headers.get("retry-after", "1")), max(0.0, stop_at - time.monotonic())))
                else:
                    with lock:
                        level.failures.append(f"{response.status_code} {response.text[:200]}")

    begin = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    level.wall_s = time.monotonic() - begin
    return level


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", metavar="DIR", help="bundle to serve (default: the shipped one, else a random-weight one)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels (default: 1 4 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each level issues new requests (default: 60)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="length of the clip (default: 10)")
    parser.add_argument("--clip-size", default="640x360", help="clip frame size WxH (default: 640x360)")
    parser.add_argument("--clip-fps", type=int, default=25, help="clip frame rate (default: 25)")
    parser.add_argument("--fps", type=float, help="send this sampling rate with each request (default: the bundle's)")
    parser.add_argument("--workers", type=int, default=1, help="SMOKEWATCH_WORKERS for the server (default: 1)")
    parser.add_argument("--queue-size", type=int, default=4, help="SMOKEWATCH_QUEUE_SIZE for the server (default: 4)")
    parser.add_argument("--torch-threads", type=int, help="SMOKEWATCH_TORCH_THREADS for the server")
    parser.add_argument("--device", help="SMOKEWATCH_DEVICE for the server (cpu, cuda, ...)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    width, height = (int(v) for v in args.clip_size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="smokewatch-bench-") as scratch_name:
        scratch = Path(scratch_name)
        model, note = model_folder(args.model, scratch)
        clip_path = write_clip(scratch / "bench.mp4", args.clip_seconds, args.clip_fps, (width, height))
        clip = clip_path.read_bytes()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = scratch / "server.log"
        process = start_server(model, port, args, log)
        try:
            wait_ready(url, process, log)
            info = httpx.get(f"{url}/models", timeout=30).json()
            fields = {"fps": str(args.fps)} if args.fps else {}
            print(note)
            print(
                f"model: {info['stages']} on {info['device']}, loaded in {info['load_seconds']} s; "
                f"server: {args.workers} worker(s), queue {args.queue_size}, torch threads {args.torch_threads or 'default'}; "
                f"clip: {args.clip_seconds:g} s {width}x{height} @ {args.clip_fps} fps ({len(clip) / 1e6:.2f} MB), "
                f"sampling {args.fps or info['sampling_fps']} frames/s"
            )
            # One request first, so model warm-up is not charged to the first level.
            warm = httpx.post(f"{url}/detect", files={"file": ("bench.mp4", clip)}, data=fields or None, timeout=3600)
            warm.raise_for_status()
            print(f"warm-up request: {warm.json()['timing']['seconds']:.2f} s pipeline, {warm.json()['frames_processed']} frames")
            results = []
            print(f"{'clients':>7} {'ok':>4} {'503':>4} {'fail':>4} {'wall s':>7} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'frames/s':>8}")
            for clients in args.clients:
                summary = run_level(url, clip, clients, args.seconds, fields).summary()
                results.append(summary)
                print(
                    f"{summary['clients']:>7} {summary['ok']:>4} {summary['busy_503']:>4} {summary['failed']:>4} "
                    f"{summary['wall_s']:>7} {summary['req_per_s']:>7} {summary['p50_s'] or '-':>7} {summary['p95_s'] or '-':>7} "
                    f"{summary['frames_per_s']:>8}",
                    flush=True,
                )
            if args.json:
                Path(args.json).write_text(json.dumps({"note": note, "model": info, "levels": results}, indent=2) + "\n")
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
