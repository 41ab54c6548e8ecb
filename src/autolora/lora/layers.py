"""The low-rank branch: a wrapper that holds the original layer and a trainable update.

``LoraLayer`` wraps an ``nn.Conv2d`` or ``nn.Linear`` (``base_layer``) and adds
``delta = scale * (lora_B @ lora_A)`` reshaped to the layer's weight. On the adversarial
path it is exactly the base layer; on the natural path it computes with
``W.detach() + delta`` so the natural objective trains the branch and never ``W``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class _LayerKind:
    """How a wrapped layer type shapes, initialises and applies its branch."""

    shapes: Callable[[nn.Module, int], tuple[tuple[int, int], tuple[int, int]]]
    init_a: Callable[[Tensor], None]
    apply: Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor]


def _conv_shapes(layer: nn.Conv2d, rank: int) -> tuple[tuple[int, int], tuple[int, int]]:
    # A: (r*kh, in*kw), B: ((out/groups)*kh, r*kh); B @ A has out*(in/groups)*kh*kw entries.
    kh, kw = layer.kernel_size
    return (rank * kh, layer.in_channels * kw), ((layer.out_channels // layer.groups) * kh, rank * kh)


def _linear_shapes(layer: nn.Linear, rank: int) -> tuple[tuple[int, int], tuple[int, int]]:
    return (rank, layer.in_features), (layer.out_features, rank)


def _normal_init(tensor: Tensor) -> None:
    nn.init.normal_(tensor, 0.0, 1.0)


def _kaiming_init(tensor: Tensor) -> None:
    nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


def _conv_apply(layer: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return layer._conv_forward(x, weight, bias)


def _linear_apply(layer: nn.Linear, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return F.linear(x, weight, bias)


# Dispatch by type: the layer kinds a branch can wrap.
LAYER_KINDS: dict[type[nn.Module], _LayerKind] = {
    nn.Conv2d: _LayerKind(_conv_shapes, _normal_init, _conv_apply),
    nn.Linear: _LayerKind(_linear_shapes, _kaiming_init, _linear_apply),
}


def layer_kind(layer: nn.Module) -> _LayerKind:
    for layer_type, kind in LAYER_KINDS.items():
        if isinstance(layer, layer_type):
            return kind
    supported = ", ".join(t.__name__ for t in LAYER_KINDS)
    raise TypeError(f"cannot add a low-rank branch to {type(layer).__name__}; supported layers: {supported}")


BRANCH_SCALES = {
    "1/r": "alpha 1 over the rank (the paper's)",
    "1/sqrt(r)": "rank-stabilised, alpha sqrt(r) over the rank (rsLoRA, Kalajdzievski 2023)",
}


def branch_alpha(scale: str, rank: int) -> float:
    """The ``alpha`` that makes a rank-``rank`` branch's update scale ``scale`` (a key of ``BRANCH_SCALES``)."""
    if scale not in BRANCH_SCALES:
        raise ValueError(f"unknown branch scale {scale!r}; choose one of: {', '.join(BRANCH_SCALES)}")
    return math.sqrt(rank) if scale == "1/sqrt(r)" else 1.0


class LoraLayer(nn.Module):
    """A layer plus a parallel low-rank branch used only on the natural path.

    Args:
        base_layer: the ``nn.Conv2d`` or ``nn.Linear`` to wrap; kept unchanged.
        rank: the branch's rank ``r``.
        alpha: the update is scaled by ``alpha / rank``.

    ``lora_B`` starts at zero, so both paths start equal.
    """

    def __init__(self, base_layer: nn.Module, rank: int = 8, alpha: float = 1.0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be positive, got {rank}")
        self.kind = layer_kind(base_layer)
        self.base_layer = base_layer
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        self.natural = False
        weight = base_layer.weight
        a_shape, b_shape = self.kind.shapes(base_layer, rank)
        self.lora_A = nn.Parameter(torch.empty(a_shape, device=weight.device, dtype=weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, device=weight.device, dtype=weight.dtype))
        self.kind.init_a(self.lora_A)

    def delta_weight(self) -> Tensor:
        """The branch's update, shaped like the base layer's weight."""
        return (self.lora_B @ self.lora_A).view(self.base_layer.weight.shape) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        if not self.natural:
            return self.base_layer(x)
        base = self.base_layer
        bias = base.bias.detach() if base.bias is not None else None
        return self.kind.apply(base, x, base.weight.detach() + self.delta_weight(), bias)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"
