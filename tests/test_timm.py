"""timm models: the wrapper's split, AutoLoRa's targets on transformers, strict loading and export."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from autolora.errors import CheckpointError, ConfigError
from autolora.inputs import IMAGENET_MEAN, InputSpec
from autolora.lora import LoraLayer, export, find_stem, inject, natural_forward
from autolora.models import InputOverrides, check_takes_its_input, create_model, load_classifier
from autolora.models.timm_models import default_spec, timm_state_dict
from autolora.train.stem import freeze_stem

VIT = "timm:test_vit"  # timm's own tiny ViT for tests (CLI smoke runs use vit_tiny_patch16_224)
CONVNEXT = "timm:convnext_atto"


def _spec(architecture: str, size: int = 32) -> InputSpec:
    return default_spec(architecture).replace(size=size)


def _plain_timm(architecture: str, num_classes: int, size: int) -> nn.Module:
    name = architecture.removeprefix("timm:")
    kwargs = {"img_size": size} if timm.models.get_pretrained_cfg(name).fixed_input_size else {}
    return timm.create_model(name, num_classes=num_classes, **kwargs).eval()


def _normalised(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    return (x - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)


def _branched(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    """A plain timm ViT-Ti (32 px, 10 classes) saved as a hub-style safetensors file."""
    torch.manual_seed(0)
    plain = _plain_timm(VIT, 10, 32)
    path = tmp_path_factory.mktemp("vit") / "model.safetensors"
    save_file(plain.state_dict(), str(path))
    return path, plain


def test_timm_model_has_the_feature_head_split_and_timm_input_spec():
    model = create_model(VIT, 7, _spec(VIT)).eval()
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 7)
    assert model.forward_features(x).shape == (2, model.features.embed_dim) and model.feature_dim > 0
    assert default_spec("timm:vit_tiny_patch16_224").mean == (0.5, 0.5, 0.5)  # augreg's, from timm's config
    assert default_spec(CONVNEXT).mean == IMAGENET_MEAN and default_spec(CONVNEXT).size == 224
    assert not any(isinstance(m, nn.Linear) for m in model.features.modules() if m is model.features.get_classifier())


def test_unknown_timm_model_says_how_to_list_them():
    with pytest.raises(ConfigError, match="autolora models --timm"):
        create_model("timm:not_a_model", 3, InputSpec.plain(3, 32))


def test_vit_branches_attention_and_mlp_linears_not_patch_embedding_or_head():
    model = inject(create_model(VIT, 5, _spec(VIT)), rank=4)
    names = _branched(model)
    assert len(names) == 4 * len(model.features.blocks)  # qkv, proj, fc1, fc2 in every block
    assert {n.rsplit(".", 1)[1] for n in names} == {"qkv", "proj", "fc1", "fc2"}
    assert not any("patch_embed" in n or n.startswith("head") for n in names)


@pytest.mark.parametrize(("architecture", "stem"), [(VIT, "features.patch_embed.proj"), (CONVNEXT, "features.stem.0")])
def test_the_stem_is_the_first_convolution_branched_or_not(architecture, stem):
    model = create_model(architecture, 5, _spec(architecture))
    assert find_stem(model) == stem
    assert find_stem(inject(model, rank=4)) == stem  # it keeps no branch, so it is found the same way after


@pytest.mark.parametrize(("architecture", "kept"), [(VIT, True), (CONVNEXT, True), ("resnet18", False)])
def test_the_default_keeps_a_stem_that_embeds_patches_and_trains_any_other(architecture, kept):
    spec = _spec(architecture) if architecture.startswith("timm:") else InputSpec.plain(3, 32)
    model = create_model(architecture, 5, spec)
    assert freeze_stem(model, "frozen-if-patches") == (find_stem(model) if kept else None)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ([f"{find_stem(model)}.{n}" for n, _ in model.get_submodule(find_stem(model)).named_parameters()]
                      if kept else [])  # fmt: skip
    assert freeze_stem(create_model(architecture, 5, spec), "trained") is None


def test_convnext_branches_every_conv_after_the_stem():
    model = inject(create_model(CONVNEXT, 5, _spec(CONVNEXT)), rank=4)
    names = _branched(model)
    assert "features.stem.0" not in names and "features.stages.1.downsample.1" in names
    assert {n.rsplit(".", 1)[1] for n in names} >= {"conv_dw", "fc1", "fc2"}


def test_resnet_targets_are_todays_exactly():
    """Branching linear layers by default changes nothing for ResNets: their only Linear is the head."""
    spec = InputSpec.plain(3, 32)
    by_default = _branched(inject(create_model("resnet18", 5, spec)))
    convs_only = _branched(inject(create_model("resnet18", 5, spec), include_linear=False))
    assert by_default == convs_only and len(by_default) == 19


@pytest.mark.parametrize("architecture", [VIT, CONVNEXT])
def test_natural_path_trains_branches_and_head_only_and_export_loads_into_plain_timm(architecture):
    torch.manual_seed(0)
    spec = _spec(architecture)
    model = inject(create_model(architecture, 5, spec), rank=4)
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            nn.init.normal_(layer.lora_B, std=0.1)
    x = torch.rand(2, 3, 32, 32)
    natural_forward(model.train(), x).sum().backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all("lora_" in n or n.startswith("head.") for n in touched)
    model.eval()
    assert not torch.allclose(natural_forward(model, x), model(x), atol=1e-4)
    plain = _plain_timm(architecture, 5, 32)
    plain.load_state_dict(timm_state_dict(export(model)), strict=True)
    assert torch.allclose(plain(_normalised(x, spec)), model(x), atol=1e-5)


def test_timm_file_loads_strictly_with_a_new_head(vit_file):
    path, plain = vit_file
    model, record, report = load_classifier(path, architecture=VIT, num_classes=3, overrides=InputOverrides(size=32))
    assert record.architecture == VIT and record.num_classes == 3 and report.layout == "timm state dict"
    assert model.head.weight.abs().sum() == 0 and any("head not loaded" in n for n in report.notes)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(
        model.eval().forward_features(x),
        plain.forward_head(plain.forward_features(_normalised(x, record.input)), pre_logits=True),
        atol=1e-5,
    )


def test_timm_file_with_its_own_head_gives_the_plain_models_outputs(vit_file):
    path, plain = vit_file
    model, record, _ = load_classifier(path, architecture=VIT, overrides=InputOverrides(size=32))
    x = torch.rand(2, 3, 32, 32)
    assert record.num_classes == 10
    assert torch.allclose(model.eval()(x), plain(_normalised(x, record.input)), atol=1e-5)


def test_position_embedding_is_resampled_by_timms_own_filter(vit_file):
    path, _ = vit_file
    model, record, report = load_classifier(path, architecture=VIT, overrides=InputOverrides(size=64))
    assert record.input.size == 64 and model.features.pos_embed.shape[1] == 1 + (64 // 16) ** 2
    assert any("checkpoint_filter_fn" in n for n in report.notes)


def test_wrong_timm_model_and_missing_model_are_refused_in_one_line(vit_file):
    path, _ = vit_file
    with pytest.raises(CheckpointError, match="does not fit the model: missing") as wrong:
        load_classifier(path, architecture=CONVNEXT, overrides=InputOverrides(size=32))
    assert "\n" not in str(wrong.value)
    with pytest.raises(CheckpointError, match="cannot tell the architecture.*timm:NAME"):
        load_classifier(path)


def test_hub_snapshot_directory_names_its_model(tmp_path, vit_file):
    path, plain = vit_file
    (tmp_path / "model.safetensors").write_bytes(path.read_bytes())
    cfg = {"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "classifier": "head"}
    (tmp_path / "config.json").write_text(
        json.dumps({"architecture": "test_vit", "num_classes": 10, "pretrained_cfg": cfg})
    )
    model, record, report = load_classifier(tmp_path)
    assert record.architecture == VIT and record.input.size == 32 and report.layout == "timm hub snapshot"
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.eval()(x), plain(_normalised(x, record.input)), atol=1e-5)
    with pytest.raises(CheckpointError, match="holds a timm:test_vit"):
        load_classifier(tmp_path, architecture=CONVNEXT)


def test_a_model_that_cannot_take_the_images_is_refused_in_one_line_before_the_run(cli, tmp_path):
    """A ViT's 16-px patches do not fit 8-px digits: it fails at its first forward deep in timm. The
    command says so in one line, and an existing run it was asked to overwrite is kept."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "kept.txt").write_text("a finished run's file")
    result = cli("pretrain", "--dataset", "digits", "--model", "timm:vit_tiny_patch16_224", "--epochs", "1",
                 "--limit-train", "64", "--out", out, "--overwrite")  # fmt: skip
    assert result.exit_code == 2 and "does not take 1-channel 8x8 images" in result.output
    assert "Kernel size: (16 x 16)" in result.output and result.output.count("\n") == 1
    assert [path.name for path in out.iterdir()] == ["kept.txt"]
    check_takes_its_input(create_model(VIT, 10, _spec(VIT, 32)), VIT)  # 32 px, two patches a side: taken


def test_pretrain_builds_the_model_for_the_input_size_it_is_given(cli, tmp_path):
    """``--input-size`` lets a ViT pre-train on 8-px digits: the model takes 32-px images (the data are
    resized as they are batched), and fine-tuning from it adapts its data to that size too."""
    source, tuned = tmp_path / "source", tmp_path / "tuned"
    steps = ("--eps", "0.1", "--attack-steps", "1", "--limit-test", "20")
    result = cli("pretrain", "--dataset", "digits", "--model", "timm:test_vit", "--input-size", "32",
                 "--epochs", "1", "--limit-train", "128", "--out", source, *steps)  # fmt: skip
    assert result.exit_code == 0, result.output
    model, record, _ = load_classifier(source)
    assert model.spec.size == 32 and record.architecture == "timm:test_vit"
    assert model.features.patch_embed.grid_size == (2, 2)
    result = cli("finetune", "--checkpoint", source, "--dataset", "digits", "--classes", "0-4", "--epochs", "1",
                 "--limit-train", "128", "--out", tuned, "--val-attack-steps", "1", *steps)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_classifier(tuned)[0].spec.size == 32
