"""`smokewatch export` and `smokewatch bench` from the command line."""

from __future__ import annotations

import json
import shutil

import pytest

from service.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_then_detect_with_onnx_runtime(capsys, tiny_bundle_dir, clip_path, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_dir, bundle)
    code, out, err = run(capsys, "export", "--model", bundle, "--format", "onnx", "--make-default")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc["files"]) == {"detector.onnx", "extractor.onnx"} and doc["default_backend"] == "onnx"
    assert all(f["bytes"] > 0 for f in doc["files"].values())
    assert "backend: onnx" in (bundle / "config.yaml").read_text()

    code, out, err = run(capsys, "detect", clip_path, "--model", bundle, "-q")
    assert code == 0, err
    with_onnx = json.loads(out)
    code, out, _ = run(capsys, "detect", clip_path, "--model", bundle, "--set", "runtime.backend=torch", "-q")
    with_torch = json.loads(out)
    assert with_onnx["verdict"] == with_torch["verdict"]
    assert [r["frame"] for r in with_onnx["regions"]] == [r["frame"] for r in with_torch["regions"]]
    for a, b in zip(with_onnx["regions"], with_torch["regions"]):
        assert a["smoke_prob"] == pytest.approx(b["smoke_prob"], abs=1e-3)


def test_export_of_a_missing_bundle_is_a_user_error(capsys, tmp_path):
    code, _, err = run(capsys, "export", "--model", tmp_path / "nope", "--format", "onnx")
    assert code == 2 and "not found" in err


def test_bench_prints_a_table_and_writes_json(capsys, tiny_bundle_dir, clip_path, tmp_path):
    out_file = tmp_path / "bench.json"
    code, out, err = run(
        capsys, "bench", "--model", tiny_bundle_dir, "--clip", clip_path, "--device", "cpu",
        "--frames", 6, "--naive-frames", 3, "--clips", 2, "--json", out_file,
    )
    assert code == 0, err
    assert "frames/s" in out and "naive" in out
    report = json.loads(out_file.read_text())
    assert {"python", "torch", "cpu_count", "load_average_at_start"} <= set(report["environment"])
    (result,) = report["results"]
    assert result["config"] == "model" and result["backend"] == "torch" and result["device"] == "cpu"
    assert result["frames"] == 12 and result["clips"] == 2  # 6 frames of each of 2 clips, every frame processed
    assert result["frames_per_s"] > 0 and result["s_per_frame"] == pytest.approx(1 / result["frames_per_s"], rel=1e-2)
    assert result["peak_memory_bytes"] > 0
    assert result["naive"]["frames"] == 3 and result["naive"]["frames_per_s"] > 0
    assert result["ratio_vs_naive"] == pytest.approx(result["frames_per_s"] / result["naive"]["frames_per_s"], rel=0.05)
    assert result["same_windows_as_naive"] is True
    assert result["model"]["heads"] == ["lstm"], "a bundle runs its deciding head, as detect and serve do"


def test_bench_refuses_nonsense_counts(capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's usage error, before anything is built
        main(["bench", "--frames", "0"])
    assert stop.value.code == 2 and "--frames: 0 is not a positive integer" in capsys.readouterr().err


def test_paper_configuration_is_the_lectures():
    from service.benchmark import paper_config

    config = paper_config()
    assert (config.detector.arch, config.detector.imgsz) == ("yolov3u.yaml", 416)
    assert (config.extractor.backbone, config.extractor.input_size) == ("resnet50", 224)
    assert config.tubes.window == 8
