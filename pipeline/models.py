"""The one place that builds networks from configuration.

Detector networks come from ultralytics yaml files or weight files, backbones from torchvision
architectures, verifier heads from their specs. Nothing here downloads: pretrained weights are
used only when they are already on disk, and their absence is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from .config import DetectorConfig, ExtractorConfig
from .errors import BundleError, ConfigError
from .yolo_env import prepare_ultralytics

DETECTOR_FORMAT = "smokewatch-detector"
SMOKE_NAMES = {0: "smoke"}


def resolve_device(name: str | None) -> torch.device:
    """'auto' picks CUDA when present; an unavailable CUDA request is an error, not a silent CPU run."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was asked for but no CUDA GPU is available here")
    return device


@dataclass(frozen=True)
class DetectorNetwork:
    """A detector network and its class names (index -> name), as read or built together."""

    network: nn.Module
    names: dict[int, str]


@dataclass(frozen=True)
class BackboneNetwork:
    """A backbone without its classifier, and the length of the feature vector it gives."""

    module: nn.Module
    dim: int


# --- detector -------------------------------------------------------------------------------


def build_detector_network(config: DetectorConfig) -> DetectorNetwork:
    """The detector network and its class names, from `config.weights` if set, else from `config.arch`."""
    prepare_ultralytics()
    if config.weights is not None:
        return load_detector_weights(Path(config.weights))
    return DetectorNetwork(new_detector_network(config.arch), dict(SMOKE_NAMES))


def new_detector_network(arch: str | dict[str, Any], nc: int = 1) -> nn.Module:
    """An untrained single-class (by default) ultralytics DetectionModel built from a yaml name, path or dict."""
    prepare_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    try:
        return DetectionModel(arch, nc=nc, verbose=False)
    except FileNotFoundError:
        raise ConfigError(f"detector architecture '{arch}' is not an ultralytics model yaml") from None


def load_detector_weights(path: Path) -> DetectorNetwork:
    """Read a smokewatch detector.pt (safe, tensors only) or an ultralytics .pt checkpoint."""
    prepare_ultralytics()
    if not path.is_file():
        raise BundleError(f"detector weights not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # an ultralytics checkpoint pickles whole modules; weights_only refuses those
        blob = None
    if isinstance(blob, dict) and blob.get("format") == DETECTOR_FORMAT:
        network = new_detector_network(blob["yaml"], nc=len(blob["names"]))
        try:
            network.load_state_dict(blob["state_dict"])
        except RuntimeError as exc:
            raise BundleError(f"{path} does not match its architecture: {_first_line(exc)}") from None
        return DetectorNetwork(network, {int(k): str(v) for k, v in blob["names"].items()})
    from ultralytics.nn.tasks import load_checkpoint

    try:
        network, _ = load_checkpoint(str(path))
    except Exception as exc:
        raise BundleError(f"{path} is not a smokewatch or ultralytics detector checkpoint: {_first_line(exc)}") from None
    names = getattr(network, "names", None) or {}
    if isinstance(names, list):
        names = dict(enumerate(names))
    return DetectorNetwork(network.float(), {int(k): str(v) for k, v in names.items()})


def detector_state(network: nn.Module, names: dict[int, str], half: bool = True) -> dict[str, Any]:
    """What detector.pt holds: the architecture as a dict, class names and (half precision) weights."""
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in network.state_dict().items()}
    return {"format": DETECTOR_FORMAT, "yaml": dict(network.yaml), "names": dict(names), "state_dict": state}


def smoke_class_index(names: dict[int, str], wanted: int | str) -> int:
    """The output class that means smoke. A single-class detector is taken as a smoke detector
    whatever its class is called: users bring their own weights, trained with names like 'plume'
    or '0', and a one-class model has nothing else it could be detecting for us."""
    if isinstance(wanted, int):
        if wanted not in names and not (len(names) == 1 and wanted == 0):
            raise ConfigError(f"detector.smoke_class {wanted} is not a class of the detector ({names})")
        return wanted
    for index, name in names.items():
        if name.lower() == wanted.lower():
            return index
    if len(names) == 1:
        return next(iter(names))
    raise ConfigError(f"the detector has no class named '{wanted}' (classes: {names})")


def fuse_for_inference(network: nn.Module) -> nn.Module:
    """Fold batch norms into convolutions (about 10-20 % faster on CPU); returns the same module."""
    network.eval()
    if hasattr(network, "fuse"):
        network.fuse(verbose=False)
    return network


# --- backbone -------------------------------------------------------------------------------


def build_backbone(config: ExtractorConfig, load_weights: bool = True) -> BackboneNetwork:
    """A torchvision classifier with its classification layer replaced by identity, and its output size.

    With `load_weights`, ImageNet weights are read from torch's cache (never downloaded) and a
    file path is loaded as a state_dict.
    """
    try:
        model = torchvision.models.get_model(config.backbone, weights=None)
    except ValueError:
        raise ConfigError(f"unknown backbone '{config.backbone}'") from None
    if hasattr(model, "fc"):
        dim = model.fc.in_features
        model.fc = nn.Identity()
    else:
        first = next(m for m in model.classifier if isinstance(m, nn.Linear))
        dim = first.in_features
        model.classifier = nn.Identity()
    if load_weights and config.weights == "imagenet":
        model.load_state_dict(_cached_imagenet_state(config.backbone))
    elif load_weights and config.weights != "none":
        path = Path(config.weights)
        if not path.is_file():
            raise ConfigError(f"extractor weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise BundleError(f"{path} does not fit backbone {config.backbone}: {_first_line(exc)}") from None
    return BackboneNetwork(model.eval(), dim)


def _cached_imagenet_state(backbone: str) -> dict[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not file.is_file():
        raise ConfigError(
            f"ImageNet weights for {backbone} are not on this machine (looked for {file}); "
            f"smokewatch never downloads at run time: copy {Path(weights.url).name} there, "
            f"or use extractor.weights: none / a local file"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
