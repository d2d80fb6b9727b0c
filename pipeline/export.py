"""Export a bundle's networks for other inference backends (``smokewatch export``).

ONNX: the detector goes through ultralytics' own exporter (the graph ultralytics supports, its
head in export mode, slimmed by onnxslim when a recent enough one is installed), the backbone
through ``torch.onnx``. Both take any batch size and image size, so ``runtime.batch_frames``,
``detector.imgsz`` and ``extractor.input_size`` can still be changed at run time.

The files land in the bundle folder next to the weights they were made from; ``metadata.json``
then lists their sha256 like every other file, and its provenance records the export (versions,
opset, the hashes of the weight files used, and how closely ONNX Runtime reproduced PyTorch).
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import tempfile
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import EXPORT_RECORD, ONNX_FILES, OnnxNetwork, exported_files, member_onnx_file
from .bundle import BundleMetadata, FeatureSource, ModelBundle, _sha256
from .errors import BundleError, ConfigError
from .yolo_env import prepare_ultralytics

SOURCE_FILES = ("detector.pt", "extractor.pt")
DEFAULT_OPSET = 17
MIN_ONNXSLIM = (0, 1, 82)  # what ultralytics' exporter asks for; with an older one it would try to pip-install


def export_onnx(path: str | Path, opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Write detector.onnx and extractor.onnx (and each ensemble member's ensemble/NAME/extractor.onnx)
    into the bundle at `path`; returns the export record."""
    path = Path(path)
    bundle = ModelBundle.load(path)  # verifies every listed file's hash first
    _require_onnx()
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=path))
    try:
        with warnings.catch_warnings():
            # torch says the TorchScript-based exporter (the one that needs no onnxscript) is legacy.
            warnings.simplefilter("ignore", DeprecationWarning)
            end2end = _export_detector(bundle, work / ONNX_FILES["detector"], opset)
            for source in bundle.feature_sources():
                rel = ONNX_FILES["extractor"] if source.member is None else member_onnx_file(source.member)
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                _export_backbone(source, work / rel, opset)
        check = _compare(bundle, work)
        for name in exported_files(bundle):
            (work / name).replace(path / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import onnx
    import onnxruntime
    import ultralytics

    meta = BundleMetadata.model_validate_json((path / "metadata.json").read_text(encoding="utf-8"))
    files = {name: _sha256(path / name) for name in exported_files(bundle)}
    sources = [*SOURCE_FILES, *(f"ensemble/{m.name}/extractor.pt" for m in bundle.config.ensemble)]
    record = {
        "format": "onnx",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "opset": opset,
        "detector": f"ultralytics {ultralytics.__version__} exporter, dynamic batch and image size",
        "extractor": f"torch.onnx (torch {torch.__version__}), dynamic batch and crop size",
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "end2end": end2end,
        "from": {rel: meta.files.get(rel) for rel in sources},
        "files": files,
        "max_abs_difference": check,
    }
    meta.files.update(files)
    meta.provenance[EXPORT_RECORD] = record
    tmp = path / "metadata.json.tmp"
    tmp.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")  # as ModelBundle.save writes it
    tmp.replace(path / "metadata.json")
    return record


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxruntime") if not _installed(m)]
    if missing:
        raise ConfigError(f"exporting to ONNX needs {', '.join(missing)}: pip install 'smokewatch[onnx]'")


def _installed(dist: str) -> str | None:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _export_detector(bundle: ModelBundle, out: Path, opset: int) -> bool:
    """ultralytics' ONNX export of the detector; returns whether its output is end-to-end (boxes after NMS)."""
    prepare_ultralytics()  # YOLO_AUTOINSTALL off: a missing requirement fails instead of reaching for pip
    from ultralytics.engine.exporter import Exporter

    network = copy.deepcopy(bundle.detector).float().eval()
    network.task = "detect"
    network.names = dict(bundle.detector_names)
    network.pt_path = str(out.with_suffix(".pt"))  # the exporter names its output after this
    slim = _installed("onnxslim")
    args = {
        "format": "onnx",
        "imgsz": bundle.config.detector.imgsz,
        "dynamic": True,
        "batch": 1,
        "opset": opset,
        "simplify": bool(slim) and _version_tuple(slim) >= MIN_ONNXSLIM,
        "nms": False,  # our own NMS runs after the network, as with PyTorch
        "device": "cpu",
        "verbose": False,
    }
    try:
        written = Path(Exporter(overrides=args)(model=network))
    except Exception as exc:
        raise BundleError(f"ultralytics could not export the detector to ONNX: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if written != out:
        written.replace(out)
    head = bundle.detector.model[-1] if hasattr(bundle.detector, "model") else None
    return bool(getattr(head, "end2end", False))


def _export_backbone(source: FeatureSource, out: Path, opset: int) -> None:
    size = source.config.input_size
    backbone = copy.deepcopy(source.backbone).float().eval()
    torch.onnx.export(
        backbone,
        (torch.zeros(1, 3, size, size),),
        str(out),
        input_names=["crops"],
        output_names=["features"],
        dynamic_axes={"crops": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}},
        opset_version=opset,
        dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
    )


@torch.inference_mode()
def _compare(bundle: ModelBundle, folder: Path) -> dict[str, float]:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on random inputs (batch 2)."""
    from .models import fuse_for_inference

    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    imgsz, crop = bundle.config.detector.imgsz, bundle.config.extractor.input_size
    images = torch.rand(2, 3, imgsz, imgsz, generator=generator)
    crops = torch.randn(2, 3, crop, crop, generator=generator)
    detector = fuse_for_inference(copy.deepcopy(bundle.detector).float())
    expected = detector(images)
    expected = expected[0] if isinstance(expected, (tuple, list)) else expected
    got = OnnxNetwork(folder / ONNX_FILES["detector"], cpu)(images)
    features = OnnxNetwork(folder / ONNX_FILES["extractor"], cpu)(crops)
    reference = copy.deepcopy(bundle.backbone).float().eval()(crops).flatten(1)
    if got.shape != expected.shape or features.shape != reference.shape:
        raise BundleError(
            f"the exported models give shapes {tuple(got.shape)} / {tuple(features.shape)} where PyTorch gives "
            f"{tuple(expected.shape)} / {tuple(reference.shape)}"
        )
    check = {
        "detector": float(np.abs(got.numpy() - expected.numpy()).max()),
        "extractor": float(np.abs(features.numpy() - reference.numpy()).max()),
    }
    for source in bundle.feature_sources()[1:]:
        side = source.config.input_size
        member_crops = torch.randn(2, 3, side, side, generator=generator)
        ours = OnnxNetwork(folder / member_onnx_file(source.member), cpu)(member_crops)
        theirs = copy.deepcopy(source.backbone).float().eval()(member_crops).flatten(1)
        check[f"extractor:{source.member}"] = float(np.abs(ours.numpy() - theirs.numpy()).max())
    return check
