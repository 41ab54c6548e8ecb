"""Training state in one safetensors file: tensors as tensors, everything else as JSON metadata.

Nothing is pickled, so a resume file from anywhere loads without running code, and the
single atomic file is always consistent (weights, optimizer, schedule and metrics of the
same epoch).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from ..errors import CheckpointError
from ..fileio import save_tensors

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_METADATA_KEY = "autolora_state"


def _flatten(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        key = prefix or "root"
        tensors[key] = obj
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        return _flatten(torch.from_numpy(obj.copy()), prefix, tensors)
    if isinstance(obj, dict):
        return {str(k): _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a nested dict of tensors and JSON values atomically."""
    tensors: dict[str, Tensor] = {}
    structure = _flatten(state, "", tensors)
    save_tensors(path, tensors, {_METADATA_KEY: json.dumps(structure)})


def load_state(path: Path) -> dict[str, Any]:
    """Read what ``save_state`` wrote."""
    return _read(path, with_tensors=True)


def load_state_record(path: Path) -> dict[str, Any]:
    """What ``save_state`` wrote but its tensors (each left as a placeholder): the epoch, metrics,
    timing and the like, read without loading the weights."""
    return _read(path, with_tensors=False)


def _read(path: Path, with_tensors: bool) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = handle.keys() if with_tensors else []
            tensors = {key: handle.get_tensor(key) for key in keys}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"training state {path} is unreadable (truncated?): {exc}") from exc
    if _METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} is not an autolora training state")
    structure = json.loads(metadata[_METADATA_KEY])
    return _unflatten(structure, tensors) if with_tensors else structure


def rng_state() -> dict[str, Any]:
    """Every random-number generator's state: Python, NumPy, torch CPU and CUDA."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys).astype(np.uint32), pos, has_gauss, cached))  # tensor after a reload
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed every generator from ``(seed, epoch)``: an epoch's randomness depends on nothing else."""
    value = (seed * 1_000_003 + epoch * 7919) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
