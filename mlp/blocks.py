"""Modern MLP blocks: the transformer FFN, LLaMA's SwiGLU and pre-norm residual blocks, stacked into a net.

A ``BlockNet`` is ``[in projection] → block × depth → [final norm] → [out projection]`` at model
width ``width``; the projections exist only where ``in_features`` / ``out_features`` differ from
the width (a block maps width to width), the final norm only for residual blocks with a norm (the
pre-norm recipe of GPT-2 and LLaMA: the residual stream is normalised once more before the head).

* ``FeedForward``: ``Linear(d, r·d) → act → Linear(r·d, d) → Dropout`` (the transformer FFN,
  GELU in BERT/GPT, ReLU in the original Transformer; the dropout on the block's output as
  nanoGPT's ``MLP``);
* ``SwiGLU``: ``Dropout(w2(silu(w1 x) * w3 x))`` (LLaMA's feed-forward);
* ``PreNormResidual``: ``x + FeedForward(norm(x))`` with ``LayerNorm``, ``RMSNorm`` or no norm.

Their exact FLOPs, bytes and memory are in ``mlp.block_ops`` (every op as data), not here.
"""

from __future__ import annotations

import enum

import torch
from torch import nn

from .activations import activation_spec, make_activation

LLAMA_MULTIPLE_OF = 256  # LLaMA rounds its SwiGLU hidden size up to a multiple of this


class Norm(str, enum.Enum):
    NONE = "none"
    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"


class BlockKind(str, enum.Enum):
    FFN = "ffn"
    SWIGLU = "swiglu"
    RESIDUAL = "residual"


def llama_hidden(width: int, multiple_of: int = LLAMA_MULTIPLE_OF) -> int:
    """LLaMA's SwiGLU hidden size: 2/3 of 4·width (same parameters as a 4x FFN), rounded up to ``multiple_of``.

    ``llama_hidden(4096) == 11008`` (LLaMA-7B).
    """
    hidden = int(2 * (4 * width) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def make_norm(norm: Norm | str, width: int, bias: bool) -> nn.Module | None:
    norm = Norm(norm)
    if norm is Norm.LAYERNORM:
        return nn.LayerNorm(width, bias=bias)
    if norm is Norm.RMSNORM:
        return nn.RMSNorm(width)  # weight only: RMSNorm has no bias
    return None


class FeedForward(nn.Module):
    """``(batch, d) -> (batch, hidden) -> (batch, d)``: ``fc_in → act → fc_out → dropout``."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.fc_in = nn.Linear(width, hidden, bias=bias)
        self.act = make_activation(activation)
        self.fc_out = nn.Linear(hidden, width, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.activation = activation_spec(activation).name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc_out(self.act(self.fc_in(x)))
        return self.dropout(out) if self.dropout is not None else out


class SwiGLU(nn.Module):
    """``(batch, d) -> (batch, d)``: ``w2(silu(w1 x) * w3 x)`` (LLaMA's names), then dropout."""

    def __init__(self, width: int, hidden: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(width, hidden, bias=bias)  # gate
        self.w2 = nn.Linear(hidden, width, bias=bias)  # down (LLaMA's order: its checkpoints load as they are)
        self.w3 = nn.Linear(width, hidden, bias=bias)  # up
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))
        return self.dropout(out) if self.dropout is not None else out


class PreNormResidual(nn.Module):
    """``x + ffn(norm(x))``; ``norm`` None is the plain residual ``x + ffn(x)``."""

    def __init__(self, width: int, hidden: int, activation: str, norm: Norm | str, bias: bool, dropout: float):
        super().__init__()
        self.norm = make_norm(norm, width, bias)
        self.ffn = FeedForward(width, hidden, activation, bias, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(self.norm(x) if self.norm is not None else x)


class BlockNet(nn.Module):
    """``[in_proj] → blocks → [final_norm] → [out_proj]``: ``(batch, in) -> (batch, out)``, raw outputs."""

    def __init__(self, kind: BlockKind | str, width: int, depth: int, in_features: int, out_features: int,
                 hidden: int, activation: str = "gelu", norm: Norm | str = Norm.NONE, bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        kind, norm = BlockKind(kind), Norm(norm)
        for name, value in (("width", width), ("depth", depth), ("in_features", in_features),
                            ("out_features", out_features), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if norm is not Norm.NONE and kind is not BlockKind.RESIDUAL:
            raise ValueError(f"norm {norm.value!r} applies to residual blocks only, not {kind.value}")
        self.kind, self.width, self.depth, self.hidden = kind, width, depth, hidden
        self.in_features, self.out_features = in_features, out_features
        self.activation = "silu" if kind is BlockKind.SWIGLU else activation_spec(activation).name
        self.norm_kind, self.bias, self.dropout_p = norm, bias, dropout
        self.in_proj = nn.Linear(in_features, width, bias=bias) if in_features != width else None
        self.blocks = nn.Sequential(*(self._block() for _ in range(depth)))
        self.final_norm = make_norm(norm, width, bias) if kind is BlockKind.RESIDUAL else None
        self.out_proj = nn.Linear(width, out_features, bias=bias) if out_features != width else None

    def _block(self) -> nn.Module:
        if self.kind is BlockKind.FFN:
            return FeedForward(self.width, self.hidden, self.activation, self.bias, self.dropout_p)
        if self.kind is BlockKind.SWIGLU:
            return SwiGLU(self.width, self.hidden, self.bias, self.dropout_p)
        return PreNormResidual(self.width, self.hidden, self.activation, self.norm_kind, self.bias, self.dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_proj is not None:
            x = self.in_proj(x)  # (batch, in) -> (batch, width)
        x = self.blocks(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.out_proj(x) if self.out_proj is not None else x  # (batch, width) -> (batch, out)


def block_net(kind: BlockKind | str, width: int, depth: int, in_features: int | None = None,
              out_features: int | None = None, expansion: int = 4, hidden: int = 0, activation: str = "gelu",
              norm: Norm | str = Norm.NONE, bias: bool = True, dropout: float = 0.0) -> BlockNet:
    """A stack of ``depth`` blocks at ``width``; the hidden size is ``expansion·width`` (ffn, residual) or
    ``hidden`` (swiglu; 0: ``llama_hidden(width)``). ``in_features`` / ``out_features`` default to the width."""
    kind = BlockKind(kind)
    if not isinstance(expansion, int) or isinstance(expansion, bool) or expansion < 1:
        raise ValueError(f"expansion must be an integer >= 1, got {expansion!r}")
    if kind is BlockKind.SWIGLU:
        size = hidden or llama_hidden(width)
    else:
        if hidden:
            raise ValueError(f"hidden applies to swiglu blocks only; {kind.value} uses expansion x width")
        size = expansion * width
    return BlockNet(kind, width, depth, in_features or width, out_features or width, size, activation, norm, bias,
                    dropout)
