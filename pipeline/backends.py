"""Inference backends other than PyTorch: networks exported into a bundle, run by ONNX Runtime.

An exported network is wrapped as a torch module that takes a torch tensor and gives a torch
tensor on the same device, so :class:`~pipeline.detector.Detector` and
:class:`~pipeline.features.FeatureExtractor` run it exactly like the PyTorch network, with the
same pre- and post-processing (letterbox, NMS, crop normalisation). Only the forward pass moves.

A bundle's exported files are written by :func:`pipeline.export.export_onnx`, which records in
``metadata.json`` the hashes of the exported files and of the weight files they were made from;
:func:`onnx_networks` refuses exports that no longer match the bundle's weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .bundle import _sha256
from .errors import BundleError

if TYPE_CHECKING:
    from .bundle import ModelBundle

ONNX_FILES = {"detector": "detector.onnx", "extractor": "extractor.onnx"}
EXPORT_RECORD = "onnx_export"  # key in metadata.json's provenance


def member_onnx_file(member: str) -> str:
    """Where an ensemble member's exported backbone lives in a bundle."""
    return f"ensemble/{member}/extractor.onnx"


def exported_files(bundle: "ModelBundle") -> list[str]:
    """Every file an ONNX export of this bundle writes: detector, backbone, each member's backbone."""
    return [*ONNX_FILES.values(), *(member_onnx_file(m.name) for m in bundle.config.ensemble)]


@dataclass(frozen=True)
class OnnxNetworks:
    """A bundle's exported networks: the detector, the main backbone and each ensemble member's."""

    detector: "OnnxNetwork"
    extractor: "OnnxNetwork"
    members: dict[str, "OnnxNetwork"]


class OnnxNetwork(torch.nn.Module):
    """An ONNX model with one input and one output, called like a torch module.

    Runs on ONNX Runtime's CUDA provider when the device is a GPU and onnxruntime-gpu is
    installed, else on its CPU provider (tensors then pass through host memory).
    """

    def __init__(
        self,
        path: str | Path,
        device: torch.device,
        threads: int | None = None,
        end2end: bool = False,
        sha256: str = "",
    ) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - the onnx extra is part of every documented install
            raise BundleError("the ONNX backend needs onnxruntime: pip install 'smokewatch[onnx]'") from None
        self.path = Path(path)
        self.device = device
        self.end2end = end2end  # read by Detector, like the ultralytics head's own flag
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        # Idle ONNX Runtime threads spin by default, holding the cores that the decoding thread (and
        # anything else on a small box) needs: 20-40 % more frames/s without, on 2 busy cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            wanted.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise BundleError(f"{self.path} cannot be loaded by ONNX Runtime: {str(exc).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        # In the state dict, so anything that fingerprints a network's weights (cached training
        # windows) tells two exported models apart.
        digest = bytes.fromhex(sha256) if sha256 else hashlib.sha256(self.path.read_bytes()).digest()
        self.register_buffer("onnx_sha256", torch.tensor(list(digest), dtype=torch.uint8))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        out = self.session.run([self.output_name], {self.input_name: array})[0]
        return torch.from_numpy(out).to(batch.device, non_blocking=True)

    def extra_repr(self) -> str:
        return f"{self.path.name}, providers={self.providers}"


def export_record(bundle: "ModelBundle") -> dict:
    """What the last ONNX export recorded in the bundle's metadata (empty when never exported)."""
    record = bundle.metadata.provenance.get(EXPORT_RECORD)
    return record if isinstance(record, dict) else {}


def onnx_networks(bundle: "ModelBundle", device: torch.device) -> OnnxNetworks:
    """The bundle's exported detector and backbones, checked against the weights they were made from."""
    hint = "run `smokewatch export --model {path} --format onnx` first"
    if bundle.path is None:
        raise BundleError("the ONNX backend runs models exported into a saved bundle folder; save the bundle and export it")
    path = bundle.path
    missing = [name for name in exported_files(bundle) if not (path / name).is_file()]
    record = export_record(bundle)
    if missing or not record:
        raise BundleError(
            f"bundle {path} has no ONNX models ({', '.join(missing) or 'no export record in metadata.json'}): "
            + hint.format(path=path)
        )
    made_from = record.get("from", {})
    current = {rel: bundle.metadata.files.get(rel) for rel in made_from}
    if not made_from or made_from != current:
        raise BundleError(f"the ONNX models in {path} were exported from other weights than the bundle now holds: " + hint.format(path=path))
    hashes = record.get("files", {})
    for name in exported_files(bundle):
        # ModelBundle.load verified the files metadata.json lists; check any it did not.
        if name not in bundle.metadata.files and _sha256(path / name) != hashes.get(name):
            raise BundleError(f"bundle {path}: {name} does not match the hash recorded at export: " + hint.format(path=path))
    threads = torch.get_num_threads()
    detector = OnnxNetwork(
        path / ONNX_FILES["detector"], device, threads, end2end=bool(record.get("end2end", False)), sha256=hashes.get(ONNX_FILES["detector"], "")
    )
    def backbone(rel: str) -> OnnxNetwork:
        return OnnxNetwork(path / rel, device, threads, sha256=hashes.get(rel, ""))

    members = {m.name: backbone(member_onnx_file(m.name)) for m in bundle.config.ensemble}
    return OnnxNetworks(detector, backbone(ONNX_FILES["extractor"]), members)
