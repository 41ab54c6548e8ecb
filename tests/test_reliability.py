"""Resume after SIGKILL, atomic run directories, untrusted files, one-line refusals, NaN losses."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autolora.attacks import Threat
from autolora.data import DataConfig, prepare_data
from autolora.errors import ConfigError
from autolora.eval import EvalConfig, check_accuracies
from autolora.models import load_classifier, save_run_model
from autolora.train import TrainConfig, Trainer
from autolora.train.config import comparable_key
from autolora.train.methods.autolora import AutoLoRa
from autolora.train.run_dir import RunDirectory

TINY_FINETUNE = [
    "--dataset", "digits", "--classes", "0-4", "--limit-train", "240", "--limit-test", "40", "--eps", "0.1",
    "--attack-steps", "1", "--batch-size", "32", "--device", "cpu", "--seed", "3",
]  # fmt: skip


def _env() -> dict[str, str]:
    """One thread count for every run a test compares: a sum over another number of threads rounds differently."""
    return os.environ | {"OMP_NUM_THREADS": "2"}


def _autolora(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "autolora", *map(str, args)], capture_output=True, text=True, env=_env(), check=check
    )


def _without_timing(summary: dict) -> dict:
    drop = {k for k in summary if k.startswith("time_")}
    result = {k: v for k, v in summary.items() if k not in drop}
    result["evaluation"] = {k: v for k, v in summary["evaluation"].items() if k != "seconds"}
    return result


def _rows_without_timing(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture
def source(tmp_path, tiny_model) -> Path:
    save_run_model(tmp_path / "source", tiny_model, "resnet8")
    return tmp_path / "source"


@pytest.mark.slow
def test_sigkill_then_resume_ends_where_an_uninterrupted_run_ends(tmp_path, source):
    common = ["finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "6"]
    _autolora(*common, "--out", tmp_path / "whole")
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "autolora", *map(str, common), "--out", str(killed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
    )  # fmt: skip
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = metrics.read_text().count("\n")
    assert 1 <= done < 6, "the run should be killed mid-way"
    assert not (killed / "summary.json").exists()
    refused = _autolora(*common, "--out", killed, check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = _autolora(*common, "--out", killed, "--resume")
    assert f"resumed after epoch {done}" in resumed.stdout
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    again = json.loads((killed / "summary.json").read_text())
    assert _without_timing(again) == _without_timing(whole)
    assert _rows_without_timing(killed / "metrics.jsonl") == _rows_without_timing(tmp_path / "whole" / "metrics.jsonl")
    assert [r["epoch"] for r in _rows_without_timing(metrics)] == list(range(1, whole["epochs"] + 1))


def test_resume_refuses_other_settings(tmp_path, source):
    common = ["finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "1", "--out", tmp_path / "run"]
    _autolora(*common)
    other = _autolora(*common[:-2], "--rank", "4", "--out", tmp_path / "run", "--resume", check=False)
    assert other.returncode == 2 and "other settings" in other.stderr


def test_resume_refuses_a_run_whose_recipe_now_chooses_another_schedule(tmp_path, source, cli, monkeypatch):
    common = ["finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "1", "--out", tmp_path / "run"]
    cli(*common)
    monkeypatch.setattr(AutoLoRa, "defaults", replace(AutoLoRa.defaults, schedule="auto"))  # a newer default
    refused = cli(*common, "--resume")
    assert refused.exit_code == 2 and "other settings" in refused.output


@pytest.mark.parametrize(
    ("name", "off", "on"),
    [
        ("average_epochs", 0, 1),
        ("clean_share", 0.0, 0.5),
        ("attack_start", "normal", "uniform"),
        ("natural_batchnorm", "shared", "own"),
        ("fixed_teacher", False, True),
        ("natural_weight", "lambda1", "full"),
    ],  # fmt: skip
)
def test_a_setting_added_later_is_compared_on_resume_only_where_it_is_on(name, off, on):
    key = TrainConfig(method="autolora", **{name: off}).resume_key()  # "off": every run's value before it existed
    assert name not in key
    before, since = dict(key), dict(key, **{name: off})  # written before the setting existed; since, recording it
    assert comparable_key(before) == comparable_key(since) == key
    assert comparable_key(dict(key, **{name: on})) != key
    assert TrainConfig(method="autolora", **{name: on}).resume_key()[name] == on


def _error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    *warnings, error = lines
    assert error.startswith("error:") and all(w.startswith("warning:") for w in warnings), result.stderr
    return error


@pytest.fixture
def bad_inputs(tmp_path, source):
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "notes.txt").write_text("epoch 1: loss 0.5\n")
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "results.json").write_text('{"clean_acc": 0.9}')
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((source / "model.safetensors").read_bytes()[:500])
    finetune = ["finetune", "--checkpoint", source, "--dataset", "digits", "--out", tmp_path / "out", "--device", "cpu"]
    evaluate = ["evaluate", "--checkpoint", source, "--dataset", "digits", "--device", "cpu"]
    return {
        "missing checkpoint": (
            ["evaluate", "--checkpoint", tmp_path / "nope.pt", "--dataset", "digits"],
            "does not exist",
        ),
        "truncated checkpoint": (["evaluate", "--checkpoint", truncated, "--dataset", "digits"], "truncated"),
        **{
            f"{kind} as checkpoint": (
                ["evaluate", "--checkpoint", tmp_path / name, "--dataset", "digits"],
                f"is not a checkpoint but {kind}",
            )
            for name, kind in (
                ("notes.txt", "a text file"),
                ("figure.png", "a PNG image"),
                ("results.json", "a JSON file"),
                ("pyproject.toml", "a text file"),
            )
        },
        "text file, no data set named": (["evaluate", "--checkpoint", tmp_path / "notes.txt"], "a text file"),
        "other architecture": (
            [*evaluate, "--model", "resnet20"],
            "holds a resnet8, but the model was given as resnet20",
        ),
        "other class count": ([*evaluate, "--classes", "0-4"], "classifies 10 classes but digits has 5"),
        "unknown dataset": ([*evaluate[:3], "--dataset", "imagenet-9"], "unknown dataset 'imagenet-9'"),
        "unknown model": (
            ["pretrain", "--dataset", "digits", "--model", "vgg7", "--out", tmp_path / "p"],
            "model='vgg7'",
        ),
        "unknown method": ([*finetune, "--method", "magic"], "method='magic'"),
        "negative eps": ([*evaluate, "--eps", "-0.1"], "eps='-0.1' is invalid"),
        "eps not a number": ([*evaluate, "--eps", "eight"], "eps='eight' is invalid"),
        "eps above 1": ([*evaluate, "--eps", "300/255"], "eps='300/255' is invalid"),
        "limit-train 0": ([*finetune, "--limit-train", "0"], "limit-train=0 is invalid"),
        "missing image folder": (
            [*evaluate[:3], "--dataset", f"imagefolder:{tmp_path / 'none'}"],
            "no train/ subfolder",
        ),
        "output under a file": ([*finetune[:-4], "--out", tmp_path / "a-file" / "run"], "is a file"),
        "image size cannot be adapted": (
            [
                "finetune",
                "--checkpoint",
                _imagenet_checkpoint(tmp_path),
                "--dataset",
                "digits",
                "--out",
                tmp_path / "x",
                "--device",
                "cpu",
            ],
            "cannot be adapted",
        ),  # fmt: skip
    }


def _imagenet_checkpoint(tmp_path: Path) -> Path:
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    path = tmp_path / "r18-imagenet.safetensors"
    save_file(resnet18(num_classes=10).state_dict(), str(path))
    return path


@pytest.mark.slow
def test_every_bad_input_gets_one_clear_line(bad_inputs):
    for name, (args, expected) in bad_inputs.items():
        message = _error_line(_autolora(*args, check=False))
        assert expected in message, f"{name}: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_refused(source):
    message = _error_line(_autolora("evaluate", "--checkpoint", source, "--dataset", "digits", "--device", "cuda",
                                    check=False))  # fmt: skip
    assert "no CUDA GPU" in message


def test_debug_shows_the_traceback(tmp_path):
    result = _autolora("evaluate", "--checkpoint", tmp_path / "nope", "--dataset", "digits", "--debug", check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_an_existing_run_is_neither_overwritten_nor_lost(tmp_path, source):
    run = tmp_path / "run"
    _autolora("finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "1", "--out", run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    refused = _autolora("finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "1", "--out", run,
                        check=False)  # fmt: skip
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    replaced = _autolora("finetune", "--checkpoint", source, *TINY_FINETUNE, "--epochs", "1", "--out", run,
                         "--overwrite", "--seed", "4")  # fmt: skip
    assert replaced.returncode == 0


def test_malicious_pickle_through_the_cli_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": Payload()}, tmp_path / "evil.pt")
    message = _error_line(_autolora("evaluate", "--checkpoint", tmp_path / "evil.pt", "--dataset", "digits",
                                    check=False))  # fmt: skip
    assert "refusing to load" in message and "names posix.system" in message and not marker.exists()


def test_run_files_are_written_atomically(tmp_path, tiny_model, monkeypatch):
    save_run_model(tmp_path / "run", tiny_model, "resnet8")
    original = (tmp_path / "run" / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    monkeypatch.setattr("autolora.fileio.save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_run_model(tmp_path / "run", tiny_model, "resnet8")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "model.safetensors"]
    load_classifier(tmp_path / "run")


class _ScaledAtEpoch:
    """Wraps an objective and scales the loss of the first batch of one epoch by ``factor`` (NaN: a NaN
    loss); ``onwards``: every batch from that epoch on (a loss that changes scale)."""

    def __init__(self, objective, trainer, epoch, factor=float("nan"), onwards=False):
        self.objective, self.trainer, self.epoch, self.factor = objective, trainer, epoch, factor
        self.onwards, self.scaled = onwards, False

    def __call__(self, model, x, y):
        output = self.objective(model, x, y)
        epoch = self.trainer.schedule.epoch + 1
        if (epoch == self.epoch and not self.scaled) or (self.onwards and epoch >= self.epoch):
            output.loss = output.loss * self.factor
            self.scaled = math.isfinite(self.factor)  # a NaN epoch ends at its first batch anyway
        return output


@pytest.mark.parametrize(("method", "expect_continue"), [("autolora", True), ("vanilla", False)])
def test_a_nan_loss_stops_the_epoch_and_rolls_back(tmp_path, tiny_model, method, expect_continue):
    data = prepare_data(DataConfig("digits", classes="0-4", limit_train=200, limit_test=30, seed=0))
    tiny_model.reset_classifier(5)
    config = TrainConfig(method=method, recipe="paper", epochs=4, lr=0.05, batch_size=50, threat=Threat(0.1),
                         attack_steps=1)  # fmt: skip
    run = RunDirectory(tmp_path / method)
    run.open()
    trainer = Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))
    trainer.method.objective = _ScaledAtEpoch(trainer.method.objective, trainer, epoch=2)
    summary = trainer.fit()
    rows = trainer.metrics
    assert "non-finite loss in epoch 2" in rows[1]["event"] and rows[1]["val_robust_acc"] is None
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    if expect_continue:
        assert len(rows) == 4 and rows[2]["lr"] == pytest.approx(0.025)  # halved, rolled back, went on
    else:
        assert len(rows) == 2 and summary["stop_reason"].startswith("non-finite loss")
    assert json.loads((run.path / "summary.json").read_text())["clean_acc"] >= 0


def _spike_ruled_trainer(tmp_path, tiny_model, epochs, batch_size):
    """AutoLoRa (the paper's recipe) with the spike rule on, on 100 training images of digits 0-4."""
    data = prepare_data(DataConfig("digits", classes="0-4", limit_train=200, limit_test=30, seed=0))
    tiny_model.reset_classifier(5)
    config = TrainConfig(method="autolora", recipe="paper", epochs=epochs, lr=0.05, batch_size=batch_size,
                         threat=Threat(0.1), attack_steps=1, spike_ratio=5.0, val_metric="robust_loss")  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    return Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))


def test_a_gradient_spike_in_an_epoch_that_does_no_good_halves_and_rolls_back(tmp_path, tiny_model):
    trainer = _spike_ruled_trainer(tmp_path, tiny_model, epochs=5, batch_size=25)
    assert len(trainer.train_loader) * 2 == 8  # epoch 3's first step is the first with 8 steps before it
    trainer.method.objective = _ScaledAtEpoch(trainer.method.objective, trainer, epoch=3, factor=30.0)
    trainer.fit()
    rows = trainer.metrics
    assert rows[1]["gradient_spike"] is None and 0 < rows[3]["gradient_spike"] < 5  # none before, none after
    assert rows[2]["val_robust_loss"] > rows[1]["val_robust_loss"]  # the scaled step set the model back
    assert "gradient spike in epoch 3" in rows[2]["event"]
    assert rows[2]["gradient_spike"] > 10 and rows[3]["lr"] == pytest.approx(0.025) and not rows[2]["best"]


@pytest.mark.parametrize("reweighed", [True, False])
def test_a_loss_reweighed_is_not_read_as_a_gradient_spike(tmp_path, tiny_model, reweighed):
    trainer = _spike_ruled_trainer(tmp_path, tiny_model, epochs=3, batch_size=12)
    assert len(trainer.train_loader) >= 8  # epoch 2's first step has a full window before it
    method = trainer.method
    # from epoch 2 on every batch weighs 20 times more, as AutoLoRa's λ2 does at its first measurement
    method.objective = _ScaledAtEpoch(method.objective, trainer, epoch=2, factor=20.0, onwards=True)
    own_weight, own_begin, epoch_begun = method.loss_weight, method.begin_epoch, [0]
    method.begin_epoch = lambda model, epoch: epoch_begun.append(epoch) or own_begin(model, epoch)
    method.loss_weight = lambda: own_weight() * (20.0 if epoch_begun[-1] >= 2 else 1.0)
    assert method.reweighs_loss(2) and not method.reweighs_loss(3)
    if not reweighed:
        method.reweighs_loss = lambda epoch: False
    trainer.fit()
    rows = trainer.metrics
    if reweighed:  # epoch 1's steps are read at the new weights
        assert rows[1]["gradient_spike"] < 5 and "gradient spike" not in rows[1]["event"]
    else:  # against epoch 1's steps as taken, the new level reads as a spike
        assert rows[1]["gradient_spike"] > 5


def test_evaluation_checks_orderings_and_masking():
    assert check_accuracies(0.9, 0.5, 0.45, 100, 0.1) == []
    assert "exceeds clean" in check_accuracies(0.5, 0.6, None, 100, 0.1)[0]
    assert "30.0 points above AutoAttack's on the same 100 examples" in check_accuracies(0.9, 0.7, 0.4, 100, 0.1)[0]
    assert "above PGD" in check_accuracies(0.9, 0.4, 0.5, 100, 0.1)[0]
    assert "no adversarial example" in check_accuracies(0.8, 0.8, None, 100, 0.1)[0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"attacks": ()}, "attacks='' is invalid: choose from: clean, pgd, autoattack, corruptions"),
        ({"attacks": ("clean", "fgsm")}, "attacks='clean,fgsm' is invalid"),
        ({"corruptions": ("snow", "fog", "hail")}, "corruptions='snow,hail' is invalid: choose from: gaussian_noise"),
        ({"severities": (0, 3)}, "severities=.* is invalid: use severities from 1 to 5"),
    ],
)
def test_evaluation_settings_are_checked_when_built(settings, message):
    with pytest.raises(ConfigError, match=message):
        EvalConfig(**settings)


def test_a_batch_too_small_for_batchnorm_is_refused(tmp_path, tiny_model):
    data = prepare_data(DataConfig("digits", limit_train=200, limit_test=20))
    config = TrainConfig(method="vanilla", epochs=1, lr=0.01, batch_size=1)
    with pytest.raises(ConfigError, match="batch-size=1"):
        Trainer(tiny_model, "resnet8", data, config, RunDirectory(tmp_path), device=torch.device("cpu"))
