"""Checkpoint layouts, each written as a small fake and loaded; wrong ones refused clearly."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from autolora.errors import CheckpointError
from autolora.inputs import IMAGENET_MEAN, InputSpec
from autolora.models import InputOverrides, load_classifier, save_run_model
from autolora.models.checkpoint import strip_prefixes


def _same_features(a, b, spec) -> bool:
    x = torch.rand(2, spec.channels, spec.size, spec.size)
    a.eval(), b.eval()
    return torch.allclose(a.forward_features(x), b.forward_features(x), atol=1e-5)


def _torchvision_state(name="resnet18", num_classes=10, small=True):
    model = getattr(torchvision.models, name)(num_classes=num_classes)
    if small:
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    return model.state_dict()


def test_run_directory_round_trip(tmp_path, tiny_model):
    save_run_model(tmp_path / "run", tiny_model, "resnet8", {"note": "x"})
    model, record, report = load_classifier(tmp_path / "run")
    assert record.architecture == "resnet8" and record.num_classes == 10
    assert record.input == tiny_model.spec and record.small_stem is True
    assert report.layout == "autolora run directory"
    assert _same_features(model, tiny_model, tiny_model.spec)
    assert torch.equal(model.head.weight, tiny_model.head.weight)


def test_run_directory_with_new_class_count_gets_zero_head(tmp_path, tiny_model):
    save_run_model(tmp_path / "run", tiny_model, "resnet8")
    model, record, report = load_classifier(tmp_path / "run", num_classes=3)
    assert model.num_classes == 3 and model.head.weight.abs().sum() == 0
    assert any("head not loaded" in note for note in report.notes)


def test_torchvision_safetensors_is_recognised(tmp_path):
    save_file(_torchvision_state(), str(tmp_path / "tv.safetensors"))
    model, record, report = load_classifier(tmp_path / "tv.safetensors")
    assert record.architecture == "resnet18" and record.input.size == 32 and record.small_stem
    assert record.input.mean == (0.0, 0.0, 0.0) and record.input.std == (1.0, 1.0, 1.0)
    torchvision_model = torchvision.models.resnet18(num_classes=10)
    torchvision_model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    torchvision_model.maxpool = torch.nn.Identity()
    torchvision_model.load_state_dict(load_file(str(tmp_path / "tv.safetensors")))
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.eval()(x), torchvision_model.eval()(x), atol=1e-5)


def test_torch_file_under_state_dict_with_module_prefix(tmp_path):
    state = _torchvision_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ddp.pt")
    model, record, report = load_classifier(tmp_path / "ddp.pt")
    assert "stripped prefix 'module.'" in report.notes
    assert torch.equal(model.features.layer1[0].bn1.running_mean, state["layer1.0.bn1.running_mean"])


@pytest.mark.parametrize("prefix", ["model.", "backbone.", "_orig_mod."])
def test_wrapper_prefixes_under_model_key(tmp_path, prefix):
    state = _torchvision_state()
    torch.save({"model": {prefix + k: v for k, v in state.items()}}, tmp_path / "ckpt.pth")
    model, _, report = load_classifier(tmp_path / "ckpt.pth")
    assert f"stripped prefix {prefix!r}" in report.notes
    assert torch.equal(model.head.weight, state["fc.weight"])


def test_prefix_stripped_only_when_it_prefixes_every_key():
    state = {"model.a": torch.zeros(1), "head.b": torch.zeros(1)}
    assert strip_prefixes(state)[0] == state


def test_imagenet_style_stem_implies_224_and_imagenet_statistics(tmp_path):
    save_file(_torchvision_state("resnet50", 1000, small=False), str(tmp_path / "r50.safetensors"))
    model, record, report = load_classifier(tmp_path / "r50.safetensors", num_classes=5)
    assert record.architecture == "resnet50" and record.input.size == 224 and record.input.mean == IMAGENET_MEAN
    assert record.small_stem is False and model.num_classes == 5
    smaller, rec32, _ = load_classifier(tmp_path / "r50.safetensors", overrides=InputOverrides(size=64))
    assert rec32.input.size == 64 and smaller.features.conv1.kernel_size == (7, 7)


def test_madrylab_robustness_checkpoint(tmp_path):
    state = _torchvision_state("resnet18", 10, small=False)
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2023, 0.1994, 0.2010])
    layout = {f"module.model.{k}": v for k, v in state.items()}
    layout |= {f"module.attacker.model.{k}": v.clone() for k, v in state.items()}
    layout |= {
        "module.normalizer.new_mean": mean.view(3, 1, 1),
        "module.normalizer.new_std": std.view(3, 1, 1),
        "module.attacker.normalizer.new_mean": mean.view(3, 1, 1),
        "module.attacker.normalizer.new_std": std.view(3, 1, 1),
    }
    torch.save({"model": layout, "epoch": 90, "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "madry.pt")
    model, record, report = load_classifier(tmp_path / "madry.pt")
    assert report.layout == "MadryLab robustness"
    assert record.input.mean == pytest.approx(tuple(mean.tolist()))
    assert record.input.std == pytest.approx(tuple(std.tolist()))
    assert torch.equal(model.features.conv1.weight, state["conv1.weight"])


def test_autoattack_robustbench_cifar_resnet18(tmp_path):
    state = _torchvision_state()
    renamed = {}
    for key, value in state.items():
        key = key.replace("downsample.", "shortcut.")
        renamed[key.replace("fc.", "linear.") if key.startswith("fc.") else key] = value
    torch.save(renamed, tmp_path / "aa.pt")
    model, record, report = load_classifier(tmp_path / "aa.pt")
    assert record.architecture == "resnet18"
    assert "renamed shortcut -> downsample, linear -> fc" in report.notes
    assert torch.equal(model.features.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])
    assert torch.equal(model.head.bias, state["fc.bias"])


def test_cifar_resnet_foreign_file_with_input_override(tmp_path, tiny_model):
    save_file(tiny_model.state_dict(), str(tmp_path / "r8.safetensors"))
    overrides = InputOverrides(size=28, mean=tiny_model.spec.mean, std=tiny_model.spec.std)
    model, record, _ = load_classifier(tmp_path / "r8.safetensors", overrides=overrides)
    assert record.architecture == "resnet8" and record.input == tiny_model.spec
    assert _same_features(model, tiny_model, record.input)


def test_wrong_architecture_is_refused(tmp_path):
    save_file(_torchvision_state(), str(tmp_path / "tv.safetensors"))
    with pytest.raises(CheckpointError, match="holds a resnet18, but the model was given as resnet34"):
        load_classifier(tmp_path / "tv.safetensors", architecture="resnet34")


def test_missing_and_shape_mismatched_keys_are_reported(tmp_path):
    state = _torchvision_state()
    broken = dict(state)
    del broken["layer1.0.conv1.weight"]
    save_file(broken, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="missing 1 keys"):
        load_classifier(tmp_path / "missing.safetensors", architecture="resnet18")
    wrong = dict(state)
    wrong["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    save_file(wrong, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="layer1.0.conv1.weight has shape"):
        load_classifier(tmp_path / "shape.safetensors")


def test_unrecognisable_layout_asks_for_model(tmp_path):
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointError, match="pass --model"):
        load_classifier(tmp_path / "odd.safetensors")


def test_missing_truncated_and_empty_files(tmp_path, tiny_model):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_classifier(tmp_path / "nothing.pt")
    save_run_model(tmp_path / "run", tiny_model, "resnet8")
    data = (tmp_path / "run" / "model.safetensors").read_bytes()
    (tmp_path / "run" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_classifier(tmp_path / "run")
    torch.save(tiny_model.state_dict(), tmp_path / "t.pt")
    (tmp_path / "t.pt").write_bytes((tmp_path / "t.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_classifier(tmp_path / "t.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_classifier(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="not a run directory"):
        load_classifier(tmp_path)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
        (b'{"model": {"architecture": "resnet8"}}', "a JSON file"),
        (b"[tool.ruff]\nline-length = 120\n", "a text file"),
        (b"hello\n", "a text file"),
        (b"\x01\x00\x02", "a binary file of unknown format"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, content, kind):
    (tmp_path / "model.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=f"is not a checkpoint but {kind};"):
        load_classifier(tmp_path / "model.pt")


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "evil": _Payload(str(marker))}, tmp_path / "evil.pt")
    # the global's name comes from torch's error text, whose wording varies between versions (torch 2.11
    # on a GPU machine failed the exact name; no traceback came back): the refusal itself must not vary
    named = r"names _?io\.open, code|holds objects other than tensors"
    with pytest.raises(CheckpointError, match=rf"refusing to load .*evil.pt: its pickle ({named})"):
        load_classifier(tmp_path / "evil.pt")
    assert not marker.exists()


def test_spec_overrides(tmp_path, tiny_model):
    save_run_model(tmp_path / "run", tiny_model, "resnet8")
    _, record, _ = load_classifier(tmp_path / "run", overrides=InputOverrides(mean=(0.1,), std=(0.2,)))
    assert record.input == InputSpec(1, 28, (0.1,), (0.2,))
