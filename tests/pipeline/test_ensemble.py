"""Ensemble members: a second crop-feature network and its heads, in a bundle and in the engine."""

from __future__ import annotations

import shutil

import pytest
import torch

from pipeline.bundle import ModelBundle
from pipeline.config import override_bundle_config
from pipeline.engine import Engine
from pipeline.errors import BundleError, ConfigError
from pipeline.scorer import TrackScorer, Tree, feature_names


def _pair(tiny_config):
    """A bundle and a second one around the same detector, whose backbone reads 48 px crops."""
    torch.manual_seed(0)
    main = ModelBundle.create(tiny_config, heads=["lstm", "gru"], name="main")
    torch.manual_seed(1)
    other = ModelBundle.create(tiny_config.with_overrides({"extractor.input_size": 48}), heads=["lstm", "deep-gru"], name="other")
    other.detector, other.detector_names = main.detector, dict(main.detector_names)
    return main, other


@pytest.fixture(scope="module")
def joined(tiny_config, tmp_path_factory):
    main, other = _pair(tiny_config)
    root = tmp_path_factory.mktemp("ensemble")
    other_path = other.save(root / "other", half=False)
    assert main.add_member("c48", other) == ["c48/lstm", "c48/deep-gru"]
    return main.save(root / "joined", half=False), other_path


def test_a_member_round_trips_with_its_own_backbone_and_heads(joined):
    path, other_path = joined
    bundle, other = ModelBundle.load(path), ModelBundle.load(other_path)
    assert [(m.name, m.extractor.input_size) for m in bundle.config.ensemble] == [("c48", 48)]
    assert list(bundle.heads) == ["lstm", "gru", "c48/lstm", "c48/deep-gru"]
    assert {"ensemble/c48/extractor.pt", "ensemble/c48/heads/lstm.pt"} <= set(bundle.metadata.files)
    assert "extractor:c48" in bundle.metadata.parameters
    image = torch.rand(1, 3, 48, 48)
    assert torch.equal(bundle.members["c48"].backbone(image), other.backbone(image))
    x = torch.randn(2, 4, other.feature_dim)
    assert torch.equal(bundle.heads["c48/deep-gru"](x), other.heads["deep-gru"](x))
    assert "c48: mobilenet_v3_small@48" in bundle.describe()["extractor"]
    only = ModelBundle.load(path, heads=["c48/lstm"])  # a member's head can be loaded alone
    assert list(only.heads) == ["c48/lstm"]


def test_member_heads_read_their_own_crops(joined, clip_path):
    """What a member's heads say in the ensemble is what they said in their own bundle (same
    detector, same regions), and the main heads are not changed by the member beside them."""
    path, other_path = joined
    every = ["lstm", "gru", "c48/lstm", "c48/deep-gru"]
    together = Engine.from_path(path, device="cpu", heads=every).detect(clip_path, progress=False)
    alone = Engine.from_path(other_path, device="cpu").detect(clip_path, progress=False)
    assert together.windows and len(together.windows) == len(alone.windows)
    member = torch.tensor([w.head_probs["c48/deep-gru"] for w in together.windows])
    own = torch.tensor([w.head_probs["deep-gru"] for w in alone.windows])
    torch.testing.assert_close(member, own, atol=1e-5, rtol=0)
    main_only = Engine.from_path(path, device="cpu").detect(clip_path, progress=False)  # no scorer: members idle
    torch.testing.assert_close(torch.tensor([w.head_probs["lstm"] for w in together.windows]),
                               torch.tensor([w.head_probs["lstm"] for w in main_only.windows]), atol=1e-6, rtol=0)
    assert set(main_only.windows[0].head_probs) == {"lstm", "gru"}
    assert together.crops_computed == 2 * main_only.crops_computed  # each crop once per network


def test_a_scorer_that_reads_member_heads_loads_and_decides_with_them(joined, clip_path, tmp_path):
    """A scorer split on a member head's peak: the clip's regions are confirmed just below that
    head's highest p and not just above it."""
    path, _ = joined
    windows = Engine.from_path(path, device="cpu", heads=["c48/lstm"]).detect(clip_path, progress=False).windows
    top = max(w.head_probs["c48/lstm"] for w in windows)
    heads = ("lstm", "c48/lstm")
    index = feature_names(heads).index("c48/lstm:peak")
    confirmed = []
    for at in (top - 1e-4, top + 1e-4):
        bundle = ModelBundle.load(path)
        bundle.scorer = TrackScorer(heads, 0.0, 1.0, (Tree([index, -2, -2], [at, -2.0, -2.0], [1, -1, -1], [2, -1, -1], [0.0, -20.0, 20.0]),))
        bundle.config = bundle.config.with_overrides({"decision.scorer_threshold": 0.5})
        scored = bundle.save(tmp_path / "scored")
        engine = Engine.from_path(scored, device="cpu", heads=["lstm"])  # the scorer's member head joins
        assert set(engine.heads) == {"lstm", "c48/lstm"}
        result = engine.detect(clip_path, progress=False)
        assert len(result.windows) == len(windows)
        confirmed.append(result.verdict)
    assert confirmed == ["smoke", "no_smoke"]


def test_what_cannot_join_is_refused(tiny_config, joined, tmp_path):
    main, other = _pair(tiny_config)
    with pytest.raises(ConfigError, match="pattern"):
        main.add_member("C48", other)
    with pytest.raises(ConfigError, match="not a head's name"):
        main.add_member("gru", other)
    longer = ModelBundle.create(tiny_config.with_overrides({"tubes.window": 6}), heads=["lstm"])
    with pytest.raises(BundleError, match="windows of 6 frames"):
        main.add_member("w6", longer)
    main.add_member("c48", other)
    with pytest.raises(ConfigError, match="unique"):
        main.add_member("c48", other)
    with pytest.raises(BundleError, match="itself an ensemble"):
        ModelBundle.create(tiny_config).add_member("e", main)
    with pytest.raises(ConfigError, match="ensemble"):
        override_bundle_config(main.config, {"ensemble": []})
    broken = shutil.copytree(joined[0], tmp_path / "broken")
    (broken / "ensemble" / "c48" / "extractor.pt").unlink()
    with pytest.raises(BundleError, match="ensemble/c48/extractor.pt"):
        ModelBundle.load(broken, verify=False)


def test_members_are_exported_and_run_by_onnx_runtime(joined, clip_path, tmp_path):
    from pipeline.backends import OnnxNetwork
    from pipeline.export import export_onnx

    path = shutil.copytree(joined[0], tmp_path / "exported")
    record = export_onnx(path)
    assert "ensemble/c48/extractor.onnx" in record["files"] and "ensemble/c48/extractor.pt" in record["from"]
    assert record["max_abs_difference"]["extractor:c48"] < 1e-3
    bundle = ModelBundle.load(path)
    bundle.save(path, half=False)  # saving again (the same weights, new metadata) carries the member's export with the main one
    bundle = ModelBundle.load(path)
    onnx_engine = Engine(bundle, device="cpu", backend="onnx", heads=["c48/deep-gru"])
    assert isinstance(onnx_engine.extractors["c48"].backbone, OnnxNetwork)
    onnx_result = onnx_engine.detect(clip_path, progress=False)
    torch_result = Engine(bundle, device="cpu", heads=["c48/deep-gru"]).detect(clip_path, progress=False)
    assert len(onnx_result.windows) == len(torch_result.windows) > 0
    for a, b in zip(torch_result.windows, onnx_result.windows):
        assert b.head_probs["c48/deep-gru"] == pytest.approx(a.head_probs["c48/deep-gru"], abs=1e-3)
    (path / "ensemble" / "c48" / "extractor.onnx").unlink()
    with pytest.raises(BundleError, match="ensemble/c48/extractor.onnx"):
        Engine(ModelBundle.load(path, verify=False), device="cpu", backend="onnx")
