"""A classifier with its normalisation inside and an explicit feature-extractor / head split."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..inputs import InputSpec


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics are not trainable and not in the state dict."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """``head(features(normalize(x)))`` for [0, 1] images of shape ``spec``.

    ``features`` maps an image batch to feature vectors of size ``feature_dim``;
    ``head`` is the linear classifier. The split is what robust fine-tuning needs:
    a pre-trained feature extractor, a new head for the downstream classes.
    """

    def __init__(self, features: nn.Module, feature_dim: int, num_classes: int, spec: InputSpec) -> None:
        super().__init__()
        self.spec = spec
        self.feature_dim = feature_dim
        self.normalize = Normalize(spec)
        self.features = features
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(self.normalize(x))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int, zero_init: bool = True) -> None:
        """Replace the head with a new one for ``num_classes`` (zero-initialised by default)."""
        device = self.head.weight.device
        self.head = nn.Linear(self.feature_dim, num_classes, device=device)
        if zero_init:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def set_input_spec(self, spec: InputSpec) -> None:
        """Change the input spec (e.g. the normalisation a foreign checkpoint carries)."""
        device = self.head.weight.device
        self.spec = spec
        self.normalize = Normalize(spec).to(device)


def check_takes_its_input(model: ImageClassifier, architecture: str) -> None:
    """Refuse in one line a model that cannot classify images of its own input spec: a ViT whose patch
    size does not divide the image, a network that downsamples a small image to nothing.

    One blank image goes through the model in eval mode (no statistics change); what the model
    raises becomes a ``ConfigError`` naming the size, before any run starts.
    """
    spec, training = model.spec, model.training
    blank = torch.zeros(1, spec.channels, spec.size, spec.size, device=model.head.weight.device)
    model.eval()
    try:
        with torch.no_grad():
            model(blank)
    except (RuntimeError, AssertionError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fix = f"it does not take {spec.channels}-channel {spec.size}x{spec.size} images ({reason}); give --input-size"
        raise ConfigError("model", architecture, fix) from None
    finally:
        model.train(training)
