"""The deployed model's BatchNorm statistics re-estimated after training: the arithmetic, the
settings, and that the trainer exports them and finishes an older run again."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from autolora.attacks import PGD, CrossEntropyObjective, RandomStart, Threat
from autolora.data import DataConfig, prepare_data
from autolora.errors import ConfigError
from autolora.eval import EvalConfig
from autolora.models.checkpoint import RUN_WEIGHTS
from autolora.train import TrainConfig, Trainer, get_method
from autolora.train.batchnorm import recompute_batchnorm
from autolora.train.run_dir import RunDirectory


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(4)).eval()


def _attack() -> PGD:
    return PGD(Threat(0.1).ball(), steps=2, step_size=0.05, random_start=RandomStart.NONE)


@pytest.mark.parametrize("with_clean", [False, True])
def test_the_statistics_become_the_mean_of_the_adversarial_batches_statistics(with_clean):
    net = _net()
    batches = [(torch.rand(8, 1, 6, 6), torch.arange(8) % 4) for _ in range(3)]
    net(batches[0][0])  # materialise the lazy layer
    before = copy.deepcopy(net)
    with torch.no_grad():
        net[1].running_mean.fill_(5.0)  # stale statistics, which the attack (eval mode) must still use
        before[1].running_mean.fill_(5.0)
    attack = _attack()
    adversarial = [attack(before, x, CrossEntropyObjective(y)) for x, y in batches]
    seen = recompute_batchnorm(net, batches, attack, with_clean=with_clean)
    inputs = [torch.cat([x, a]) for (x, _), a in zip(batches, adversarial, strict=True)] if with_clean else adversarial
    conv = [before[0](x) for x in inputs]  # with the clean images: one batch of both, so the mixture's statistics
    mean = torch.stack([c.mean((0, 2, 3)) for c in conv]).mean(0)
    var = torch.stack([c.var((0, 2, 3), unbiased=True) for c in conv]).mean(0)
    assert seen == 24
    assert torch.allclose(net[1].running_mean, mean.detach(), atol=1e-5)
    assert torch.allclose(net[1].running_var, var.detach(), atol=1e-5)
    assert net[1].momentum == before[1].momentum  # the layer itself keeps its momentum
    for (name, p), q in zip(net.named_parameters(), before.parameters(), strict=True):
        assert torch.equal(p, q), name  # the weights are not touched


def test_no_batches_or_no_batchnorm_leave_the_model_as_it_is():
    net = _net()
    net(torch.rand(2, 1, 6, 6))
    kept = copy.deepcopy(net.state_dict())
    assert recompute_batchnorm(net, [], _attack()) == 0
    assert all(torch.equal(v, kept[k]) for k, v in net.state_dict().items())
    plain = nn.Sequential(nn.Flatten(), nn.Linear(36, 4))
    assert recompute_batchnorm(plain, [(torch.rand(2, 1, 6, 6), torch.zeros(2).long())], _attack()) == 0


def test_only_autolora_recomputes_by_default_and_methods_that_keep_the_sources_statistics_refuse():
    assert TrainConfig(method="autolora").batchnorm == "recomputed"
    assert TrainConfig(method="autolora", recipe="paper").batchnorm == "training"  # the paper, exactly
    assert TrainConfig(method="vanilla").batchnorm == "training"
    assert TrainConfig(method="vanilla", batchnorm="recomputed").batchnorm == "recomputed"
    for method in ("slf", "twins"):
        with pytest.raises(ConfigError, match="batchnorm"):
            TrainConfig(method=method, batchnorm="recomputed")
    for method in ("autolora", "slf"):  # an unknown value is named as such, whatever the method
        with pytest.raises(ConfigError, match="choose one of"):
            TrainConfig(method=method, batchnorm="fresh")
    assert "batchnorm" not in TrainConfig(method="autolora").resume_key()  # it acts after the last epoch


def test_the_trainer_exports_recomputed_statistics_and_finishes_an_older_run_again(tmp_path, tiny_model):
    data = prepare_data(DataConfig("digits", classes="0-3", limit_train=120, limit_test=20))
    tiny_model.reset_classifier(4)
    untrained = copy.deepcopy(tiny_model)
    settings = dict(method="autolora", batch_size=32, threat=Threat(0.1), attack_steps=1, period_steps=1, epochs=2,
                    evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    recipe_schedule = get_method("autolora").defaults.schedule  # named here, left to the recipe below
    as_trained = TrainConfig(**settings, batchnorm="training", schedule=recipe_schedule)
    trainer = Trainer(tiny_model, "resnet8", data, as_trained, run, device=torch.device("cpu"))
    first = trainer.fit()
    assert first["batchnorm"] == "training" and first["batchnorm_images"] == 0
    exported = load_file(str(run.path / RUN_WEIGHTS))
    mean = "features.bn1.running_mean"
    assert torch.equal(exported[mean], trainer.best_state[mean])
    passes = first["attack_passes"]

    # the default recipe: "recomputed", and the schedule left to it (the same one); the run resumes all the same
    recomputing = TrainConfig(**settings)
    again = Trainer(copy.deepcopy(untrained), "resnet8", data, recomputing, run, device=torch.device("cpu"))
    second = again.fit(resume=True)
    assert second["batchnorm"] == "recomputed" and second["batchnorm_images"] == len(data.train)
    assert second["epochs"] == first["epochs"]  # finished again, not trained again
    assert second["attack_passes"] == passes + len(again.train_loader) * 1  # one attack step per batch
    recomputed = load_file(str(run.path / RUN_WEIGHTS))
    assert not torch.equal(recomputed[mean], exported[mean])
    assert torch.equal(recomputed["features.conv1.weight"], exported["features.conv1.weight"])
    third = Trainer(copy.deepcopy(untrained), "resnet8", data, recomputing, run, device=torch.device("cpu"))
    assert third.fit(resume=True) == second  # now its summary stands


@pytest.mark.parametrize("method", ["autolora", "vanilla"])
@pytest.mark.parametrize("reads", ["running", "batch"])
def test_reads_in_training_normalise_with_the_statistics_asked_for(tmp_path, tiny_model, reads, method):
    """The training attack, the validation, the natural accuracy behind AutoLoRa's λ and the clean
    target of TRADES's KL read the model in eval mode; with ``read_statistics="batch"`` no BatchNorm
    layer normalises with running statistics until training has ended (the test evaluation serves
    the deployed model, which does)."""
    data = prepare_data(DataConfig("digits", classes="0-3", limit_train=120, limit_test=20))
    tiny_model.reset_classifier(4)
    config = TrainConfig(method=method, batch_size=32, threat=Threat(0.1), attack_steps=1, period_steps=1,
                         epochs=2, read_statistics=reads, evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    trainer = Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))
    running_reads: list[bool] = []
    norms = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.register_forward_pre_hook(lambda module, args: running_reads.append(not module.training))
    trainer._finish = lambda: {}  # stop before the test evaluation
    trainer.fit()
    assert running_reads and any(running_reads) == (reads == "running")


def test_the_training_attack_turns_to_the_running_statistics_once_the_lr_has_fallen(tmp_path, tiny_model):
    """With ``read_statistics="batch-then-running-attack"`` every read during training normalises with
    batch statistics in the epochs at the start LR; once the LR has fallen (vanilla's step decay: ÷10 at
    half and three quarters of 4 epochs) the training attack (and TRADES's clean target) reads the
    running ones, and the validation still reads batch statistics."""
    data = prepare_data(DataConfig("digits", classes="0-3", limit_train=120, limit_test=20))
    tiny_model.reset_classifier(4)
    config = TrainConfig(method="vanilla", batch_size=32, threat=Threat(0.1), attack_steps=1, epochs=4,
                         read_statistics="batch-then-running-attack", evaluation=EvalConfig(pgd_steps=1))  # fmt: skip
    run = RunDirectory(tmp_path / "run")
    run.open()
    trainer = Trainer(tiny_model, "resnet8", data, config, run, device=torch.device("cpu"))
    epochs: list[list[bool]] = []  # per epoch: whether each BatchNorm forward read running statistics
    turn = trainer.method.attack_statistics  # called as each epoch starts
    trainer.method.attack_statistics = lambda batch: (epochs.append([]), turn(batch))
    validate = trainer._validate
    trainer._validate = lambda epoch: (epochs.append([]), validate(epoch))[-1]
    for norm in (m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)):
        norm.register_forward_pre_hook(lambda module, args: epochs[-1].append(not module.training) if epochs else None)
    trainer._finish = lambda: {}
    trainer.fit()
    lrs = [json.loads(line)["lr"] for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] > lrs[-1] and len(epochs) == 2 * len(lrs) == 8  # per epoch: its training, then its validation
    assert [any(reads) for reads in epochs[0::2]] == [lr < lrs[0] for lr in lrs]
    assert not any(any(reads) for reads in epochs[1::2])
