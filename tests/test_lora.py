"""The low-rank branch: gradient routing on each path, initial equality, export round trip, shapes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from autolora.inputs import InputSpec
from autolora.lora import (
    LoraLayer,
    branch_layers,
    export,
    inject,
    keep_natural_statistics,
    lora_parameters,
    natural_forward,
    natural_statistics,
)
from autolora.models import create_model


def _with_nonzero_branch(model: nn.Module) -> nn.Module:
    for layer in branch_layers(model):
        nn.init.normal_(layer.lora_B, std=0.02)
    return model


def _grads(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


MODELS = {
    "torchvision-resnet18": lambda: (torchvision.models.resnet18(num_classes=5), torch.rand(4, 3, 32, 32), "fc."),
    "registry-resnet8": lambda: (create_model("resnet8", 5, InputSpec.plain(1, 28)), torch.rand(4, 1, 28, 28), "head."),
}


@pytest.mark.parametrize("name", MODELS)
def test_natural_path_reaches_only_the_branch_and_the_head(name):
    torch.manual_seed(0)
    model, x, head = MODELS[name]()
    _with_nonzero_branch(inject(model)).train()
    natural_forward(model, x).square().sum().backward()
    touched = _grads(model)
    lora = {n for n, _ in model.named_parameters() if "lora_" in n}
    assert lora <= touched  # every branch learns
    assert all("lora_" in n or n.startswith(head) for n in touched)  # nothing else: no conv, BN affine or stem


@pytest.mark.parametrize("name", MODELS)
def test_adversarial_path_reaches_everything_but_the_branch(name):
    torch.manual_seed(0)
    model, x, head = MODELS[name]()
    _with_nonzero_branch(inject(model)).train()
    model(x).square().sum().backward()
    touched = _grads(model)
    everything = {n for n, _ in model.named_parameters() if "lora_" not in n}
    assert touched == everything


def test_paths_agree_at_initialisation_and_differ_after():
    torch.manual_seed(0)
    model = inject(create_model("resnet8", 5, InputSpec.plain(1, 28))).eval()
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(natural_forward(model, x), model(x))
    _with_nonzero_branch(model)
    assert not torch.allclose(natural_forward(model, x), model(x))


def test_both_paths_update_batchnorm_statistics_in_train_mode():
    torch.manual_seed(0)
    model = inject(create_model("resnet8", 5, InputSpec.plain(1, 28))).train()
    bn = model.features.layer1[0].bn1
    before = bn.running_mean.clone()
    natural_forward(model, torch.rand(8, 1, 28, 28))
    after_natural = bn.running_mean.clone()
    model(torch.rand(8, 1, 28, 28))
    assert not torch.equal(before, after_natural) and not torch.equal(after_natural, bn.running_mean)


def test_with_its_own_statistics_each_path_updates_and_reads_only_its_set():
    torch.manual_seed(0)
    model = keep_natural_statistics(inject(create_model("resnet8", 5, InputSpec.plain(1, 28)))).train()
    bn = model.features.layer1[0].bn1
    own = model.autolora_natural_statistics.substitutes()["features.layer1.0.bn1.running_mean"]
    assert torch.equal(own, bn.running_mean)  # both start from the source's statistics
    deployed, natural = bn.running_mean.clone(), own.clone()
    natural_forward(model, torch.rand(8, 1, 28, 28) + 1)
    assert torch.equal(bn.running_mean, deployed) and not torch.equal(own, natural)
    natural = own.clone()
    model(torch.rand(8, 1, 28, 28))
    assert torch.equal(own, natural) and not torch.equal(bn.running_mean, deployed)
    model.eval()  # the paths agree at initialisation, so any difference comes from the statistics read
    x = torch.rand(3, 1, 28, 28)
    assert not torch.allclose(natural_forward(model, x), model(x))
    reference = create_model("resnet8", 5, InputSpec.plain(1, 28)).eval()
    reference.load_state_dict(export(model).state_dict())  # the deployed path exports its own statistics
    assert torch.equal(reference(x), model(x))
    assert torch.allclose(export(model, merge=True).eval()(x), natural_forward(model, x), atol=1e-5)


def test_a_model_without_running_statistics_has_none_to_keep():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3), nn.LayerNorm([24, 24]),
                          nn.Flatten(), nn.Linear(4 * 24 * 24, 3))  # fmt: skip
    model = keep_natural_statistics(inject(model))
    assert natural_statistics(model) is None
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(natural_forward(model.eval(), x), model(x))  # the branch starts at zero
    from autolora.errors import CheckpointError
    from autolora.lora import branch_tensors, load_branch

    foreign = branch_tensors(model) | {"autolora_natural_statistics.running_mean_0": torch.zeros(4)}
    with pytest.raises(CheckpointError, match="holds natural-path BatchNorm statistics, but this model has no"):
        load_branch(export(model), foreign)


def test_own_statistics_follow_the_model_through_a_state_dict_and_a_wrapper():
    torch.manual_seed(0)
    model = keep_natural_statistics(inject(create_model("resnet8", 5, InputSpec.plain(1, 28))))
    keys = [k for k in model.state_dict() if k.startswith("autolora_natural_statistics.")]
    assert len(keys) == 3 * sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.train()
    wrapped = torch.compile(model, backend="eager")  # a wrapper: the names carry a prefix
    natural_forward(wrapped, torch.rand(8, 1, 28, 28) + 1)
    copy = keep_natural_statistics(inject(create_model("resnet8", 5, InputSpec.plain(1, 28))))
    copy.load_state_dict(model.state_dict())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(natural_forward(copy.eval(), x), natural_forward(model.eval(), x))
    assert not torch.equal(natural_forward(model, x), model(x))


def test_stem_and_head_get_no_branch_and_names_carry_lora():
    model = inject(torchvision.models.resnet18(num_classes=5))
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.fc, nn.Linear)
    assert isinstance(model.layer1[0].conv1, LoraLayer) and isinstance(model.layer2[0].downsample[0], LoraLayer)
    assert sum(1 for _ in branch_layers(model)) == 19
    assert all("lora_" in n for n, p in model.named_parameters() if any(p is q for q in lora_parameters(model)))


def test_export_round_trip_into_the_original_class():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=5)
    original_keys = list(reference.state_dict())
    model = _with_nonzero_branch(inject(reference))
    model.train()
    natural_forward(model, torch.rand(4, 3, 32, 32))  # move BN statistics
    plain = export(model)
    assert not any(isinstance(m, LoraLayer) for m in plain.modules())
    assert list(plain.state_dict()) == original_keys
    fresh = torchvision.models.resnet18(num_classes=5)
    fresh.load_state_dict(plain.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert any(isinstance(m, LoraLayer) for m in model.modules())  # export copies by default


@pytest.mark.parametrize(
    ("conv", "a_shape", "b_shape"),
    [
        (nn.Conv2d(16, 32, 3), (8 * 3, 16 * 3), (32 * 3, 8 * 3)),
        (nn.Conv2d(16, 32, 3, groups=4), (8 * 3, 16 * 3), (8 * 3, 8 * 3)),
        (nn.Conv2d(16, 16, 3, groups=16), (8 * 3, 16 * 3), (1 * 3, 8 * 3)),
        (nn.Conv2d(8, 12, (1, 5), padding=(0, 2)), (8 * 1, 8 * 5), (12 * 1, 8 * 1)),
        (nn.Conv2d(8, 12, (3, 1), padding=(1, 0), groups=2), (8 * 3, 8 * 1), (6 * 3, 8 * 3)),
    ],
)
def test_branch_shapes_for_grouped_and_non_square_convs(conv, a_shape, b_shape):
    layer = LoraLayer(conv, rank=8)
    assert tuple(layer.lora_A.shape) == a_shape and tuple(layer.lora_B.shape) == b_shape
    nn.init.normal_(layer.lora_B)
    assert layer.delta_weight().shape == conv.weight.shape
    x = torch.rand(2, conv.in_channels, 9, 9)
    layer.natural = True
    assert layer(x).shape == conv(x).shape
    layer.natural = False
    assert torch.equal(layer(x), conv(x))


def test_linear_branch_shape_init_and_scale():
    layer = LoraLayer(nn.Linear(20, 6), rank=4, alpha=2.0)
    assert tuple(layer.lora_A.shape) == (4, 20) and tuple(layer.lora_B.shape) == (6, 4)
    assert layer.lora_B.abs().sum() == 0 and layer.lora_A.abs().sum() > 0 and layer.scale == 0.5
    conv = LoraLayer(nn.Conv2d(4, 4, 3), rank=8)
    assert conv.scale == 1 / 8
    assert 0.7 < conv.lora_A.std() < 1.3  # standard normal, as the spec says for conv branches


def test_unsupported_layer_is_refused_with_the_supported_list():
    with pytest.raises(TypeError, match="supported layers: Conv2d, Linear"):
        LoraLayer(nn.Conv1d(3, 3, 3))


def test_torchvision_vit_gets_branches_on_its_linear_layers():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    )
    reference_keys = list(vit.state_dict())
    inject(vit, rank=4, include_linear=True)
    names = [n for n, m in vit.named_modules() if isinstance(m, LoraLayer)]
    assert names and all(".mlp." in n for n in names)  # MLP linears; not the patch stem, head, or MHA internals
    _with_nonzero_branch(vit).train()
    x = torch.rand(2, 3, 32, 32)
    natural_forward(vit, x).sum().backward()
    assert all("lora_" in n or n.startswith("heads.") for n in _grads(vit))
    plain = export(vit)
    assert list(plain.state_dict()) == reference_keys


def test_inject_refuses_a_model_without_layers_to_branch():
    with pytest.raises(ValueError, match="no layer to branch"):
        inject(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)))


def test_natural_forward_needs_branches():
    with pytest.raises(ValueError, match="inject"):
        natural_forward(torchvision.models.resnet18(), torch.rand(1, 3, 32, 32))


def test_natural_forward_under_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = _with_nonzero_branch(inject(create_model("resnet8", 3, InputSpec.plain(1, 16)))).eval()
    x = torch.rand(2, 1, 16, 16)
    compiled = torch.compile(lambda inp: natural_forward(model, inp), backend="eager")
    assert torch.allclose(compiled(x), natural_forward(model, x), atol=1e-6)


def test_merged_export_is_the_natural_path_as_a_plain_model():
    torch.manual_seed(0)
    model = _with_nonzero_branch(inject(create_model("resnet8", 5, InputSpec.plain(1, 28)))).eval()
    x = torch.rand(3, 1, 28, 28)
    merged = export(model, merge=True).eval()
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    assert torch.allclose(merged(x), natural_forward(model, x), atol=1e-5)
    assert not torch.allclose(export(model).eval()(x), merged(x))


def test_load_branch_reads_the_rank_and_refuses_a_mismatch():
    from autolora.errors import CheckpointError
    from autolora.lora import load_branch

    torch.manual_seed(0)
    trained = _with_nonzero_branch(inject(create_model("resnet8", 5, InputSpec.plain(1, 28)), rank=4))
    saved = {n: p.detach().clone() for n, p in trained.named_parameters() if "lora_" in n}
    plain = export(trained)
    restored = load_branch(export(trained), saved).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(natural_forward(restored, x), natural_forward(trained.eval(), x))
    del saved[next(iter(saved))]
    with pytest.raises(CheckpointError, match="do not fit"):
        load_branch(plain, saved)


def test_a_saved_branch_carries_the_natural_paths_own_statistics():
    from autolora.errors import CheckpointError
    from autolora.lora import branch_tensors, load_branch

    torch.manual_seed(0)
    trained = keep_natural_statistics(_with_nonzero_branch(inject(create_model("resnet8", 5, InputSpec.plain(1, 28)))))
    natural_forward(trained.train(), torch.rand(8, 1, 28, 28) + 1)  # the natural path's statistics move away
    saved = branch_tensors(trained)
    assert any(k.startswith("autolora_natural_statistics.") for k in saved)
    restored = load_branch(export(trained), saved).eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(natural_forward(restored, x), natural_forward(trained.eval(), x))
    without = load_branch(export(trained), {k: v for k, v in saved.items() if ".lora_" in k}).eval()
    assert not torch.allclose(natural_forward(without, x), natural_forward(trained, x))  # the file matters
    saved["autolora_natural_statistics.running_mean_0"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="statistics do not fit"):
        load_branch(export(trained), saved)


def test_a_second_inject_says_the_model_is_already_branched():
    model = torchvision.models.resnet18(num_classes=10)
    inject(model, rank=4)
    with pytest.raises(ValueError, match="already has low-rank branches"):
        inject(model, rank=4)
