from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.config import (
    PipelineConfig,
    dump_config,
    load_config,
    override_bundle_config,
    parse_config,
)
from pipeline.errors import ConfigError


def _models(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        ann = field.annotation
        for candidate in getattr(ann, "__args__", (ann,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from _models(candidate)


def test_every_field_is_described():
    for model in _models(PipelineConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_unknown_keys_are_refused_with_their_path():
    with pytest.raises(ConfigError, match="decision.treshold"):
        parse_config({"decision": {"treshold": 0.5}})


def test_yaml_round_trip(tmp_path: Path):
    config = PipelineConfig().with_overrides({"tubes.window": 12, "verifier.head": "gru"})
    file = tmp_path / "c.yaml"
    file.write_text(dump_config(config))
    assert load_config(file) == config


def test_bad_yaml_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_values_are_validated():
    with pytest.raises(ConfigError, match="imgsz"):
        PipelineConfig().with_overrides({"detector.imgsz": 100})
    with pytest.raises(ConfigError, match="confirm_k"):
        PipelineConfig().with_overrides({"decision.confirm_k": 3, "decision.confirm_n": 2})
    with pytest.raises(ConfigError, match="head"):
        PipelineConfig().with_overrides({"verifier.head": "transformer"})


def test_bundle_overrides_refuse_network_settings():
    config = PipelineConfig()
    assert override_bundle_config(config, {"decision.threshold": 0.8}).decision.threshold == 0.8
    with pytest.raises(ConfigError, match="extractor.backbone"):
        override_bundle_config(config, {"extractor.backbone": "resnet18"})
    with pytest.raises(ConfigError, match="extractor.backbone"):
        override_bundle_config(config, {"extractor": {"backbone": "resnet18"}})  # a whole section hides nothing


def test_a_section_override_keeps_the_sections_other_settings():
    tuned = PipelineConfig().with_overrides({"decision.confirm_k": 2, "decision.confirm_n": 3, "detector.imgsz": 384})
    changed = override_bundle_config(tuned, {"decision": {"threshold": 0.7}, "detector": {"conf": 0.2}})
    assert (changed.decision.threshold, changed.decision.confirm_k, changed.decision.confirm_n) == (0.7, 2, 3)
    assert (changed.detector.conf, changed.detector.imgsz) == (0.2, 384)
    assert override_bundle_config(tuned, {"decision": {}}) == tuned


def test_an_unset_optional_section_is_switched_on_by_one_of_its_keys():
    """Tiles are off by default (detector.tiles: null); `--set detector.tiles.size=960` turns them on,
    the tiles' other settings at their defaults, the detector's own settings kept."""
    config = PipelineConfig().with_overrides({"detector.imgsz": 384})
    assert config.detector.tiles is None
    tiled = override_bundle_config(config, {"detector.tiles.size": 960})
    assert tiled.detector.tiles is not None and tiled.detector.tiles.size == 960
    assert tiled.detector.tiles.overlap == 64 and tiled.detector.tiles.include_full_frame
    assert tiled.detector.imgsz == 384
    assert override_bundle_config(tiled, {"detector.tiles": None}).detector.tiles is None
    with pytest.raises(ConfigError, match="overlap"):
        override_bundle_config(config, {"detector.tiles.size": 64})  # the default overlap would not fit
    with pytest.raises(ConfigError, match="unknown config section 'tyles'"):
        override_bundle_config(config, {"detector.tyles.size": 960})
