import json
import shutil

import pytest
import torch

from pipeline.bundle import ModelBundle
from pipeline.errors import BundleError


@pytest.fixture
def bundle_copy(tiny_bundle_dir, tmp_path):
    return shutil.copytree(tiny_bundle_dir, tmp_path / "b")


def test_round_trip_keeps_every_network(tiny_config, tmp_path):
    torch.manual_seed(1)
    original = ModelBundle.create(tiny_config, heads=["lstm", "deep-gru"], name="rt", provenance={"seed": 1})
    path = original.save(tmp_path / "rt", half=False)
    loaded = ModelBundle.load(path)
    assert loaded.config == original.config
    assert loaded.metadata.provenance == {"seed": 1}
    assert set(loaded.metadata.files) == {"detector.pt", "extractor.pt", "heads/lstm.pt", "heads/deep-gru.pt"}
    assert loaded.metadata.parameters == original.parameter_counts()
    x = torch.randn(2, 4, loaded.feature_dim)
    for name in ("lstm", "deep-gru"):
        assert torch.equal(loaded.heads[name].eval()(x), original.heads[name].eval()(x))
    image = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded.backbone.eval()(image), original.backbone.eval()(image))
    assert torch.equal(loaded.detector.eval()(image)[0], original.detector.eval()(image)[0])


def test_half_precision_files_are_smaller_and_close(tiny_config, tmp_path):
    torch.manual_seed(2)
    original = ModelBundle.create(tiny_config)
    full = original.save(tmp_path / "full", half=False)
    half = original.save(tmp_path / "half", half=True)
    assert (half / "extractor.pt").stat().st_size < 0.6 * (full / "extractor.pt").stat().st_size
    loaded = ModelBundle.load(half)
    x = torch.randn(2, 4, loaded.feature_dim)
    assert torch.allclose(loaded.heads["lstm"](x), original.heads["lstm"].eval()(x), atol=1e-2)


def test_missing_file_is_named(bundle_copy):
    (bundle_copy / "extractor.pt").unlink()
    with pytest.raises(BundleError, match="extractor.pt is missing"):
        ModelBundle.load(bundle_copy)


def test_replaced_file_fails_its_hash(bundle_copy):
    (bundle_copy / "heads" / "gru.pt").write_bytes((bundle_copy / "heads" / "lstm.pt").read_bytes())
    with pytest.raises(BundleError, match="heads/gru.pt does not match the hash"):
        ModelBundle.load(bundle_copy)


def test_head_for_another_backbone_is_refused(bundle_copy):
    blob = torch.load(bundle_copy / "heads" / "lstm.pt", weights_only=True)
    blob["spec"]["input_dim"] = 2048
    torch.save(blob, bundle_copy / "heads" / "lstm.pt")
    with pytest.raises(BundleError, match="2048-value features"):
        ModelBundle.load(bundle_copy, verify=False)


def test_other_format_version_is_refused(bundle_copy):
    meta = json.loads((bundle_copy / "metadata.json").read_text())
    meta["format_version"] = 99
    (bundle_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format version 99"):
        ModelBundle.load(bundle_copy)


def test_unknown_head_and_missing_folder(bundle_copy, tmp_path):
    with pytest.raises(BundleError, match="no head transformer"):
        ModelBundle.load(bundle_copy, heads=["transformer"])
    with pytest.raises(BundleError, match="not found"):
        ModelBundle.load(tmp_path / "nowhere")


def test_saving_over_a_bundle_replaces_it_whole_and_keeps_other_files(tiny_config, tmp_path):
    torch.manual_seed(3)
    first = ModelBundle.create(tiny_config, heads=["lstm", "gru"], name="first")
    path = first.save(tmp_path / "b")
    (path / "detector.onnx").write_bytes(b"an export the bundle does not own")
    second = ModelBundle.create(tiny_config, heads=["gru"], name="second")
    second.config = second.config.with_overrides({"verifier.head": "gru"})
    second.save(path)
    loaded = ModelBundle.load(path)
    assert loaded.metadata.name == "second" and set(loaded.heads) == {"gru"}
    assert (path / "detector.onnx").read_bytes() == b"an export the bundle does not own"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging folder left behind


def test_an_interrupted_save_leaves_the_previous_bundle_loadable(tiny_config, tmp_path, monkeypatch):
    torch.manual_seed(4)
    path = ModelBundle.create(tiny_config, name="old").save(tmp_path / "b")
    newer = ModelBundle.create(tiny_config, name="new")
    import pipeline.bundle as bundle_module

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "dump_config", fail)  # stops after the weights are written
    with pytest.raises(KeyboardInterrupt):
        newer.save(path)
    assert ModelBundle.load(path).metadata.name == "old"
