"""The feature extractor's first convolution during fine-tuning: trained, or kept as the source has it.

SGD fine-tunes a ViT or a ConvNeXt worse than AdamW where the first, patch-embedding layer's gradients
are much larger than the other layers' (Kumar, Shen, Bubeck and Gunasekar, "How to fine-tune vision
models with SGD", ICLR 2024), and SGD with that layer frozen is level with AdamW. On the study's ViT the
patch embedding's gradient norm is 16 times the other layers' median, a ResNet-8's first convolution's
0.3-0.75 times (``benchmarks/stem_gradients.py``); so the default recipe freezes a stem that embeds
patches (a convolution whose stride is its kernel: ViT, Swin, ConvNeXt) and trains any other.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..lora import find_stem

STEMS = {
    "trained": "trained as every other layer of the feature extractor (the paper)",
    "frozen": "kept as the source has it (SGD's freeze-embed, Kumar et al., ICLR 2024)",
    "frozen-if-patches": "kept where it embeds patches (its stride is its kernel: ViT, Swin, ConvNeXt), else trained",
}


def embeds_patches(layer: nn.Module) -> bool:
    """Whether ``layer`` cuts its input into non-overlapping patches: a convolution whose stride is its
    kernel, larger than one pixel."""
    return isinstance(layer, nn.Conv2d) and layer.stride == layer.kernel_size and max(layer.kernel_size) > 1


def keeps_stem(setting: str, patches: bool) -> bool:
    """Whether ``setting`` (one of STEMS) keeps a stem that embeds patches (``patches``) or one that does not."""
    return setting == "frozen" or (setting == "frozen-if-patches" and patches)


def freeze_stem(model: nn.Module, setting: str) -> str | None:
    """Keep the stem as it is where ``setting`` (one of STEMS) says so; the name of the layer kept, or None."""
    if setting == "trained":
        return None
    name = find_stem(model)
    if name is None:
        if setting == "frozen":
            raise ConfigError("stem", setting, "the model has no convolution to keep")
        return None
    stem = model.get_submodule(name)
    if not keeps_stem(setting, embeds_patches(stem)):
        return None
    stem.requires_grad_(False)
    return name
