"""The six recurrent verifier heads of Table 7-1, as one module parameterised by a spec.

Each head reads a window of T feature vectors and returns one logit for "smoke". Smoke grows
and rises from a fixed source while clouds drift and fog spreads evenly; the recurrent layers
see that difference over time where a single-frame detector cannot.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from .config import HEAD_NAMES, HeadName, StrictModel, VerifierConfig

# name -> (cell, bidirectional, deep); deep heads stack three layers unless configured otherwise.
HEAD_KINDS: dict[str, tuple[str, bool, bool]] = {
    "lstm": ("lstm", False, False),
    "deep-lstm": ("lstm", False, True),
    "bilstm": ("lstm", True, False),
    "deep-bilstm": ("lstm", True, True),
    "gru": ("gru", False, False),
    "deep-gru": ("gru", False, True),
}
assert tuple(HEAD_KINDS) == HEAD_NAMES

TABLE_NAMES: dict[str, str] = {
    "lstm": "one LSTM",
    "deep-lstm": "deep LSTMs",
    "bilstm": "one Bi-LSTM",
    "deep-bilstm": "deep Bi-LSTM",
    "gru": "one GRU",
    "deep-gru": "deep GRUs",
}
DEEP_LAYERS = 3


class HeadSpec(StrictModel):
    """Everything needed to rebuild a head; stored beside its weights so a file describes itself."""

    name: HeadName = Field(description="Head name from the registry.")
    cell: Literal["lstm", "gru"] = Field(description="Recurrent cell type.")
    bidirectional: bool = Field(description="Whether each layer reads the window both ways.")
    num_layers: int = Field(ge=1, description="Stacked recurrent layers.")
    input_dim: int = Field(ge=1, description="Length of each feature vector (2048 for ResNet50).")
    hidden_size: int = Field(ge=1, description="Units per layer and direction.")
    proj_dim: int | None = Field(None, description="Size of the linear projection before the recurrent layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout between layers and before the classifier.")

    @classmethod
    def from_config(cls, config: VerifierConfig, input_dim: int, name: str | None = None) -> "HeadSpec":
        name = name or config.head
        if name not in HEAD_KINDS:
            raise ValueError(f"unknown verifier head '{name}'; choose from {', '.join(HEAD_NAMES)}")
        cell, bidirectional, deep = HEAD_KINDS[name]
        layers = config.num_layers or (DEEP_LAYERS if deep else 1)
        if not deep:
            layers = 1
        return cls(
            name=name,
            cell=cell,
            bidirectional=bidirectional,
            num_layers=layers,
            input_dim=input_dim,
            hidden_size=config.hidden_size,
            proj_dim=config.proj_dim,
            dropout=config.dropout,
        )


class RecurrentHead(nn.Module):
    """(B, T, D) features -> (B,) smoke logits."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        width = spec.input_dim
        if spec.proj_dim:
            self.proj: nn.Module = nn.Sequential(
                nn.LayerNorm(spec.input_dim), nn.Linear(spec.input_dim, spec.proj_dim), nn.GELU()
            )
            width = spec.proj_dim
        else:
            self.proj = nn.Identity()
        rnn_cls = nn.LSTM if spec.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size=width,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            bidirectional=spec.bidirectional,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,
        )
        directions = 2 if spec.bidirectional else 1
        self.classifier = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.hidden_size * directions, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(self.proj(x))
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        directions = 2 if self.spec.bidirectional else 1
        last = h_n[-directions:]  # the top layer: forward (and backward) final states
        return self.classifier(torch.cat(list(last), dim=1)).squeeze(1)


def build_head(spec: HeadSpec) -> RecurrentHead:
    return RecurrentHead(spec)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
