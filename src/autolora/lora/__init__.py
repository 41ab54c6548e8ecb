"""The low-rank branch of AutoLoRa: inject, natural path, export."""

from .branch import (
    BranchConfig,
    branch_config,
    branch_layers,
    branch_norms,
    branch_tensors,
    export,
    find_head,
    find_stem,
    has_branches,
    head_parameters,
    inject,
    keep_natural_statistics,
    load_branch,
    lora_parameters,
    natural_forward,
    natural_path,
    unwrap,
)
from .layers import BRANCH_SCALES, LAYER_KINDS, LoraLayer, branch_alpha
from .statistics import NaturalStatistics, natural_statistics

__all__ = [
    "BRANCH_SCALES",
    "BranchConfig",
    "branch_alpha",
    "branch_config",
    "LAYER_KINDS",
    "LoraLayer",
    "NaturalStatistics",
    "branch_layers",
    "branch_norms",
    "branch_tensors",
    "export",
    "find_head",
    "find_stem",
    "has_branches",
    "head_parameters",
    "inject",
    "keep_natural_statistics",
    "load_branch",
    "lora_parameters",
    "natural_forward",
    "natural_path",
    "natural_statistics",
    "unwrap",
]
