"""Smoke runs of the models users bring, on random weights and a handful of images: two AutoLoRa steps each.

A ResNet-50 in MadryLab's layout at 224 px (the paper's source architecture), and a timm ViT-Ti and
ConvNeXt through the CLI, each exported and loaded strictly into the plain model with equal outputs.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file

from autolora import api
from autolora.attacks import Threat
from autolora.data import DataConfig
from autolora.eval import EvalConfig
from autolora.models import load_classifier
from autolora.models.timm_models import timm_state_dict
from autolora.train.config import TrainConfig

# 8 training images, 2 held out for validation: batches of 4 and 2, so two steps per epoch.
TINY_RUN = ["--limit-train", "8", "--val-min", "2", "--batch-size", "4", "--limit-test", "2", "--epochs", "1"]
TINY_RUN += ["--recipe", "paper"]  # a fixed LR and a zero head: two steps, no LR search
TINY_RUN += ["--attack-steps", "1", "--scalar-samples", "4", "--device", "cpu", "--eps", "8/255"]


def _normalised(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.as_tensor(mean).view(1, -1, 1, 1)) / torch.as_tensor(std).view(1, -1, 1, 1)


def _epochs(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def folder_224(tmp_path_factory):
    """An image folder of 2 classes with 5 train and 2 test JPEGs each (64 px files, read at 224)."""
    root = tmp_path_factory.mktemp("folder")
    generator = torch.Generator().manual_seed(0)
    for part, count in (("train", 5), ("test", 2)):
        for label in ("a", "b"):
            (root / part / label).mkdir(parents=True)
            for index in range(count):
                pixels = torch.randint(0, 256, (64, 64, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(root / part / label / f"{index}.jpg")
    return root


def test_madrylab_resnet50_autolora_at_224(tmp_path, folder_224):
    torch.manual_seed(0)
    state = torchvision.models.resnet50().state_dict()
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    layout = {f"module.model.{k}": v for k, v in state.items()} | {
        f"module.attacker.model.{k}": v for k, v in state.items()
    }
    layout |= {"module.normalizer.new_mean": mean.view(3, 1, 1), "module.normalizer.new_std": std.view(3, 1, 1)}
    torch.save({"model": layout, "epoch": 90}, tmp_path / "madry_r50.pt")
    data = DataConfig(f"imagefolder:{folder_224}", limit_train=6, limit_test=2, val_min=2)  # 4 train: 2 steps of 2
    config = TrainConfig(
        method="autolora",
        epochs=1,
        lr=0.01,
        batch_size=2,
        recipe="paper",
        threat=Threat(8 / 255),
        attack_steps=1,
        scalar_samples=2,
        evaluation=EvalConfig(("clean",)),
    )
    summary = api.finetune(tmp_path / "madry_r50.pt", data, config, tmp_path / "run", device="cpu")
    assert summary["stop_reason"] and len(_epochs(tmp_path / "run")) == 1
    model, record, _ = load_classifier(tmp_path / "run")
    assert record.architecture == "resnet50" and record.input.size == 224 and model.num_classes == 2
    exported = load_file(str(tmp_path / "run" / "model.safetensors"))
    plain = torchvision.models.resnet50(num_classes=2).eval()
    plain.load_state_dict(
        {("fc." + k[5:] if k.startswith("head.") else k.removeprefix("features.")): v for k, v in exported.items()}
    )
    x = torch.rand(2, 3, 224, 224)
    assert torch.allclose(plain(_normalised(x, mean, std)), model.eval()(x), atol=1e-4)
    assert not torch.equal(exported["features.layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])  # it trained


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "convnext_atto"])
def test_timm_autolora_through_the_cli_exports_to_plain_timm(cli, tmp_path, name):
    torch.manual_seed(0)
    kwargs = {"img_size": 32} if name.startswith("vit") else {}
    source = timm.create_model(name, num_classes=1000, **kwargs)
    save_file(source.state_dict(), str(tmp_path / "source.safetensors"))
    out = tmp_path / "run"
    result = cli(
        "finetune", "--checkpoint", tmp_path / "source.safetensors", "--model", f"timm:{name}", "--input-size", "32",
        "--dataset", "digits", "--classes", "0-4", "--out", out, *TINY_RUN,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(_epochs(out)) == 1
    model, record, _ = load_classifier(out)
    assert record.architecture == f"timm:{name}" and model.num_classes == 5
    plain = timm.create_model(name, num_classes=5, **kwargs).eval()
    plain.load_state_dict(timm_state_dict(model), strict=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(plain(_normalised(x, record.input.mean, record.input.std)), model.eval()(x), atol=1e-5)
    trained = load_file(str(out / "model.safetensors"))
    assert not any("lora_" in k for k in trained)
    assert not torch.equal(
        trained["features.stem.0.weight" if "convnext" in name else "features.patch_embed.proj.weight"],
        source.state_dict()["stem.0.weight" if "convnext" in name else "patch_embed.proj.weight"],
    )
