"""Model bundles: one folder that holds everything the engine needs.

    config.yaml          the PipelineConfig the models were trained for
    detector.pt          detector architecture (as a dict), class names, weights
    extractor.pt         backbone name and weights
    heads/<name>.pt      one file per verifier head, each with the spec that rebuilds it
    ensemble/<member>/   extractor.pt and heads/ of each further crop-feature network
                         (config.ensemble; its heads are named <member>/<head> in memory)
    decision/track_scorer.json   the learned decision over region histories (optional; pipeline.scorer)
    metadata.json        format version, provenance, metrics, parameter counts, file hashes

Weights are stored as plain tensors (loadable with ``weights_only=True``, so opening a bundle
never executes pickled code) and in half precision by default to keep shipped bundles small.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from . import __version__
from .config import HEAD_NAMES, EnsembleMember, ExtractorConfig, PipelineConfig, dump_config, head_member, load_config
from .cues import cue_dim
from .errors import BundleError, ConfigError, SmokewatchError
from .models import build_backbone, build_detector_network, detector_state, load_detector_weights
from .scorer import SCORER_FILE, TrackScorer
from .verifier import HeadSpec, RecurrentHead, build_head, count_parameters

FORMAT_VERSION = 1
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "bundles" / "default"
EXTRACTOR_FORMAT = "smokewatch-extractor"
HEAD_FORMAT = "smokewatch-head"


class BundleMetadata(BaseModel):
    """metadata.json. Provenance and metrics are open mappings: training code decides what it records."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, description="Bundle layout version; loaders refuse others.")
    name: str = Field("unnamed", description="Short name of the bundle.")
    description: str = Field("", description="What the bundle is for.")
    created_at: str = Field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        description="UTC time the bundle was written.",
    )
    smokewatch_version: str = Field(__version__, description="smokewatch version that wrote it.")
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="How the models were made: data, seeds, commands, attribution."
    )
    metrics: dict[str, Any] = Field(default_factory=dict, description="Scores measured on validation data.")
    parameters: dict[str, int] = Field(default_factory=dict, description="Parameter count of each network.")
    files: dict[str, str] = Field(default_factory=dict, description="sha256 of every weight file, by relative path.")


@dataclass(frozen=True)
class MemberNetwork:
    """The backbone of one ensemble member (config.ensemble) and the length of its feature vector."""

    backbone: nn.Module
    feature_dim: int


@dataclass(frozen=True)
class FeatureSource:
    """One crop-feature network of a bundle: the main extractor (member None) or an ensemble member."""

    member: str | None
    config: ExtractorConfig
    backbone: nn.Module
    feature_dim: int

    @property
    def window_dim(self) -> int:
        """Length of each frame's vector in a window its heads read: backbone features, then cues."""
        return self.feature_dim + cue_dim(self.config.change_cues)


def _head_order(name: str, members: list[str]) -> tuple[int, int]:
    member, head = head_member(name)
    return (0 if member is None else 1 + members.index(member), HEAD_NAMES.index(head))


@dataclass
class ModelBundle:
    """Networks plus their config and metadata, in memory. Networks are on the CPU in float32."""

    config: PipelineConfig
    detector: nn.Module
    detector_names: dict[int, str]
    backbone: nn.Module
    feature_dim: int
    heads: dict[str, RecurrentHead]
    metadata: BundleMetadata = field(default_factory=BundleMetadata)
    path: Path | None = None
    scorer: TrackScorer | None = None
    members: dict[str, MemberNetwork] = field(default_factory=dict)  # by config.ensemble name

    @classmethod
    def create(cls, config: PipelineConfig, heads: list[str] | None = None, **metadata: Any) -> "ModelBundle":
        """A bundle built from its config: detector and backbone from their weights settings (random
        when none), and freshly initialised heads (`heads` defaults to the configured one)."""
        detector = build_detector_network(config.detector)
        backbone = build_backbone(config.extractor)
        head_names = heads or [config.verifier.head]
        window_dim = backbone.dim + cue_dim(config.extractor.change_cues)
        built = {name: build_head(HeadSpec.from_config(config.verifier, window_dim, name)) for name in head_names}
        # a new bundle has no ensemble members: they are added trained (add_member)
        clean = config.model_copy(update={"detector": config.detector.model_copy(update={"weights": None}), "ensemble": []})
        return cls(clean, detector.network, detector.names, backbone.module, backbone.dim, built, BundleMetadata(**metadata))

    @property
    def window_dim(self) -> int:
        """Length of each frame's vector in a window the heads read: backbone features, then cues."""
        return self.feature_dim + cue_dim(self.config.extractor.change_cues)

    @property
    def primary_head(self) -> str:
        return self.config.verifier.head

    def feature_sources(self) -> list[FeatureSource]:
        """The main extractor, then each ensemble member, in config order."""
        sources = [FeatureSource(None, self.config.extractor, self.backbone, self.feature_dim)]
        for member in self.config.ensemble:
            net = self.members[member.name]
            sources.append(FeatureSource(member.name, member.extractor, net.backbone, net.feature_dim))
        return sources

    def add_member(self, name: str, other: "ModelBundle") -> list[str]:
        """Take `other`'s backbone and heads in as ensemble member `name`; returns the heads added.

        The member's heads read windows cut by this bundle's tubes, so both must cut windows of the
        same length; `other`'s detector, scorer and settings are not taken (it is run on this
        bundle's regions). A track scorer fitted afterwards (train decision) reads them."""
        if other.config.ensemble:
            raise BundleError("the bundle to add is itself an ensemble; add its members one by one")
        if not other.heads:
            raise BundleError("the bundle to add has no heads")
        if other.config.tubes.window != self.config.tubes.window:
            raise BundleError(
                f"the bundle to add reads windows of {other.config.tubes.window} frames, this one "
                f"{self.config.tubes.window}: its heads would not fit this bundle's windows"
            )
        try:  # the name's pattern, and a name not already taken
            member = EnsembleMember(name=name, extractor=other.config.extractor)
            data = self.config.model_dump()
            data["ensemble"] = [*data["ensemble"], member.model_dump()]
            config = PipelineConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"ensemble member '{name}': {exc.errors()[0]['msg']}") from None
        self.config = config
        self.members[name] = MemberNetwork(other.backbone, other.feature_dim)
        detector = other.metadata.files.get("detector.pt")
        self.metadata.provenance.setdefault("ensemble", {})[name] = {
            "bundle": other.metadata.name,
            "created_at": other.metadata.created_at,
            # its heads learnt windows of the regions its detector proposed; the same detector (both saved) keeps that true
            "same_detector": detector is not None and detector == self.metadata.files.get("detector.pt"),
            **{key: other.metadata.provenance[key] for key in ("extractor", "verifier", "command") if key in other.metadata.provenance},
        }
        added = [f"{name}/{head}" for head in other.heads]
        self.heads.update({f"{name}/{head}": module for head, module in other.heads.items()})
        return added

    def parameter_counts(self) -> dict[str, int]:
        counts = {"detector": count_parameters(self.detector), "extractor": count_parameters(self.backbone)}
        counts.update({f"extractor:{name}": count_parameters(net.backbone) for name, net in self.members.items()})
        counts.update({f"head:{name}": count_parameters(head) for name, head in self.heads.items()})
        return counts

    def describe(self) -> dict[str, str]:
        """Names of the three stages, as reported in results."""
        ex = self.config.extractor
        members = "".join(f" + {m.name}: {m.extractor.backbone}@{m.extractor.input_size}" for m in self.config.ensemble)
        return {
            "detector": Path(str(self.detector.yaml.get("yaml_file", self.config.detector.arch))).stem
            if hasattr(self.detector, "yaml")
            else self.config.detector.arch,
            "extractor": f"{ex.backbone}@{ex.input_size}{members}",
            "verifier": self.primary_head,
            "bundle": self.metadata.name,
        }

    # --- saving ------------------------------------------------------------------------------

    def save(self, path: str | Path, half: bool = True) -> Path:
        """Write the bundle folder, replacing any bundle already there.

        Everything is written into a staging folder beside `path` and swapped in at the end, so an
        interrupted save (a long training run stopped at the last step) leaves the previous bundle
        whole rather than new weights next to old hashes. Files this method does not own (ONNX
        exports, notes) are carried over; exports check their own freshness when loaded.
        """
        path = Path(path)
        staging = path.parent / f".{path.name}.saving"
        if staging.exists():
            shutil.rmtree(staging)
        (staging / "heads").mkdir(parents=True)
        files: dict[str, Path] = {}
        files["detector.pt"] = _save(staging / "detector.pt", detector_state(self.detector, self.detector_names, half))
        files["extractor.pt"] = _save(
            staging / "extractor.pt",
            {
                "format": EXTRACTOR_FORMAT,
                "backbone": self.config.extractor.backbone,
                "dim": self.feature_dim,
                "state_dict": _tensors(self.backbone, half),
            },
        )
        for member in self.config.ensemble:
            rel = f"ensemble/{member.name}/extractor.pt"
            (staging / rel).parent.joinpath("heads").mkdir(parents=True)
            net = self.members[member.name]
            files[rel] = _save(staging / rel, {"format": EXTRACTOR_FORMAT, "backbone": member.extractor.backbone,
                                               "dim": net.feature_dim, "state_dict": _tensors(net.backbone, half)})
        for name, head in self.heads.items():
            rel = _head_file(name)
            files[rel] = _save(
                staging / rel,
                {"format": HEAD_FORMAT, "spec": head.spec.model_dump(), "state_dict": _tensors(head, half)},
            )
        if self.scorer is not None:
            files[SCORER_FILE] = self.scorer.save(staging / SCORER_FILE)
        (staging / "config.yaml").write_text(dump_config(self.config), encoding="utf-8")
        if path.is_dir():
            for old in path.rglob("*"):
                rel = old.relative_to(path).as_posix()
                # a member's exported backbone (ensemble/NAME/extractor.onnx) is carried like the main export
                weights = rel.startswith("heads/") or (rel.startswith("ensemble/") and rel.endswith(".pt"))
                owned = rel in ("config.yaml", "metadata.json", SCORER_FILE) or weights or rel in files
                if old.is_file() and not owned:
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(old, staging / rel)
                    if rel in self.metadata.files:  # a carried export stays listed, so its hash is still checked
                        files[rel] = staging / rel
        self.metadata.parameters = self.parameter_counts()
        self.metadata.files = {rel: _sha256(p) for rel, p in files.items()}
        (staging / "metadata.json").write_text(self.metadata.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if path.is_dir():
            retired = path.parent / f".{path.name}.old"
            if retired.exists():
                shutil.rmtree(retired)
            path.rename(retired)
            staging.rename(path)
            shutil.rmtree(retired)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(path)
        self.path = path
        return path

    # --- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, heads: list[str] | None = None, verify: bool = True) -> "ModelBundle":
        """Read a bundle folder. `heads` limits which head files are loaded (default: all present)."""
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"model bundle folder not found: {path}")
        for required in ("config.yaml", "metadata.json", "detector.pt", "extractor.pt"):
            if not (path / required).is_file():
                raise BundleError(f"model bundle {path} is incomplete: {required} is missing")
        try:
            metadata = BundleMetadata.model_validate_json((path / "metadata.json").read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise BundleError(f"{path / 'metadata.json'} is not valid bundle metadata: {exc.errors()[0]['msg']}") from None
        if metadata.format_version != FORMAT_VERSION:
            raise BundleError(
                f"bundle {path} has format version {metadata.format_version}; this smokewatch reads version "
                f"{FORMAT_VERSION}"
            )
        try:
            config = load_config(path / "config.yaml")
        except SmokewatchError as exc:
            raise BundleError(f"bundle {path}: {exc}") from None
        if verify:
            _verify_hashes(path, metadata)

        detector = load_detector_weights(path / "detector.pt")
        backbone, dim = _load_backbone(path, "extractor.pt", config.extractor)
        members = {m.name: MemberNetwork(*_load_backbone(path, f"ensemble/{m.name}/extractor.pt", m.extractor))
                   for m in config.ensemble}
        sources = {None: (config.extractor, dim), **{m.name: (m.extractor, members[m.name].feature_dim) for m in config.ensemble}}

        scorer = TrackScorer.load(path / SCORER_FILE) if (path / SCORER_FILE).is_file() else None
        if config.decision.scorer_threshold is not None and scorer is None:
            raise BundleError(f"bundle {path}: config.yaml sets decision.scorer_threshold but {SCORER_FILE} is missing")
        available = [p.stem for p in (path / "heads").glob("*.pt")] if (path / "heads").is_dir() else []
        for m in config.ensemble:
            available += [f"{m.name}/{p.stem}" for p in (path / "ensemble" / m.name / "heads").glob("*.pt")]
        order = [m.name for m in config.ensemble]
        available = sorted((h for h in available if head_member(h)[1] in HEAD_NAMES), key=lambda h: _head_order(h, order))
        wanted = heads or available
        if heads and scorer is not None and config.decision.scorer_threshold is not None:
            wanted = list(dict.fromkeys([*heads, *scorer.heads]))  # the scorer reads these heads too
        missing = [h for h in wanted if h not in available]
        if missing:
            raise BundleError(
                f"bundle {path} has no head {', '.join(missing)} (it has: {', '.join(available) or 'none'})"
            )
        if config.verifier.head not in wanted and heads is None:
            raise BundleError(
                f"bundle {path}: config.yaml selects head '{config.verifier.head}' but heads/ holds "
                f"{', '.join(available) or 'nothing'}"
            )
        loaded: dict[str, RecurrentHead] = {}
        for name in sorted(wanted, key=lambda h: _head_order(h, order)):
            file = path / _head_file(name)
            blob = _load(file, HEAD_FORMAT)
            spec = HeadSpec.model_validate(blob["spec"])
            extractor, width = sources[head_member(name)[0]]
            cues = cue_dim(extractor.change_cues)
            if spec.input_dim != width + cues:
                raise BundleError(
                    f"bundle {path}: head {name} expects {spec.input_dim}-value features but the "
                    f"{extractor.backbone} extractor gives {width}"
                    + (f" plus {cues} change cues" if cues else "")
                    + " (was the head trained with extractor.change_cues set otherwise?)"
                )
            head = build_head(spec)
            _load_state(head, blob["state_dict"], file)
            loaded[name] = head.eval()
        return cls(config, detector.network.eval(), detector.names, backbone, dim, loaded, metadata, path, scorer, members)


def _head_file(name: str) -> str:
    """Where a head's weights live in a bundle: heads/gru.pt, or ensemble/c160/heads/gru.pt for a member's."""
    member, head = head_member(name)
    return f"heads/{head}.pt" if member is None else f"ensemble/{member}/heads/{head}.pt"


def _load_backbone(path: Path, rel: str, config: ExtractorConfig) -> tuple[nn.Module, int]:
    """A backbone file of the bundle, checked against the architecture its config names."""
    blob = _load(path / rel, EXTRACTOR_FORMAT)
    if blob["backbone"] != config.backbone:
        raise BundleError(f"bundle {path}: {rel} holds a {blob['backbone']} but config.yaml asks for {config.backbone}")
    built = build_backbone(config, load_weights=False)
    _load_state(built.module, blob["state_dict"], path / rel)
    return built.module, built.dim


def _tensors(module: nn.Module, half: bool) -> dict[str, torch.Tensor]:
    return {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in module.state_dict().items()}


def _save(path: Path, blob: dict[str, Any]) -> Path:
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # never leave a half-written weight file behind
    return path


def _load(path: Path, fmt: str) -> dict[str, Any]:
    if not path.is_file():
        raise BundleError(f"bundle file missing: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BundleError(f"{path} cannot be read as smokewatch weights: {str(exc).splitlines()[0]}") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise BundleError(f"{path} is not a {fmt} file")
    return blob


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], origin: Path) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f"{origin} does not match its architecture: {str(exc).strip().splitlines()[0]}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_hashes(path: Path, metadata: BundleMetadata) -> None:
    for rel, expected in metadata.files.items():
        file = path / rel
        if not file.is_file():
            raise BundleError(f"bundle {path}: {rel} is listed in metadata.json but missing")
        if _sha256(file) != expected:
            raise BundleError(
                f"bundle {path}: {rel} does not match the hash in metadata.json (replaced or corrupted file)"
            )


def bundle_hash(path: str | Path) -> str:
    """A short fingerprint of a saved bundle: the hash of its metadata, which lists every file's hash."""
    return hashlib.sha256(Path(path, "metadata.json").read_bytes()).hexdigest()[:16]


def read_metadata(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path, "metadata.json").read_text(encoding="utf-8"))
