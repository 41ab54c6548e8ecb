"""timm models as ``ImageClassifier``s: ``timm:NAME`` names any timm classification model.

timm's own interface is the split robust fine-tuning needs. ``reset_classifier(0)`` leaves a
feature extractor whose forward (``forward_features``, then ``forward_head(pre_logits=True)``)
returns pooled features; the wrapper's ``head`` is the classifier. State dicts convert both ways
between the wrapper's names (``features.*``, ``head.*``) and timm's, where the classifier keeps its
own name (``head`` for a ViT, ``head.fc`` for a ConvNeXt or Swin, ``fc`` for a ResNet), so an
exported model loads strictly into the plain timm model.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from .classifier import ImageClassifier

PREFIX = "timm:"
HUB_CONFIG = "config.json"
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def is_timm(architecture: str | None) -> bool:
    return bool(architecture) and architecture.startswith(PREFIX)


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise ConfigError("model", "timm:", "install timm: pip install 'timm>=1.0.9,<2'") from None
    return timm


def timm_name(architecture: str) -> str:
    """The timm model name in ``timm:NAME``, checked against timm's registry."""
    name = architecture.removeprefix(PREFIX)
    if not _timm().is_model(name.split(".")[0]):
        raise ConfigError(
            "model", architecture, "not a timm model; list them with `autolora models --timm '*vit*'` (a pattern)"
        )
    return name


def default_spec(architecture: str, channels: int = 3) -> InputSpec:
    """The input timm's pretrained config gives the model: size, mean and std (ImageNet's by default)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name(architecture))
    size = cfg.input_size[-1] if cfg else 224
    mean = tuple(cfg.mean) if cfg else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg else IMAGENET_STD
    return InputSpec(channels, size, mean[:channels], std[:channels])


def _fixed_input_size(name: str) -> bool:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return bool(cfg and cfg.fixed_input_size)


def create_timm_classifier(architecture: str, num_classes: int, spec: InputSpec) -> ImageClassifier:
    """A randomly initialised timm model for ``spec`` inside an ``ImageClassifier``.

    Models with a fixed input size (ViT, Swin) are built for ``spec.size``; the others take any size.
    """
    name = timm_name(architecture)
    kwargs: dict[str, Any] = {"in_chans": spec.channels}
    if _fixed_input_size(name) and spec.size != default_spec(architecture).size:
        kwargs["img_size"] = spec.size
    model = _timm().create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        kind = type(classifier).__name__
        raise ConfigError("model", architecture, f"its classifier is a {kind}; only nn.Linear heads are supported")
    wrapped = ImageClassifier(model, classifier.in_features, num_classes, spec)
    wrapped.head.load_state_dict(classifier.state_dict())
    model.reset_classifier(0)
    return wrapped


def classifier_name(features: nn.Module) -> str:
    """The module name timm gives the classifier (``head``, ``head.fc``, ``fc``, ...)."""
    classifier = features.get_classifier()
    for name, module in features.named_modules():
        if module is classifier and name:
            return name
    return str(features.pretrained_cfg["classifier"])


def from_timm_state(state: dict[str, Tensor], classifier: str) -> dict[str, Tensor]:
    """timm names -> ``ImageClassifier`` names: the classifier becomes ``head``, the rest ``features``."""
    prefix = classifier + "."
    return {("head." + k[len(prefix) :] if k.startswith(prefix) else "features." + k): v for k, v in state.items()}


def to_timm_state(state: dict[str, Tensor], classifier: str) -> dict[str, Tensor]:
    """``ImageClassifier`` names -> timm names (the inverse of ``from_timm_state``)."""
    return {
        (classifier + "." + k[len("head.") :] if k.startswith("head.") else k.removeprefix("features.")): v
        for k, v in state.items()
    }


def timm_state_dict(model: ImageClassifier) -> dict[str, Tensor]:
    """The state dict of the plain timm model: ``timm.create_model(NAME, num_classes=...)`` loads it strictly."""
    return to_timm_state(model.state_dict(), classifier_name(model.features))


def timm_filter(state: dict[str, Tensor], features: nn.Module) -> tuple[dict[str, Tensor], bool]:
    """Apply the ``checkpoint_filter_fn`` timm applies to its own pretrained files, where the model has one.

    It maps a family's original layouts (e.g. Meta's ConvNeXt, OpenCLIP ViTs) to timm's names and
    resamples position embeddings to the model's input size. Returns the state and whether it changed;
    a state the filter cannot read (another family's) comes back unchanged, for strict loading to refuse.
    """
    module = sys.modules[type(features).__module__]
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state, False
    try:
        filtered = filter_fn(dict(state), features)
    except Exception:  # noqa: BLE001 - a foreign function on foreign data; strict loading names the mismatch
        return state, False
    changed = filtered.keys() != state.keys() or any(filtered[k].shape != state[k].shape for k in state)
    return filtered, changed


def head_classes(state: dict[str, Tensor], classifier: str) -> int:
    """The class count of the classifier in a timm-layout state dict (0 for a file without a head)."""
    weight = state.get(classifier + ".weight")
    return int(weight.shape[0]) if weight is not None else 0


def first_conv_channels(state: dict[str, Tensor], architecture: str) -> int:
    """Input channels, from the weight of the first layer timm's config names (3 when it cannot tell)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name(architecture))
    weight = state.get(f"{cfg.first_conv}.weight") if cfg and cfg.first_conv else None
    return int(weight.shape[1]) if weight is not None and weight.ndim == 4 else 3


# --------------------------------------------------------------------------- hub directories


def read_hub_config(directory: Path) -> dict[str, Any] | None:
    """A Hugging Face hub snapshot of a timm model: ``config.json`` with ``architecture`` and ``pretrained_cfg``."""
    from ..fileio import read_json

    path = directory / HUB_CONFIG
    if not path.is_file():
        return None
    try:
        config = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "architecture" not in config or "pretrained_cfg" not in config:
        return None
    return config


def hub_weights(directory: Path) -> Path:
    for name in HUB_WEIGHTS:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"{directory} holds a timm config.json but no weights ({' or '.join(HUB_WEIGHTS)})")


def hub_spec(config: dict[str, Any], channels: int) -> InputSpec:
    cfg = config["pretrained_cfg"]
    size = int(cfg.get("input_size", (channels, 224, 224))[-1])
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    return InputSpec(channels, size, mean[:channels], std[:channels])
