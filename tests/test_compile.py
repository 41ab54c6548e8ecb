"""``--compile``: a compiled run trains as the eager one does and saves the plain model's files.

The default backend (inductor) spends minutes generating and compiling C++ on a 2-core CPU, so
the fast tests select "aot_eager" through ``runtime.COMPILE_BACKEND``: the same graph capture,
guards and recompiles, and AOTAutograd's forward and backward graphs, without code generation.
The ``long`` test runs inductor itself (``python -m pytest -m long tests/test_compile.py``).
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch._dynamo.utils import counters

from autolora import api, runtime
from autolora.attacks import Threat
from autolora.data import DataConfig, prepare_data
from autolora.errors import ConfigError
from autolora.eval import EvalConfig
from autolora.inputs import InputSpec
from autolora.models import ImageClassifier
from autolora.train import TrainConfig, Trainer
from autolora.train.run_dir import RunDirectory


def _tiny_classifier() -> ImageClassifier:
    """A stem, one branched convolution and BatchNorm: little for torch.compile to trace."""
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    return ImageClassifier(features, 8, 2, InputSpec(1, 8, (0.3,), (0.35,)))


def _config(compile: bool) -> TrainConfig:
    return TrainConfig(method="autolora", recipe="paper", epochs=1, lr=0.05, batch_size=4, threat=Threat(0.1),
                       attack_steps=2, scalar_samples=4, compile=compile, evaluation=EvalConfig(("clean",)))  # fmt: skip


def _fit(path, compile: bool, resume: bool = False) -> dict:
    # 8 training digits (8x8) in batches of 4: two AutoLoRa steps; 2 held out for validation
    data = prepare_data(DataConfig("digits", classes="0-1", limit_train=10, limit_test=4, val_min=2), image_size=8)
    run = RunDirectory(path)
    run.open(resume=resume)
    trainer = Trainer(_tiny_classifier(), "tiny", data, _config(compile), run, device=torch.device("cpu"),
                      record={"architecture": "tiny"})  # fmt: skip
    return trainer.fit(resume=resume)


def _train_eager_and_compiled(tmp_path) -> None:
    for compile in (False, True):
        torch._dynamo.reset()
        counters.clear()
        _fit(tmp_path / f"compile-{compile}", compile)
    assert counters["stats"]["unique_graphs"] >= 3  # the attack's and both paths' graphs, at least


def _assert_same_run(tmp_path, atol: float) -> None:
    eager, compiled = (tmp_path / "compile-False", tmp_path / "compile-True")
    rows = [json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) for run in (eager, compiled)]
    for key in ("train_loss", "val_robust_loss", "nat_branch_acc"):
        assert rows[1][key] == pytest.approx(rows[0][key], abs=atol), key
    weights = [load_file(str(run / "model.safetensors")) for run in (eager, compiled)]
    assert list(weights[1]) == list(weights[0])  # same keys, in the same order: no "_orig_mod." prefix
    assert not any("_orig_mod" in key or "lora_" in key for key in weights[1])
    for key, value in weights[0].items():
        assert torch.allclose(weights[1][key], value, atol=atol), key
    assert weights[1]["head.weight"].abs().sum() > 0  # it trained (the head starts at zero)
    _tiny_classifier().load_state_dict(weights[1], strict=True)  # the plain architecture
    summaries = [json.loads((run / "summary.json").read_text()) for run in (eager, compiled)]
    assert (summaries[0]["compiled"], summaries[1]["compiled"]) == (False, True)
    assert json.loads((compiled / "config.json").read_text())["training"]["compile"] is True


def test_a_compiled_autolora_run_matches_eager_and_saves_the_plain_model(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")
    _train_eager_and_compiled(tmp_path)
    _assert_same_run(tmp_path, atol=1e-5)
    # compile is how the steps run, not what they compute: the run continues (here: is finished) without it
    assert _fit(tmp_path / "compile-True", compile=False, resume=True)["compiled"] is True


@pytest.mark.long
def test_inductor_trains_as_eager_does(tmp_path):
    problem = runtime.compile_problem(torch.device("cpu"), "inductor")
    if problem:
        pytest.skip(problem)
    _train_eager_and_compiled(tmp_path)
    _assert_same_run(tmp_path, atol=1e-3)  # inductor fuses and reorders float operations


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_the_cli_flag_reaches_the_config(cli, tmp_path, monkeypatch, command):
    seen = []

    def stop(*args, **kwargs):  # the config is all this test needs: no training
        seen.append(args[2])
        raise SystemExit(0)

    monkeypatch.setattr(api, command, stop)
    source = ["--checkpoint", "fmnist-resnet8"] if command == "finetune" else ["--model", "resnet8"]
    for flag in ([], ["--compile"], ["--no-compile"]):
        result = cli(command, *source, "--dataset", "digits", "--out", tmp_path / "run", *flag)
        assert result.exit_code == 0, result.output
    assert [config.compile for config in seen] == [False, True, False]


def test_compile_takes_a_boolean():
    assert TrainConfig(method="autolora").compile is False  # off by default, on every device
    with pytest.raises(ConfigError, match=r"compile='yes' is invalid: use True or False"):
        TrainConfig(method="autolora", compile="yes")


def test_without_a_compiler_the_model_stays_eager_with_a_warning(tiny_model, monkeypatch, caplog):
    from torch._inductor import config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-compiler++",))
    with caplog.at_level(logging.WARNING, logger="autolora"):
        assert runtime.compile_model(tiny_model, torch.device("cpu")) is False
    assert "needs a C++ compiler" in caplog.text and "runs eagerly" in caplog.text
    assert tiny_model._compiled_call_impl is None


def test_a_copy_of_a_compiled_model_is_a_plain_module(tiny_model, monkeypatch):
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "eager")
    assert runtime.compile_model(tiny_model, torch.device("cpu"))  # nothing is compiled before the first call
    assert tiny_model._compiled_call_impl is not None
    assert copy.deepcopy(tiny_model)._compiled_call_impl is None  # the export and snapshots are such copies
