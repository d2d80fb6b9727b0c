"""ONNX Runtime backend: export into a bundle, the same answers as PyTorch, refusal of stale or missing exports."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine_helpers import same_answers
from pipeline.backends import EXPORT_RECORD, ONNX_FILES, OnnxNetwork
from pipeline.bundle import ModelBundle
from pipeline.engine import Engine
from pipeline.errors import BundleError
from pipeline.export import export_onnx


@pytest.fixture(scope="module")
def exported(tiny_bundle_dir, tmp_path_factory):
    """A copy of the tiny bundle with its ONNX export (the session's bundle stays as it is)."""
    path = tmp_path_factory.mktemp("onnx") / "tiny"
    shutil.copytree(tiny_bundle_dir, path)
    record = export_onnx(path)
    return path, record


def test_export_writes_both_models_and_lists_them_in_metadata(exported, tiny_bundle_dir):
    path, record = exported
    meta = json.loads((path / "metadata.json").read_text())
    original = json.loads((tiny_bundle_dir / "metadata.json").read_text())
    for name in ONNX_FILES.values():
        assert (path / name).stat().st_size > 0
        assert meta["files"][name] == record["files"][name]
    assert {k: v for k, v in meta["files"].items() if k not in record["files"]} == original["files"]
    assert meta["provenance"][EXPORT_RECORD]["from"] == {k: original["files"][k] for k in ("detector.pt", "extractor.pt")}
    assert record["max_abs_difference"]["detector"] < 1e-3 and record["max_abs_difference"]["extractor"] < 1e-3
    assert not list(path.glob(".export-*")), "no work folder left behind"
    ModelBundle.load(path)  # every listed hash still verifies


def test_onnx_backend_gives_the_same_verdicts_as_torch(exported, clip_path):
    path, _ = exported
    bundle = ModelBundle.load(path)
    torch_result = Engine(bundle).detect(clip_path, progress=False)
    onnx_engine = Engine(bundle, config=bundle.config.with_overrides({"runtime.backend": "onnx"}))
    assert isinstance(onnx_engine.detector.network, OnnxNetwork) and isinstance(onnx_engine.extractor.backbone, OnnxNetwork)
    onnx_result = onnx_engine.detect(clip_path, progress=False)
    assert torch_result.windows
    same_answers(torch_result, onnx_result, tol=1e-3)
    for a, b in zip(torch_result.windows, onnx_result.windows):
        assert [b.box.x1, b.box.y1, b.box.x2, b.box.y2] == pytest.approx([a.box.x1, a.box.y1, a.box.x2, a.box.y2], abs=0.05)
        assert b.head_probs == pytest.approx(a.head_probs, abs=1e-3)


def test_onnx_backend_takes_any_batch_and_input_size(exported):
    path, _ = exported
    bundle = ModelBundle.load(path)
    engine = Engine(bundle, backend="onnx", config=bundle.config.with_overrides({"detector.imgsz": 96, "extractor.input_size": 48}))
    import numpy as np

    images = [np.random.default_rng(i).integers(0, 255, (90, 140, 3), dtype=np.uint8) for i in range(5)]
    assert len(engine.detector.detect(images)) == 5
    crops = np.zeros((7, 48, 48, 3), np.uint8)
    assert engine.extractor(crops).shape == (7, bundle.feature_dim)


def test_onnx_backend_needs_an_export(tiny_bundle_dir):
    with pytest.raises(BundleError, match="smokewatch export"):
        Engine(ModelBundle.load(tiny_bundle_dir), backend="onnx")


def test_an_export_of_other_weights_is_refused(exported, tmp_path):
    path, _ = exported
    copy = tmp_path / "retrained"
    shutil.copytree(path, copy)
    bundle = ModelBundle.load(copy)
    with torch.no_grad():
        next(bundle.backbone.parameters()).add_(1.0)  # "retrained" backbone, saved over the old one
    bundle.save(copy)
    with pytest.raises(BundleError, match="exported from other weights"):
        Engine(ModelBundle.load(copy), backend="onnx")


def test_a_replaced_onnx_file_fails_the_hash_check(exported, tmp_path):
    path, _ = exported
    copy = tmp_path / "tampered"
    shutil.copytree(path, copy)
    shutil.copyfile(copy / "extractor.onnx", copy / "detector.onnx")
    with pytest.raises(BundleError, match="detector.onnx does not match"):
        ModelBundle.load(copy)


def test_saving_over_an_exported_bundle_keeps_its_exports_listed(exported, tmp_path):
    """Adding a track scorer (or anything else) saves the bundle again; the exports made from the
    same weights must stay listed, so their hashes are still checked and the ONNX backend still runs."""
    path = tmp_path / "copy"
    shutil.copytree(exported[0], path)
    bundle = ModelBundle.load(path)
    bundle.metadata.description = "saved again"
    bundle.save(path)
    meta = json.loads((path / "metadata.json").read_text())
    assert all(meta["files"][name] == exported[1]["files"][name] for name in ONNX_FILES.values())
    (path / ONNX_FILES["detector"]).write_bytes(b"tampered")
    with pytest.raises(BundleError, match="does not match the hash"):
        ModelBundle.load(path)
