"""The model registry: shapes, normalisation inside, the feature-extractor / head split."""

from __future__ import annotations

import pytest
import torch

from autolora.errors import ConfigError
from autolora.inputs import InputSpec
from autolora.models import create_model, list_models

REQUIRED = {"resnet8", "resnet20", "resnet18", "resnet34", "resnet50", "wide_resnet50_2"}


def test_registry_holds_the_required_models():
    assert {entry.name for entry in list_models()} >= REQUIRED


@pytest.mark.parametrize(("name", "dim"), [("resnet8", 64), ("resnet20", 64), ("resnet18", 512)])
def test_small_models_classify_small_inputs(name, dim):
    model = create_model(name, 7, InputSpec.plain(3, 32)).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, dim)
    assert model.feature_dim == dim


def test_cifar_resnet_depths():
    def convs(name):
        return sum(isinstance(m, torch.nn.Conv2d) for m in create_model(name, 10, InputSpec.plain(1, 28)).modules())

    # depth = 6n + 2: 1 stem + 6n block convs + 2 shortcut convs (option B); the +2 counts stem and head
    assert convs("resnet8") == 1 + 6 + 2
    assert convs("resnet20") == 1 + 18 + 2


def test_small_input_stem_and_imagenet_stem():
    small = create_model("resnet18", 10, InputSpec.plain(3, 32))
    assert small.features.conv1.kernel_size == (3, 3) and isinstance(small.features.maxpool, torch.nn.Identity)
    large = create_model("resnet18", 10, InputSpec.plain(3, 224))
    assert large.features.conv1.kernel_size == (7, 7)
    forced = create_model("resnet18", 10, InputSpec.plain(3, 32), small_stem=False)
    assert forced.features.conv1.kernel_size == (7, 7)


def test_big_models_build():
    for name in ("resnet34", "resnet50", "wide_resnet50_2"):
        model = create_model(name, 3, InputSpec.plain(3, 64))
        assert model.num_classes == 3


def test_normalisation_lives_inside_the_model():
    spec = InputSpec(1, 28, (0.5,), (0.25,))
    model = create_model("resnet8", 10, spec).eval()
    x = torch.rand(2, 1, 28, 28)
    plain = create_model("resnet8", 10, InputSpec.plain(1, 28)).eval()
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(model(x), plain((x - 0.5) / 0.25), atol=1e-6)
    assert not any("normalize" in key for key in model.state_dict())


def test_reset_classifier_gives_a_zero_head():
    model = create_model("resnet8", 10, InputSpec.plain(1, 28))
    model.reset_classifier(4)
    assert model.num_classes == 4
    assert model.head.weight.abs().sum() == 0 and model.head.bias.abs().sum() == 0
    assert model(torch.rand(2, 1, 28, 28)).abs().sum() == 0


def test_unknown_model_lists_the_registry():
    with pytest.raises(ConfigError, match="resnet8"):
        create_model("vgg11", 10, InputSpec.plain(3, 32))


def test_input_spec_validates():
    with pytest.raises(ConfigError, match="channels"):
        InputSpec(2, 32, (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ConfigError, match="std"):
        InputSpec(1, 32, (0.0,), (0.0,))
    assert InputSpec(3, 32, (0.5,), (0.5,)).mean == (0.5, 0.5, 0.5)
