import contextlib
import gc
import json
import os
import subprocess
import sys

import av
import pytest

from service.cli import main

REQUIRED = {
    "verdict", "score", "first_smoke_frame", "first_smoke_time_s", "frames_read",
    "frames_processed", "regions", "timing", "model",
}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_detect_prints_one_json_document(capsys, tiny_bundle_dir, clip_path, tmp_path):
    code, out, err = run(capsys, "detect", str(clip_path), "--model", str(tiny_bundle_dir), "--out", str(tmp_path / "r.json"), "-q")
    assert code == 0
    doc = json.loads(out)
    assert REQUIRED <= set(doc)
    assert doc["verdict"] in ("smoke", "no_smoke")
    assert doc["frames_read"] == 24 and doc["frames_processed"] == 16
    assert {"seconds", "s_per_frame", "device"} <= set(doc["timing"]) and doc["timing"]["device"] == "cpu"
    assert {"detector", "extractor", "verifier"} <= set(doc["model"])
    assert doc["model"]["verifier"] == "lstm"
    for region in doc["regions"]:
        assert {"frame", "time_s", "box", "detector_conf", "smoke_prob", "verified"} <= set(region)
        assert len(region["box"]) == 4
    assert json.loads((tmp_path / "r.json").read_text()) == doc


def test_head_and_threshold_can_be_chosen(capsys, tiny_bundle_dir, clip_path):
    code, out, _ = run(capsys, "detect", str(clip_path), "--model", str(tiny_bundle_dir), "--head", "deep-gru", "--set", "decision.threshold=0", "-q")
    doc = json.loads(out)
    assert code == 0 and doc["model"]["verifier"] == "deep-gru" and doc["verdict"] == "smoke"


def test_annotate_writes_a_playable_video(capsys, tiny_bundle_dir, clip_path, tmp_path):
    out_video = tmp_path / "annotated.mp4"
    code, out, _ = run(capsys, "detect", str(clip_path), "--model", str(tiny_bundle_dir), "--annotate", str(out_video), "-q")
    assert code == 0
    with av.open(str(out_video)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == json.loads(out)["frames_processed"]
    assert (frames[0].width, frames[0].height) == (160, 96)


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "empty"), (b"plain text, not a clip\n" * 20, "not a readable video"), (None, "does not exist")],
)
def test_bad_input_exits_non_zero_with_one_line(capsys, tiny_bundle_dir, tmp_path, content, expected):
    target = tmp_path / "clip.mp4"
    if content is not None:
        target.write_bytes(content)
    code, out, err = run(capsys, "detect", str(target), "--model", str(tiny_bundle_dir), "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err and err.startswith("smokewatch: error:")


def test_truncated_clip_and_bad_model(capsys, tiny_bundle_dir, clip_path, tmp_path):
    data = clip_path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    code, _, err = run(capsys, "detect", str(tmp_path / "cut.mp4"), "--model", str(tiny_bundle_dir), "-q")
    assert code == 2 and "truncated" in err
    code, _, err = run(capsys, "detect", str(clip_path), "--model", str(tmp_path / "nothing"), "-q")
    assert code == 2 and "model bundle folder not found" in err
    code, _, err = run(capsys, "detect", str(clip_path), "--model", str(tiny_bundle_dir), "--set", "extractor.backbone=resnet18", "-q")
    assert code == 2 and "cannot be overridden" in err


def test_detect_without_a_default_bundle_says_how_to_build_one(capsys, clip_path, tmp_path, monkeypatch):
    import pipeline.bundle

    empty = tmp_path / "no-default-bundle"
    empty.mkdir()
    monkeypatch.setattr(pipeline.bundle, "DEFAULT_BUNDLE", empty)  # what resolve_model looks at
    code, out, err = run(capsys, "detect", str(clip_path), "-q")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("smokewatch: error:")
    assert "smokewatch train default" in err and str(empty) in err


def test_console_script_runs_as_a_process(tiny_bundle_dir, tmp_path):
    (tmp_path / "x.mp4").write_text("nope")
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "detect", str(tmp_path / "x.mp4"), "--model", str(tiny_bundle_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.strip().startswith("smokewatch: error:")
    assert len(proc.stderr.strip().splitlines()) == 1


def open_files_under(folder) -> list[str]:
    """Files under `folder` this process holds open (Linux: /proc/self/fd)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                held.append(target)
    return held


def test_demo_verifies_a_plume_and_a_hard_negative(capsys, tiny_bundle_dir, tmp_path):
    # With the garbage collector off, a file opened and never closed stays open: none may be left.
    gc.collect()
    gc.disable()
    try:
        code, out, _ = run(capsys, "demo", "--model", str(tiny_bundle_dir), "--out", str(tmp_path / "demo"))
        if os.path.isdir("/proc/self/fd"):
            assert open_files_under(tmp_path / "demo") == []
    finally:
        gc.enable()
    assert code == 0
    doc = json.loads(out)
    assert [c["truth"].split()[0] for c in doc["clips"]] == ["smoke", "no_smoke"]
    for clip in doc["clips"]:
        assert clip["verdict"] in ("smoke", "no_smoke")
        with av.open(clip["annotated"]) as container:
            assert container.streams.video[0].frames > 0


def test_engine_with_config_shares_networks_and_changes_decisions(tiny_bundle_dir, clip_path):
    from pipeline.bundle import ModelBundle
    from pipeline.engine import Engine

    engine = Engine(ModelBundle.load(tiny_bundle_dir), device="cpu")
    strict = engine.with_config(engine.config.with_overrides({"decision.threshold": 1.0}), heads=["gru"])
    assert strict.detector.network is engine.detector.network and strict.heads["gru"] is engine.heads["gru"]
    assert list(strict.heads) == ["gru"] and strict.primary == "gru"
    assert strict.detect(clip_path, progress=False).verdict == "no_smoke"
    assert engine.config.decision.threshold == 0.5  # the original is untouched
    with pytest.raises(Exception, match="not loaded"):
        engine.with_config(engine.config, heads=["transformer"])
