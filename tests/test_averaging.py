"""The weight average: its arithmetic, and that the trainer validates and deploys it."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from autolora.attacks import Threat
from autolora.data import DataConfig, prepare_data
from autolora.errors import ConfigError
from autolora.eval import EvalConfig
from autolora.models.checkpoint import RUN_WEIGHTS
from autolora.train import TrainConfig, Trainer
from autolora.train.averaging import WeightAverage
from autolora.train.run_dir import SNAPSHOTS, RunDirectory
from autolora.train.schedule import Decision


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def _set(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)
    net[1].num_batches_tracked.fill_(int(value))


def test_a_young_average_is_the_mean_of_its_steps_then_it_decays():
    net = _net()
    _set(net, 0.0)
    average = WeightAverage(net, horizon=4)
    for value in (1.0, 2.0, 3.0):
        _set(net, value)
        average.update(net)
    state = average.state(net)
    assert torch.allclose(state["0.weight"], torch.full((2, 2), 1.5))  # (0 + 1 + 2 + 3) / 4: the start counts
    assert state["1.num_batches_tracked"].item() == 3  # integer buffers follow the model
    for _ in range(2):
        _set(net, 11.5)
        average.update(net)  # past the horizon: each step moves the average a quarter of the way
    assert torch.allclose(average.state(net)["0.weight"], torch.full((2, 2), 1.5 + 10 * (1 - 0.75**2)))


def test_a_started_average_is_the_plain_mean_of_its_steps_from_there():
    net = _net()
    average = WeightAverage(net, horizon=None)
    _set(net, 9.0)
    average.start(net, horizon=math.inf)
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        _set(net, value)
        average.update(net)
    assert torch.allclose(average.state(net)["0.weight"], torch.full((2, 2), 24.0 / 6))  # 9 and the five steps
    restored = WeightAverage(_net(), horizon=None)
    restored.load_state_dict(average.state_dict())
    assert restored.horizon == math.inf and restored.enabled


def test_applied_swaps_the_average_in_and_the_model_back():
    net = _net()
    _set(net, 0.0)
    average = WeightAverage(net, horizon=2)
    _set(net, 4.0)
    average.update(net)
    with average.applied(net):
        assert torch.equal(net[0].weight, torch.full((2, 2), 2.0))
    assert torch.equal(net[0].weight, torch.full((2, 2), 4.0))
    average.reset(net)
    assert torch.equal(average.state(net)["0.weight"], torch.full((2, 2), 4.0)) and average.steps == 0


def test_without_a_horizon_the_average_is_the_model():
    net = _net()
    average = WeightAverage(net, horizon=None)
    _set(net, 3.0)
    average.update(net)
    with average.applied(net):
        assert torch.equal(net[0].weight, torch.full((2, 2), 3.0))
    assert torch.equal(average.state(net)["0.weight"], net[0].weight) and not average.enabled


def test_the_trainer_validates_keeps_and_rolls_back_to_the_average(tmp_path, tiny_model):
    data = prepare_data(DataConfig("digits", classes="0-3", limit_train=120, limit_test=20))
    tiny_model.reset_classifier(4)
    config = TrainConfig(method="autolora", batch_size=32, threat=Threat(0.1), attack_steps=1, period_steps=1,
                         average_epochs=1, evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    untrained = copy.deepcopy(tiny_model)
    trainer = Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))
    assert trainer.average.horizon == len(trainer.train_loader)  # one epoch of optimizer steps
    seen: list[torch.Tensor] = []
    validate = trainer._validate

    def recording_validate(epoch: int) -> tuple[float, float, float]:
        seen.append(trainer.model.head.weight.detach().clone())  # the weights validation sees
        return validate(epoch)

    trainer._validate = recording_validate
    trainer._run_epoch(1)
    averaged = trainer.average.state(trainer.model)["head.weight"]
    assert torch.equal(seen[0], averaged) and not torch.equal(averaged, trainer.model.head.weight)
    assert torch.equal(trainer.best_state["head.weight"], averaged)  # the first epoch is the best so far
    trainer._save_state()
    resumed = Trainer(copy.deepcopy(untrained), "resnet8", data, config, run, device=torch.device("cpu"))
    resumed._restore()  # the average is part of the resume state
    assert resumed.average.steps == trainer.average.steps > 0
    assert torch.equal(resumed.average.state(resumed.model)["head.weight"], averaged)
    trainer.config = replace(config, save_every=1)
    trainer._save_snapshot()
    snapshot = load_file(str(run.file(SNAPSHOTS) / "epoch-001" / RUN_WEIGHTS))
    assert torch.equal(snapshot["head.weight"], averaged)  # a snapshot holds what the schedule judged
    trainer._apply(Decision(lr=0.05, rollback=True))
    assert torch.equal(trainer.model.head.weight, averaged) and trainer.average.steps == 0


def test_a_negative_average_is_refused_and_the_recipes_average_nothing():
    with pytest.raises(ConfigError, match="average-epochs"):
        TrainConfig(method="autolora", average_epochs=-1)
    assert TrainConfig(method="autolora").average_epochs == TrainConfig(method="vanilla").average_epochs == 0


def test_the_trainer_ends_an_unhalved_run_on_the_mean_of_its_tail(tmp_path, tiny_model):
    data = prepare_data(DataConfig("digits", classes="0-3", limit_train=120, limit_test=20))
    tiny_model.reset_classifier(4)
    config = TrainConfig(method="autolora", batch_size=32, threat=Threat(0.1), attack_steps=1, period_steps=1,
                         epochs=4, schedule="auto-mean-anneal-or-average", evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    trainer = Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))
    assert not trainer.average.enabled  # the first three epochs judge the last iterate
    for epoch in (1, 2, 3):
        trainer._run_epoch(epoch)
    assert trainer.average.horizon == math.inf and trainer.average.steps == 0  # the tail: epoch 4 of 4
    trainer._run_epoch(4)
    assert trainer.average.steps == len(trainer.train_loader)
    averaged = trainer.average.state(trainer.model)["head.weight"]
    assert not torch.equal(averaged, trainer.model.head.weight)
    assert trainer.metrics[-1]["best"] and torch.equal(trainer.best_state["head.weight"], averaged)  # deployed
    trainer._save_state()
    resumed = Trainer(copy.deepcopy(trainer.model), "resnet8", data, config, run, device=torch.device("cpu"))
    resumed._restore()  # through the state file: the tail's average and its horizon
    assert resumed.average.horizon == math.inf and resumed.average.steps == trainer.average.steps
