"""The default recipe's bookkeeping: finished stages are reused only when their settings match."""

import torch

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig
from training.recipe import RealSet, _stage_done, _synth, default_config


def test_a_finished_stage_is_reused_only_with_the_same_settings(tmp_path, tiny_config):
    torch.manual_seed(0)
    bundle = ModelBundle.create(tiny_config)
    bundle.metadata.provenance["detector"] = {"arch": "yolov8n.yaml", "imgsz": 64, "seed": 0}
    bundle.save(tmp_path / "stage")
    assert _stage_done(tmp_path / "stage", "detector", {"arch": "yolov8n.yaml", "seed": 0}) is not None
    assert _stage_done(tmp_path / "stage", "detector", {"arch": "yolov8n.yaml", "seed": 1}) is None
    assert _stage_done(tmp_path / "stage", "extractor", {"epochs": 4}) is None
    assert _stage_done(tmp_path / "missing", "detector", {}) is None


def test_synthetic_sets_are_written_once_per_seed(tmp_path, monkeypatch):
    import training.synth.dataset as dataset

    calls = []
    real_write = dataset.write_dataset

    def counting(request, progress=None):
        calls.append(request.seed)
        return real_write(request.__class__(request.out, request.clips, request.seed, (160, 96), 4, 4.0, 1), progress=False)

    monkeypatch.setattr(dataset, "write_dataset", counting)
    _synth(tmp_path / "s", 2, 7, False)
    _synth(tmp_path / "s", 2, 7, False)
    assert calls == [7]
    _synth(tmp_path / "s", 2, 8, False)
    assert calls == [7, 8]


def test_default_config_and_real_set_parsing(tmp_path):
    config = default_config()
    assert isinstance(config, PipelineConfig) and config.motion.enabled and config.detector.arch == "yolov8n.yaml"
    parsed = RealSet.parse(f"{tmp_path}:1,2")
    assert parsed.path == tmp_path and parsed.smoke_classes == {1, 2}
    assert RealSet.parse(str(tmp_path)).smoke_classes == {0}
