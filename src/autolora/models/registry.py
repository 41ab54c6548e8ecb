"""Models by name: each entry builds an ``ImageClassifier`` for a class count and input spec."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..inputs import InputSpec
from ..registry import Entry, Registry
from .classifier import ImageClassifier
from .resnet import SMALL_INPUT, CifarResNet, torchvision_resnet
from .timm_models import create_timm_classifier, is_timm

Builder = Callable[[int, InputSpec, "bool | None"], ImageClassifier]


MODELS: Registry[Builder] = Registry()
# a decorator: @register_model(name, description) on a builder (num_classes, spec, small_stem) -> ImageClassifier
register_model = MODELS.register


def list_models() -> list[Entry[Builder]]:
    return MODELS.entries()


def create_model(name: str, num_classes: int, spec: InputSpec, small_stem: bool | None = None) -> ImageClassifier:
    """Build the registered model ``name`` (randomly initialised).

    ``small_stem`` chooses the 3x3 stride-1 stem without max-pool of CIFAR practice;
    by default it is used for inputs of at most 64 px. ``timm:NAME`` builds timm's model ``NAME``.
    """
    if num_classes < 2:
        raise ConfigError("num_classes", num_classes, "a classifier needs at least two classes")
    if is_timm(name):
        return create_timm_classifier(name, num_classes, spec)
    if name not in MODELS:
        raise ConfigError("model", name, f"choose one of: {', '.join(MODELS.names())}, or timm:NAME")
    return MODELS[name](num_classes, spec, small_stem)


def _cifar(blocks: int) -> Builder:
    def build(num_classes: int, spec: InputSpec, small_stem: bool | None = None) -> ImageClassifier:
        features = CifarResNet(blocks, spec.channels)
        return ImageClassifier(features, features.out_features, num_classes, spec)

    return build


def _torchvision(name: str) -> Builder:
    def build(num_classes: int, spec: InputSpec, small_stem: bool | None = None) -> ImageClassifier:
        small = spec.size <= SMALL_INPUT if small_stem is None else small_stem
        features, dim = torchvision_resnet(name, spec.channels, small)
        return ImageClassifier(features, dim, num_classes, spec)

    return build


for _depth in (8, 20, 32, 56):
    register_model(f"resnet{_depth}", f"CIFAR-style ResNet-{_depth} (He et al. 2016), widths 16/32/64")(
        _cifar((_depth - 2) // 6)
    )
for _name in ("resnet18", "resnet34", "resnet50", "wide_resnet50_2"):
    register_model(_name, f"torchvision {_name}; 3x3 stride-1 stem without max-pool for inputs <= 64 px")(
        _torchvision(_name)
    )
