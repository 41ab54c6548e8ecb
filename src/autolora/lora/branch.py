"""Add, route and remove low-rank branches on any conv / linear model.

``inject`` wraps the feature extractor's layers in place; ``model(x)`` stays the
adversarial path; ``natural_forward(model, x)`` is the natural path; ``export`` returns
the plain model with the original classes and state-dict keys.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .layers import LoraLayer, layer_kind
from .statistics import ATTRIBUTE as STATISTICS_ATTRIBUTE
from .statistics import NaturalStatistics, keeps_running_statistics, natural_statistics

log = logging.getLogger(__name__)

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


def find_stem(model: nn.Module, head: str | None = None) -> str | None:
    """The name of the stem: the feature extractor's first convolution (a ResNet's ``conv1``, a ViT's
    or Swin's patch embedding, a ConvNeXt's ``stem.0``), outside the head and any branched layer;
    None for a model without one."""
    head = head or find_head(model)
    parents = dict(model.named_modules())
    for name, module in model.named_modules():
        inside_branch = isinstance(parents[name.rpartition(".")[0]], LoraLayer)
        if isinstance(module, nn.Conv2d) and not _in_subtree(name, head) and not inside_branch:
            return name
    return None


def _branch_targets(model: nn.Module, head: str, include_linear: bool) -> list[str]:
    targets, stem = [], find_stem(model, head)
    parents = dict(model.named_modules())
    for name, module in model.named_modules():
        if _in_subtree(name, head) or isinstance(module, LoraLayer):
            continue
        parent = parents[name.rpartition(".")[0]]
        if isinstance(parent, LoraLayer):
            continue
        if isinstance(module, nn.Conv2d):
            if name != stem:  # the stem keeps no branch
                targets.append(name)
        elif include_linear and isinstance(module, nn.Linear):
            if isinstance(parent, nn.MultiheadAttention):
                continue  # its weights are read directly, its forward never runs
            targets.append(name)
    return targets


@dataclass(frozen=True)
class BranchConfig:
    """How a model's branches were made: rank, alpha and the layers that carry one.

    Saved beside the branch tensors, so that ``load_branch`` rebuilds exactly the same
    branches instead of guessing them from tensor shapes.
    """

    rank: int
    alpha: float
    layers: tuple[str, ...]

    def to_metadata(self) -> dict[str, str]:
        return {"branch_config": json.dumps({"rank": self.rank, "alpha": self.alpha, "layers": list(self.layers)})}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str] | None) -> BranchConfig | None:
        if not metadata or "branch_config" not in metadata:
            return None
        data = json.loads(metadata["branch_config"])
        return cls(int(data["rank"]), float(data["alpha"]), tuple(data["layers"]))


def branch_config(model: nn.Module) -> BranchConfig:
    """The config of ``model``'s branches (all share one rank and alpha, as ``inject`` makes them)."""
    layers = [(name, module) for name, module in unwrap(model).named_modules() if isinstance(module, LoraLayer)]
    if not layers:
        raise ValueError("the model has no low-rank branches")
    first = layers[0][1]
    return BranchConfig(first.rank, first.alpha, tuple(name for name, _ in layers))


def inject(
    model: nn.Module,
    rank: int = 8,
    *,
    alpha: float = 1.0,
    include_linear: bool = True,
    head: str | None = None,
    targets: Sequence[str] | None = None,
) -> nn.Module:
    """Add a low-rank branch, in place, to every conv and linear layer of the feature extractor.

    The stem (the first ``nn.Conv2d``: a ResNet's or ConvNeXt's stem, a ViT's or Swin's patch
    embedding) and the classification head get none. So a ResNet gets branches on every conv
    after the stem, a ConvNeXt on its depthwise, pointwise and downsampling layers, a ViT or Swin
    on every attention (``qkv``, ``proj``) and MLP (``fc1``, ``fc2``) linear layer (docs/models.md).
    ``include_linear=False`` keeps to convolutions; ``targets`` names the layers explicitly
    instead (as a saved ``BranchConfig`` does). Branch parameters are named ``...lora_A`` /
    ``...lora_B``. Returns ``model``.
    """
    if has_branches(model):
        raise ValueError("the model already has low-rank branches; inject() adds them once (export() removes them)")
    head = head or getattr(model, HEAD_ATTRIBUTE, None) or find_head(model)
    model.get_submodule(head)  # fails loudly for a wrong name
    targets = list(targets) if targets is not None else _branch_targets(model, head, include_linear)
    if not targets:
        kinds = "nn.Conv2d or nn.Linear" if include_linear else "nn.Conv2d"
        raise ValueError(f"no layer to branch: the feature extractor has no {kinds} besides the stem")
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


def _named_lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if ".lora_" in name}


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


def keep_natural_statistics(model: nn.Module) -> nn.Module:
    """Give the natural path of a branched ``model`` its own BatchNorm running statistics, starting
    from the model's own (``lora/statistics.py``), in place; returns ``model``. A feature extractor
    without running statistics (a ViT's LayerNorm, GroupNorm) has none to keep and is left as it is."""
    root = unwrap(model)
    if not has_branches(root):
        raise ValueError("the model has no low-rank branches; call inject(model) first")
    if natural_statistics(root) is None:
        head = getattr(root, HEAD_ATTRIBUTE)
        layers = {name: module for name, module in root.named_modules()
                  if keeps_running_statistics(module) and not _in_subtree(name, head)}  # fmt: skip
        if layers:
            setattr(root, STATISTICS_ATTRIBUTE, NaturalStatistics(layers))
    return model


def natural_forward(model: nn.Module, x: Tensor) -> Tensor:
    """The natural path: the feature extractor frozen, the branches and the head trainable.

    Every feature-extractor parameter (convolutions, BatchNorm affine, biases, the stem)
    is detached for this call, so the natural objective's gradient reaches only the
    ``lora_`` parameters and the head. No ``requires_grad`` is toggled: the routing is
    part of the forward, which keeps it correct under DistributedDataParallel.
    Works on a wrapped (DDP) model too. A model that keeps the natural path's own BatchNorm
    statistics (``keep_natural_statistics``) reads and updates those instead of its own.
    """
    if not has_branches(model):
        raise ValueError("the model has no low-rank branches; call inject(model) first")
    trainable = {id(p) for p in lora_parameters(model)} | {id(p) for p in head_parameters(model)}
    frozen = {name: p.detach() for name, p in model.named_parameters() if id(p) not in trainable}
    root = unwrap(model)
    statistics = natural_statistics(root)
    if statistics is not None:
        prefix = next(name for name, module in model.named_modules() if module is root)
        prefix = prefix + "." if prefix else ""
        frozen |= {prefix + name: buffer for name, buffer in statistics.substitutes().items()}
    with natural_path(model):
        return functional_call(model, frozen, (x,), strict=False)


def export(model: nn.Module, inplace: bool = False, *, merge: bool = False) -> nn.Module:
    """The model without branches: original module classes, state-dict keys and values.

    By default the branches are dropped (the deployed, adversarial path). ``merge=True``
    adds each branch's update into its layer's weight instead, giving the natural path
    as a plain model (a diagnostic; AutoLoRa never deploys it), with the natural path's own
    BatchNorm statistics where it keeps them.
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
    statistics = natural_statistics(model)
    if statistics is not None:
        if merge:
            with torch.no_grad():
                for name, buffer in statistics.substitutes().items():
                    model.get_buffer(name).copy_(buffer)
        delattr(model, STATISTICS_ATTRIBUTE)
    if HEAD_ATTRIBUTE in model.__dict__:
        delattr(model, HEAD_ATTRIBUTE)
    return model


def branch_tensors(model: nn.Module) -> dict[str, Tensor]:
    """What ``load_branch`` needs beside the plain model: the branch parameters and, where the
    natural path keeps its own BatchNorm statistics, those (under ``STATISTICS_ATTRIBUTE``)."""
    root = unwrap(model)
    tensors = {name: p.detach() for name, p in _named_lora_parameters(root).items()}
    statistics = natural_statistics(root)
    if statistics is not None:
        tensors |= {f"{STATISTICS_ATTRIBUTE}.{k}": v.detach() for k, v in statistics.state_dict().items()}
    return tensors


def _inferred_config(model: nn.Module, tensors: dict[str, Tensor]) -> BranchConfig:
    """A branch config guessed from tensor shapes (run directories written before configs were saved)."""
    from ..errors import CheckpointError

    layers = {k.removesuffix(".lora_A"): _module_or_none(model, k.removesuffix(".lora_A")) for k in tensors
              if k.endswith(".lora_A")}  # fmt: skip
    if not layers or not all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layers.values()):
        raise CheckpointError("the branch tensors do not belong to conv or linear layers of this model")
    name, layer = next(iter(layers.items()))
    rank = tensors[f"{name}.lora_A"].shape[0] // (layer.kernel_size[0] if isinstance(layer, nn.Conv2d) else 1)
    return BranchConfig(rank, 1.0, tuple(layers))


@torch.no_grad()
def load_branch(model: nn.Module, tensors: dict[str, Tensor], config: BranchConfig | None = None) -> nn.Module:
    """Inject branches into a plain ``model`` as ``config`` says and load ``tensors`` into them strictly.

    Without a config (files written before configs were saved) the rank and the layers are
    inferred from the tensors and alpha is taken as 1, with a warning. Every saved tensor
    must find its branch and every branch its tensor, with the same shape. Saved natural-path
    statistics (``branch_tensors``) are restored with ``keep_natural_statistics``.
    """
    from ..errors import CheckpointError

    prefix = STATISTICS_ATTRIBUTE + "."
    statistics = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    if config is None:
        config = _inferred_config(model, tensors)
        log.warning("the branch has no saved config: rank %d inferred from its tensors, alpha assumed 1", config.rank)
    try:
        inject(model, rank=config.rank, alpha=config.alpha, targets=config.layers)
    except (AttributeError, TypeError) as exc:
        raise CheckpointError(f"the saved branch does not fit this model: {exc}") from None
    branches = _named_lora_parameters(model)
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
    if statistics:
        kept = natural_statistics(keep_natural_statistics(model))
        if kept is None:
            raise CheckpointError("the file holds natural-path BatchNorm statistics, but this model has no BatchNorm")
        try:
            kept.load_state_dict(statistics)
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"the natural path's saved statistics do not fit this model: {exc}") from None
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
