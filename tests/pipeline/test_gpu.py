"""The GPU path gives the CPU's answers. Run with `-m gpu` on a machine with CUDA (bench/gpu_bench.sh does).

The same checks run on the CPU in test_engine_speed.py and test_backends.py; here the device is CUDA.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from engine_helpers import decode_threads, same_answers
from pipeline.bundle import ModelBundle
from pipeline.engine import Engine
from pipeline.export import export_onnx

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture
def exact_float32():
    """No TF32 in convolutions and matmuls, so float32 on the GPU matches the CPU closely."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    return ModelBundle.load(tiny_bundle_dir)


def test_float32_on_the_gpu_matches_the_cpu(bundle, clip_path, exact_float32):
    config = bundle.config.with_overrides({"runtime.half": False})
    cpu = Engine(bundle, device="cpu", config=config).detect(clip_path, progress=False)
    gpu = Engine(bundle, device="cuda", config=config).detect(clip_path, progress=False)
    assert gpu.device.startswith("cuda")
    same_answers(cpu, gpu, tol=1e-3)


def test_half_precision_runs_every_stage_on_the_gpu(bundle, clip_path):
    engine = Engine(bundle, device="cuda", config=bundle.config.with_overrides({"runtime.half": True}))
    assert next(engine.detector.network.parameters()).dtype == torch.float16
    result = engine.detect(clip_path, progress=False)
    assert result.frames_processed == 16 and result.windows
    assert all(0.0 <= w.smoke_prob <= 1.0 for w in result.windows)
    assert result.verdict in ("smoke", "no_smoke")


def test_clips_batched_together_on_the_gpu_match_one_at_a_time(bundle, clip_path, exact_float32):
    engine = Engine(bundle, device="cuda", config=bundle.config.with_overrides({"runtime.half": False}))
    alone = engine.detect(clip_path, progress=False)
    for result in engine.detect_many([clip_path] * 3):
        same_answers(alone, result, tol=1e-3)
    assert not decode_threads()


def test_onnx_runtime_matches_torch_on_the_gpu(tiny_bundle_dir, clip_path, tmp_path, exact_float32):
    path = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, path)
    export_onnx(path)
    bundle = ModelBundle.load(path)
    config = bundle.config.with_overrides({"runtime.half": False})
    torch_result = Engine(bundle, device="cuda", config=config).detect(clip_path, progress=False)
    onnx_result = Engine(bundle, device="cuda", config=config, backend="onnx").detect(clip_path, progress=False)
    same_answers(torch_result, onnx_result, tol=1e-3)
