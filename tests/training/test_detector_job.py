"""A detector training job packed here, trained where only torch and ultralytics are installed,
and adopted into a bundle (training.detector_job)."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import torch

from pipeline.bundle import ModelBundle
from pipeline.config import PipelineConfig
from training.datasets import RealSet
from training.detector_job import PackOptions, adopt_detector_job, pack_detector_job

from test_training import TINY

# what a bare GPU image lacks; `run` must not need any of it
ABSENT = ("pydantic", "pydantic_settings", "av", "polars", "fastapi", "sklearn", "tqdm")


def test_a_packed_job_trains_without_smokewatchs_dependencies_and_its_detector_goes_into_a_bundle(synth_dir, real_dir, tmp_path):
    bundle = ModelBundle.create(PipelineConfig().with_overrides(TINY), heads=["gru"], name="tiny-job")
    start = {k: v.clone() for k, v in bundle.detector.state_dict().items()}
    job_file = tmp_path / "job.tgz"
    job = pack_detector_job(bundle, [synth_dir], [RealSet(real_dir, {1})], tmp_path / "work", job_file,
                            PackOptions(frames_per_clip=2), finetune=True, progress=False)
    assert job["data"]["real_train"] + job["data"]["real_val"] == 6 and job["data"]["synthetic_train"] > 0

    with tarfile.open(job_file) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    images = sorted((tmp_path / "unpacked" / "job" / "data").glob("*/images/*.jpg"))
    assert len(images) == sum(job["data"][k] for k in ("synthetic_train", "synthetic_val", "real_train", "real_val"))
    assert all(max(cv2.imread(str(p)).shape[:2]) <= TINY["detector.imgsz"] for p in images), "images travel at the input size"
    for image in images:  # labels travel unchanged: normalised boxes survive the shrinking
        built = tmp_path / "work" / "detector-data" / image.parent.parent.name / "labels" / f"{image.stem}.txt"
        assert (image.parent.parent / "labels" / f"{image.stem}.txt").read_text() == built.read_text()

    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ABSENT)
    code = (f"import sys; {blocked}; from training.detector_job import main; "
            f"sys.exit(main(['run', {str(job_file)!r}, {str(tmp_path / 'out')!r}, '--device', 'cpu', '--epochs', '1', "
            "'--batch', '4', '--workers', '0']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=Path(__file__).resolve().parents[2], env={**__import__("os").environ, "SMOKEWATCH_HOME": str(tmp_path / "home")})
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    result = json.loads((out / "result.json").read_text())
    assert result["epochs_run"] == 1 and result["started_from"] == "the bundle's detector weights"
    assert (out / "best.pt").is_file() and (out / "results.csv").is_file()

    record = adopt_detector_job(bundle, out)
    assert bundle.metadata.provenance["detector_finetune"] is record and record["machine"]["device"].startswith("cpu")
    trained = torch.load(out / "detector.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(trained[k].float(), start[k].float()) for k in start if start[k].is_floating_point()), "it trained"
    path = bundle.save(tmp_path / "bundle")
    loaded = ModelBundle.load(path).detector.state_dict()
    assert all(torch.equal(loaded[k].half() if loaded[k].is_floating_point() else loaded[k], trained[k]) for k in trained)
    assert json.loads((path / "metadata.json").read_text())["provenance"]["detector_finetune"]["epochs_run"] == 1
