"""The command line: help for every command, the registries, a tiny pretrain -> evaluate, finetune per method."""

from __future__ import annotations

import json

import pytest

from autolora.cli import app
from autolora.models import save_run_model

from .helpers import needs_fashion_mnist

COMMANDS = ["pretrain", "finetune", "evaluate", "demo", "report", "models", "datasets", "methods", "diagnose"]


def _registered() -> set[str]:
    return {c.name for c in app.registered_commands}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(cli, name):
    if name not in _registered():
        pytest.fail(f"command {name} is not registered")
    result = cli(name, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "autolora" in result.output


@pytest.mark.parametrize("name", ["pretrain", "finetune", "evaluate"])
def test_data_commands_share_the_common_options(cli, name):
    text = cli(name, "--help").output
    for option in ("--seed", "--device", "--data-dir", "--download", "--dataset", "--classes", "--limit-test", "--eps"):
        assert option in text


def test_models_and_datasets_list_the_registries(cli):
    models = cli("models").output
    for name in ("resnet8", "resnet20", "resnet18", "resnet34", "resnet50", "wide_resnet50_2"):
        assert name in models
    datasets = cli("datasets").output
    for name in ("fashion-mnist", "digits", "mnist", "cifar10", "cifar100", "svhn", "stl10", "imagefolder:PATH"):
        assert name in datasets


@needs_fashion_mnist
def test_tiny_pretrain_then_evaluate(cli, tmp_path):
    run = tmp_path / "pre"
    result = cli(
        "pretrain",
        "--dataset",
        "fashion-mnist",
        "--model",
        "resnet8",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "64",
        "--eps",
        "0.1",
        "--attack-steps",
        "1",
        "--out",
        run,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "summary.json", "curves.png"):
        assert (run / name).exists()
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["architecture"] == "resnet8" and config["model"]["input"]["size"] == 28
    assert "autolora pretrain" in config["provenance"]["command"]
    report = tmp_path / "r.json"
    result = cli(
        "evaluate",
        "--checkpoint",
        run,
        "--dataset",
        "fashion-mnist",
        "--limit-test",
        "32",
        "--eps",
        "8/255",
        "--attacks",
        "clean,pgd,autoattack",
        "--autoattack-version",
        "fast",
        "--pgd-steps",
        "5",
        "--json",
        report,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["n"] == 32 and data["eps"] == pytest.approx(8 / 255)
    assert 0.0 <= data["autoattack_acc"] <= data["pgd_acc"] <= data["clean_acc"] <= 1.0
    assert data["autoattack"]["version"] == "fast" and data["pgd"]["steps"] == 5
    assert set(data["seconds"]) == {"clean", "pgd", "autoattack"}


@pytest.fixture
def source_run(tmp_path, tiny_model):
    path = tmp_path / "source"
    save_run_model(path, tiny_model, "resnet8")
    return path


@pytest.mark.parametrize("method", ["autolora", "vanilla", "pgd-at-ft", "twins", "roli", "slf", "alf", "aff"])
def test_tiny_finetune_for_every_method(cli, tmp_path, source_run, method):
    out = tmp_path / method
    epochs = ["--epochs", "2"]  # autolora decides its own length: for it this is the cap
    result = cli(
        "finetune",
        "--method",
        method,
        "--checkpoint",
        source_run,
        "--dataset",
        "digits",
        "--classes",
        "0-4",
        "--limit-train",
        "180",
        "--limit-test",
        "40",
        "--eps",
        "0.1",
        "--attack-steps",
        "1",
        "--out",
        out,
        "--device",
        "cpu",
        "--batch-size",
        "32",
        *epochs,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    required = {"epoch", "lr", "train_loss", "val_clean_acc", "val_robust_acc", "seconds"}
    assert required <= set(rows[0])
    if method == "autolora":
        assert 0.0 <= rows[0]["nat_branch_acc"] <= 1.0 and rows[0]["lambda1"] == pytest.approx(
            1 - rows[0]["nat_branch_acc"]
        )
    else:
        assert "lambda1" not in rows[0]  # a method's columns are its own
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "clean_acc",
        "pgd_acc",
        "epochs",
        "stop_reason",
        "time_train_s",
        "time_scalars_s",
        "time_validation_s",
        "time_test_s",
    ):
        assert key in summary
    assert summary["pgd_acc"] <= summary["clean_acc"]
    assert summary["method"] == ("vanilla" if method == "aff" else method)  # aff is the paper's name for vanilla
    head_start = summary["head_start"]
    assert head_start["head_init"] == ("robust-linear" if method == "roli" else "zero")
    if method == "roli":
        assert head_start["steps"] >= 100 and 0.0 <= head_start["train_robust_acc"] <= 1.0
    assert (out / "curves.png").stat().st_size > 1000
    from safetensors.torch import load_file

    exported = load_file(str(out / "model.safetensors"))
    assert not any("lora_" in key or "base_layer" in key for key in exported)
    assert exported["head.weight"].shape[0] == 5
    evaluated = cli(
        "evaluate",
        "--checkpoint",
        out,
        "--dataset",
        "digits",
        "--classes",
        "0-4",
        "--limit-test",
        "20",
        "--eps",
        "0.1",
        "--pgd-steps",
        "2",
    )
    assert evaluated.exit_code == 0, evaluated.output


def test_finetune_refuses_a_pretraining_method(cli, tmp_path, source_run):
    result = cli("finetune", "--checkpoint", source_run, "--dataset", "digits", "--out", tmp_path / "x",
                 "--method", "pgd-at")  # fmt: skip
    assert result.exit_code == 2 and "fine-tune with one of" in result.output


def test_evaluate_corruptions_reports_which_ran(cli, tmp_path, source_run):
    report = tmp_path / "c.json"
    result = cli("evaluate", "--checkpoint", source_run, "--dataset", "digits", "--limit-test", "20",
                 "--attacks", "clean,corruptions", "--corruptions", "gaussian_noise,saturate,contrast", "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    table = data["corruptions"]
    assert table["ran"] == ["gaussian_noise", "contrast"] and table["skipped"] == {"saturate": "needs RGB images"}
    assert len(table["by_severity"]["contrast"]) == 5 and 0.0 <= data["corruption_acc"] <= 1.0
    bad = cli("evaluate", "--checkpoint", source_run, "--dataset", "digits", "--attacks", "corruptions",
              "--corruptions", "snow-storm")  # fmt: skip
    assert bad.exit_code == 2
