"""The default recipe's bookkeeping: finished stages are reused only when their settings match."""

import torch

from dataclasses import replace

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig
from training.recipe import RealSet, _default_architecture, _stage_done, _synth, default_config


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
        calls.append((request.seed, request.style))
        return real_write(replace(request, size=(160, 96), frames=4, fps=4.0, workers=1), progress=False)

    monkeypatch.setattr(dataset, "write_dataset", counting)
    _synth(tmp_path / "s", 2, 7, False)
    _synth(tmp_path / "s", 2, 7, False)
    assert calls == [(7, "classic")]
    _synth(tmp_path / "s", 2, 8, False)
    assert calls == [(7, "classic"), (8, "classic")]
    _synth(tmp_path / "s", 2, 8, False, style="lookout")  # same seed, other scenes: written again
    _synth(tmp_path / "s", 2, 8, False, style="lookout")
    assert calls[2:] == [(8, "lookout")]
    _synth(tmp_path / "s", 2, 8, False)  # and back: the lookout set is not taken for a classic one
    assert calls[3:] == [(8, "classic")]


def test_default_config_and_real_set_parsing(tmp_path):
    config = default_config()
    assert isinstance(config, PipelineConfig) and config.motion.enabled and config.detector.arch == "yolov8n.yaml"
    parsed = RealSet.parse(f"{tmp_path}:1,2")
    assert parsed.path == tmp_path and parsed.smoke_classes == {1, 2}
    assert RealSet.parse(str(tmp_path)).smoke_classes == {0}


def test_a_detector_stage_from_an_older_default_gets_todays_backbone_and_heads():
    """`train default` resumes from a saved detector stage; when the default backbone has changed
    since, the backbone and heads must be today's, built for its feature size, not the saved ones."""
    old = ModelBundle.create(default_config().with_overrides({"extractor.backbone": "resnet18"}), name="old")
    old.metadata.provenance["detector"] = {"arch": "yolov8n.yaml", "seed": 0}
    fresh = _default_architecture(old)
    assert fresh.detector is old.detector and fresh.detector_names == old.detector_names
    assert fresh.metadata.provenance["detector"] == {"arch": "yolov8n.yaml", "seed": 0}
    assert fresh.config.extractor == default_config().extractor
    features = fresh.backbone.eval()(torch.zeros(1, 3, 64, 64)).flatten(1)
    assert features.shape[1] == fresh.feature_dim != old.feature_dim
    assert all(head(torch.zeros(1, 2, fresh.feature_dim)).shape[0] == 1 for head in fresh.heads.values())
