"""Shared fixtures: tiny models and short clips the tests make themselves, so the suite runs on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

# Keep ultralytics' settings and fonts out of the user's home during tests.
os.environ.setdefault("SMOKEWATCH_HOME", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "smokewatch-home"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_OVERRIDES = {
    "detector.arch": "yolov8n.yaml",
    "detector.imgsz": 64,
    "detector.conf": 0.0,  # an untrained detector scores low: keep every box so tubes have work
    "detector.max_det": 3,
    "extractor.backbone": "mobilenet_v3_small",
    "extractor.input_size": 32,
    "verifier.head": "lstm",
    "verifier.hidden_size": 8,
    "tubes.window": 4,
    "tubes.max_tracks": 3,
    "sampling.fps": 8.0,
    "runtime.device": "cpu",
    "runtime.batch_frames": 4,
}


@pytest.fixture(scope="session")
def tiny_config():
    from pipeline.config import PipelineConfig

    return PipelineConfig().with_overrides(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory, tiny_config) -> Path:
    """A saved bundle with random weights and all six heads."""
    import torch

    from pipeline.bundle import ModelBundle
    from pipeline.config import HEAD_NAMES

    torch.manual_seed(0)
    bundle = ModelBundle.create(tiny_config, heads=list(HEAD_NAMES), name="tiny-test")
    return bundle.save(tmp_path_factory.mktemp("bundle") / "tiny")


def write_clip(path: Path, frames: int = 24, fps: int = 12, size: tuple[int, int] = (160, 96), seed: int = 0) -> Path:
    """A short H.264 clip: sky over a dark ridge with a grey plume that grows from frame 4."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.zeros((height, width, 3), np.float32)
            image[:] = (120, 160, 210)
            image[yy > height * 0.65 + 6 * np.sin(xx / 17)] = (40, 60, 35)
            if i >= 4:
                r = 3 + 1.5 * (i - 4)
                cx, cy = width * 0.6, height * 0.65 - r
                blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
                image = image * (1 - 0.7 * blob) + 200 * 0.7 * blob
            image += rng.normal(0, 3, image.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def clip_path(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "plume.mp4")


@pytest.fixture(scope="session")
def make_clip():
    """The clip writer, for tests that need their own variant."""
    return write_clip


def write_yolo_folder(root: Path, labels: list[str], size: tuple[int, int] = (160, 96), stem: str = "img") -> Path:
    """A YOLO image folder: noise images `{stem}_{i}.jpg`, the i-th with label file text `labels[i]`."""
    from PIL import Image

    width, height = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for i, text in enumerate(labels):
        pixels = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{stem}_{i}.jpg")
        (root / "labels" / f"{stem}_{i}.txt").write_text(text)
    return root


@pytest.fixture(scope="session")
def make_yolo_folder():
    """The YOLO folder writer, for tests that need real-set-shaped images."""
    return write_yolo_folder
