"""Add, route and remove low-rank branches on any conv / linear model.

``inject`` wraps the feature extractor's layers in place; ``model(x)`` stays the
adversarial path; ``natural_forward(model, x)`` is the natural path; ``export`` returns
the plain model with the original classes and state-dict keys.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .layers import LoraLayer, layer_kind

HEAD_ATTRIBUTE = "autolora_head"
_HEAD_NAMES = ("head", "fc", "heads", "classifier", "linear")


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel / ``torch.compile`` wrapper."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def find_head(model: nn.Module) -> str:
    """The name of the classification head: ``get_classifier()`` (timm), a usual name, or the last Linear."""
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
        for name, module in model.named_modules():
            if module is classifier and name:
                return name
    for name in _HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            return name
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("cannot find the classification head; pass head='<module name>'")
    return linears[-1]


def _in_subtree(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def _branch_targets(model: nn.Module, head: str, include_linear: bool) -> list[str]:
    targets, stem_seen = [], False
    parents = dict(model.named_modules())
    for name, module in model.named_modules():
        if _in_subtree(name, head) or isinstance(module, LoraLayer):
            continue
        parent = parents[name.rpartition(".")[0]]
        if isinstance(parent, LoraLayer):
            continue
        if isinstance(module, nn.Conv2d):
            if not stem_seen:
                stem_seen = True  # the stem convolution keeps no branch
                continue
            targets.append(name)
        elif include_linear and isinstance(module, nn.Linear):
            if isinstance(parent, nn.MultiheadAttention):
                continue  # its weights are read directly, its forward never runs
            targets.append(name)
    return targets


def inject(
    model: nn.Module, rank: int = 8, *, alpha: float = 1.0, include_linear: bool = False, head: str | None = None
) -> nn.Module:
    """Add a low-rank branch, in place, to every conv layer of the feature extractor.

    The stem (the first ``nn.Conv2d``) and the classification head get none;
    ``include_linear`` adds branches to ``nn.Linear`` layers too (for transformers).
    Branch parameters are named ``...lora_A`` / ``...lora_B``. Returns ``model``.
    """
    if has_branches(model):
        raise ValueError("the model already has low-rank branches: inject once (or export(model) first)")
    head = head or getattr(model, HEAD_ATTRIBUTE, None) or find_head(model)
    model.get_submodule(head)  # fails loudly for a wrong name
    targets = _branch_targets(model, head, include_linear)
    if not targets:
        raise ValueError(
            "no layer to branch: the model has no nn.Conv2d after the stem"
            + ("" if include_linear else " (pass include_linear=True for nn.Linear layers)")
        )
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        layer_kind(layer)
        setattr(parent, child, LoraLayer(layer, rank, alpha))
    setattr(model, HEAD_ATTRIBUTE, head)
    return model


def branch_layers(model: nn.Module) -> Iterator[LoraLayer]:
    return (m for m in model.modules() if isinstance(m, LoraLayer))


def lora_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    for layer in branch_layers(model):
        yield layer.lora_A
        yield layer.lora_B


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    root = unwrap(model)
    return root.get_submodule(getattr(root, HEAD_ATTRIBUTE)).parameters()


def has_branches(model: nn.Module) -> bool:
    return any(True for _ in branch_layers(model))


@contextlib.contextmanager
def natural_path(model: nn.Module) -> Iterator[None]:
    """Within this context, branched layers compute with ``W.detach() + delta``."""
    layers = list(branch_layers(model))
    for layer in layers:
        layer.natural = True
    try:
        yield
    finally:
        for layer in layers:
            layer.natural = False


def natural_forward(model: nn.Module, x: Tensor) -> Tensor:
    """The natural path: the feature extractor frozen, the branches and the head trainable.

    Every feature-extractor parameter (convolutions, BatchNorm affine, biases, the stem)
    is detached for this call, so the natural objective's gradient reaches only the
    ``lora_`` parameters and the head. No ``requires_grad`` is toggled: the routing is
    part of the forward, which keeps it correct under DistributedDataParallel.
    Works on a wrapped (DDP) model too.
    """
    if not has_branches(model):
        raise ValueError("the model has no low-rank branches; call inject(model) first")
    trainable = {id(p) for p in lora_parameters(model)} | {id(p) for p in head_parameters(model)}
    frozen = {name: p.detach() for name, p in model.named_parameters() if id(p) not in trainable}
    with natural_path(model):
        return functional_call(model, frozen, (x,), strict=False)


def export(model: nn.Module, inplace: bool = False, *, merge: bool = False) -> nn.Module:
    """The model without branches: original module classes, state-dict keys and values.

    By default the branches are dropped (the deployed, adversarial path). ``merge=True``
    adds each branch's update into its layer's weight instead, giving the natural path
    as a plain model (a diagnostic; AutoLoRa never deploys it).
    """
    model = unwrap(model)
    if not inplace:
        model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            if merge:
                with torch.no_grad():
                    module.base_layer.weight += module.delta_weight()
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.base_layer)
    if HEAD_ATTRIBUTE in model.__dict__:
        delattr(model, HEAD_ATTRIBUTE)
    return model


@torch.no_grad()
def load_branch(model: nn.Module, tensors: dict[str, Tensor]) -> nn.Module:
    """Inject branches matching saved ``lora_`` tensors into a plain ``model`` and load them strictly.

    The rank, and whether linear layers carry branches, are read from the tensors; every
    saved tensor must find its branch and every branch its tensor, with the same shape.
    """
    from ..errors import CheckpointError

    layers = {k.removesuffix(".lora_A"): _module_or_none(model, k.removesuffix(".lora_A")) for k in tensors
              if k.endswith(".lora_A")}  # fmt: skip
    if not layers or not all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layers.values()):
        raise CheckpointError("the branch tensors do not belong to conv or linear layers of this model")
    name, layer = next(iter(layers.items()))
    rank = tensors[f"{name}.lora_A"].shape[0] // (layer.kernel_size[0] if isinstance(layer, nn.Conv2d) else 1)
    inject(model, rank=rank, include_linear=any(isinstance(m, nn.Linear) for m in layers.values()))
    branches = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    missing, unexpected = sorted(set(branches) - set(tensors)), sorted(set(tensors) - set(branches))
    if missing or unexpected:
        raise CheckpointError(
            f"the branch tensors do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for key, parameter in branches.items():
        if parameter.shape != tensors[key].shape:
            raise CheckpointError(
                f"branch tensor {key} has shape {tuple(tensors[key].shape)}, not {tuple(parameter.shape)}"
            )
        parameter.copy_(tensors[key])
    return model


def _module_or_none(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def branch_norms(model: nn.Module) -> dict[str, float]:
    """The Frobenius norm of each branch's update, by layer name (a diagnostic)."""
    return {
        name: float(module.delta_weight().norm())
        for name, module in unwrap(model).named_modules()
        if isinstance(module, LoraLayer)
    }
