"""The low-rank branch of AutoLoRa: inject, natural path, export."""

from .branch import (
    branch_layers,
    branch_norms,
    export,
    find_head,
    has_branches,
    head_parameters,
    inject,
    load_branch,
    lora_parameters,
    natural_forward,
    natural_path,
    unwrap,
)
from .layers import LAYER_KINDS, LoraLayer

__all__ = [
    "LAYER_KINDS",
    "LoraLayer",
    "branch_layers",
    "branch_norms",
    "export",
    "find_head",
    "has_branches",
    "head_parameters",
    "inject",
    "load_branch",
    "lora_parameters",
    "natural_forward",
    "natural_path",
    "unwrap",
]
