"""What a result was measured on: fingerprints of the data and the model, the device and library versions.

A table without these cannot be compared with another one: two runs agree only when the data
hash, the bundle hash and the config agree, and their timings only when the device does too.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

from pipeline import __version__
from pipeline.bundle import ModelBundle, bundle_hash
from training.datasets import ManifestItem

LIBRARIES = ("torch", "torchvision", "ultralytics", "numpy", "opencv-python-headless", "av", "matplotlib", "scikit-learn")


def _hash_file(digest: "hashlib._Hash", path: Path) -> None:
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def data_fingerprint(root: Path, items: Sequence[ManifestItem]) -> str:
    """sha256 (16 hex digits) of the manifest (when there is one) and of every byte of every item,
    each named by its path relative to the data folder, so renaming or editing any item changes it."""
    digest = hashlib.sha256()
    manifest = root / "manifest.csv" if root.is_dir() else root
    if manifest.is_file():
        digest.update(b"manifest\0")
        _hash_file(digest, manifest)
    base = manifest.parent if manifest.is_file() else root
    for item in items:
        files = sorted(p for p in item.path.rglob("*") if p.is_file()) if item.path.is_dir() else [item.path]
        for file in files:
            try:
                name = file.relative_to(base)
            except ValueError:
                name = file
            digest.update(f"\0{name}\0{item.label}\0{item.smoke_from}\0{item.smoke_to}\0".encode())
            _hash_file(digest, file)
    return digest.hexdigest()[:16]


def bundle_fingerprint(bundle: ModelBundle) -> str:
    """The saved bundle's hash (pipeline.bundle.bundle_hash); for a bundle never saved, the hash of
    its config and every weight tensor, so an in-memory bundle is still identified."""
    if bundle.path is not None and (Path(bundle.path) / "metadata.json").is_file():
        return bundle_hash(bundle.path)
    digest = hashlib.sha256(bundle.config.model_dump_json().encode())
    modules = {"detector": bundle.detector, "extractor": bundle.backbone, **{f"head:{k}": v for k, v in bundle.heads.items()}}
    for name, module in modules.items():
        for key, tensor in module.state_dict().items():
            digest.update(f"{name}.{key}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    """Device and library versions, as results.json records them."""
    info: dict = {
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "smokewatch": __version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cudnn"] = torch.backends.cudnn.version()
    return info
