"""The command line: help for every command, the registries, a tiny pretrain -> evaluate, finetune per method."""

from __future__ import annotations

import json
import re

import pytest
import torch
import typer
from safetensors.torch import load_file
from typer.testing import CliRunner

from autolora import __version__
from autolora.cli import app
from autolora.demo import default_checkpoint
from autolora.models import save_run_model
from autolora.train.progress import EPOCH_HEADER, format_epoch

from .helpers import needs_fashion_mnist

COMMANDS = [
    "pretrain", "finetune", "evaluate", "demo", "report", "models", "datasets", "methods", "checkpoints", "diagnose",
]  # fmt: skip


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
    machine = config["provenance"]["machine"]  # CPU results differ between CPU kernels in the last bits
    assert machine["cpu"] and machine["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
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


def assert_epochs_and_tables_fit_80_columns(output: str) -> None:
    lines = output.splitlines()
    assert EPOCH_HEADER in lines
    epochs = [line for line in lines if re.match(r"\s+\d+\s+[\d.e-]+\s", line) or line.lstrip().startswith("↳")]
    tables = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert epochs and tables and max(len(line) for line in [*epochs, *tables]) <= 80, output


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
    # autolora's default recipe makes an epoch at least 8 optimizer steps: both passes in one
    assert [r["epoch"] for r in rows] == ([1] if method == "autolora" else [1, 2])
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
    assert_epochs_and_tables_fit_80_columns(result.output)


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


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_help_fits_80_columns_and_names_every_option_in_full(runner, name):
    result = runner.invoke(app, [name, "--help"] if name else ["--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "<bool>" not in result.output and "…" not in result.output
    group = typer.main.get_command(app)
    command = group.commands[name] if name else group
    for param in command.params:
        if param.param_type_name == "argument":
            continue
        for opt in (*param.opts, *param.secondary_opts):
            assert any(opt in line.split() for line in lines), f"{opt} missing or cut in {name} --help"


def test_an_epoch_line_fits_80_columns():
    row = {"epoch": 120, "lr": 1.5625e-05, "lambda1": 0.048, "lambda2": 5.712, "train_loss": 12.34567,
           "val_clean_acc": 1.0, "val_robust_acc": 0.789, "seconds": 1234.5,
           "event": "condition 1: 2/4 epochs improved; learning rate fell below 1e-05"}  # fmt: skip
    lines = [EPOCH_HEADER, *format_epoch(row, 7200.0).splitlines()]
    assert max(len(line) for line in lines) <= 80
    assert lines[2].strip() == "↳ " + row["event"]
    header, values = lines[0].split(), lines[1].split()
    assert values[header.index("λ1")] == "0.048" and values[-1] == "≤2h00m"


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.output.strip() == f"autolora {__version__}"


def test_the_shipped_checkpoint_is_listed_and_nameable(cli, tmp_path):
    assert "fmnist-resnet8" in cli("checkpoints").output
    report = tmp_path / "e.json"
    result = cli("evaluate", "--checkpoint", "fmnist-resnet8", "--dataset", "digits", "--limit-test", "20",
                 "--attacks", "clean", "--json", report)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["checkpoint"] == str(default_checkpoint())
    assert "--dataset digits overrides what the run recorded: fashion-mnist" in " ".join(result.output.split())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A one-epoch vanilla fine-tune of the shipped model on a few digits, eps 0.1, seed 3."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = CliRunner().invoke(app, [str(a) for a in (
        "finetune", "--method", "vanilla", "--epochs", "1", "--checkpoint", "fmnist-resnet8", "--dataset", "digits",
        "--eps", "0.1", "--limit-train", "200", "--val-min", "20", "--limit-test", "60", "--attack-steps", "1",
        "--batch-size", "32", "--seed", "3", "--device", "cpu", "--out", out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_a_run_directory_reproduces_its_summary(cli, digits_run, tmp_path):
    report = tmp_path / "e.json"
    result = cli("evaluate", "--checkpoint", digits_run, "--json", report, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "overrides" not in result.output
    summary, data = json.loads((digits_run / "summary.json").read_text()), json.loads(report.read_text())
    assert (data["dataset"], data["n"], data["eps"], data["norm"]) == ("digits", 60, 0.1, "Linf")
    assert data["clean_acc"] == summary["clean_acc"] and data["pgd_acc"] == summary["pgd_acc"]
    assert data["input"] == {"channels": 1, "size": 28, "mean": [0.286], "std": [0.353]}
    assert "eps 0.1 (Linf), n=60 test images, input 1x28x28 (mean 0.286, std 0.353)" in result.output
    assert summary["evaluation"]["input"] == data["input"] and data["overrides"] == []


def test_evaluate_says_which_recorded_setting_an_option_overrides(cli, digits_run, tmp_path):
    report = tmp_path / "e.json"
    result = cli("evaluate", "--checkpoint", digits_run, "--eps", "8/255", "--limit-test", "60", "--attacks", "clean",
                 "--json", report, "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if "overrides" in line]
    assert said == ["warning: --eps 8/255 overrides what the run recorded: 0.1"]
    assert json.loads(report.read_text())["eps"] == pytest.approx(8 / 255)


def test_a_guessed_input_spec_is_said_and_recorded(cli, tmp_path):
    weights = load_file(str(default_checkpoint() / "model.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in weights.items()}}, tmp_path / "foreign.pt")
    report = tmp_path / "e.json"
    result = cli("evaluate", "--checkpoint", tmp_path / "foreign.pt", "--dataset", "fashion-mnist", "--limit-test",
                 "20", "--attacks", "clean", "--json", report, "--dataset", "digits")  # fmt: skip
    assert result.exit_code == 0, result.output
    guess = "guessed the input of foreign.pt: 32 px, mean 0, std 1 (from its 3x3 stem: CIFAR-style); set it with --input-size, --mean, --std"
    assert f"warning: {guess}" in result.output.splitlines()
    data = json.loads(report.read_text())
    assert data["input_guess"] == guess and data["input"]["size"] == 32
    exact = cli("evaluate", "--checkpoint", tmp_path / "foreign.pt", "--dataset", "digits", "--limit-test", "20",
                "--attacks", "clean", "--input-size", "28", "--mean", "0.286", "--std", "0.353")  # fmt: skip
    assert exact.exit_code == 0 and "guessed" not in exact.output
