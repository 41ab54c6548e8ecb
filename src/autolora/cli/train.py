"""``autolora pretrain`` and ``autolora finetune``."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import api
from ..data import DataConfig
from ..errors import ConfigError
from ..eval import EvalConfig
from ..models import InputOverrides
from ..train import HEAD_INITS, STEMS, TrainConfig, get_method, method_names
from . import options as o
from .app import command, invocation
from .reporter import RichReporter
from .summary import print_summary

PRETRAIN_METHODS = method_names(pretrain=True)


def test_evaluation(eval_extra: str | None, seed: int, version: str, n: int | None) -> EvalConfig:
    """The final test evaluation of a training run: clean and PGD-20, plus what ``--eval`` adds.

    Its threat model is the run's own (``TrainConfig`` fills it in)."""
    extra = o.parse_list(eval_extra)
    unknown = [e for e in extra if e not in ("autoattack", "corruptions")]
    if unknown:
        raise ConfigError("eval", eval_extra, "add autoattack and/or corruptions (clean and PGD-20 always run)")
    return EvalConfig(("clean", "pgd", *extra), seed=seed, autoattack_version=version, autoattack_n=n)


@command("pretrain", "autolora pretrain --dataset fashion-mnist --model resnet8 --epochs 4 --eps 0.1 --out runs/fmnist")
def pretrain(
    ctx: typer.Context,
    dataset: o.Dataset,
    out: o.Out,
    model: Annotated[str, o.option("Registry architecture (see `autolora models`).", o.MODEL)] = "resnet20",
    method: Annotated[str, o.option(f"{' or '.join(PRETRAIN_METHODS)}.", o.METHOD)] = "pgd-at",
    epochs: Annotated[int, o.option("Training epochs.", o.METHOD)] = 10,
    eps: o.Eps = "8/255",
    norm: o.Norm = "Linf",
    attack_steps: o.AttackSteps = 7,
    lr: Annotated[float, o.option("Initial learning rate (SGD, momentum 0.9).", o.METHOD)] = 0.1,
    schedule: Annotated[str, o.option("cosine or step (x0.1 at 50% and 75%).", o.METHOD)] = "cosine",
    weight_decay: Annotated[float, o.option("SGD weight decay.", o.METHOD)] = 5e-4,
    batch_size: o.BatchSize = 128,
    beta: Annotated[float, o.option("TRADES beta (method trades).", o.METHOD)] = 6.0,
    classes: o.Classes = None,
    limit_train: o.LimitTrain = None,
    limit_test: o.LimitTest = None,
    val_fraction: o.ValFraction = 0.05,
    val_min: o.ValMin = 100,
    augment: o.Augment = None,
    eval: Annotated[str | None, o.option("Also autoattack and/or corruptions on the test split.", o.EVALUATION)] = None,
    autoattack_version: o.AutoAttackVersion = "standard",
    autoattack_n: o.AutoAttackN = None,
    precision: o.Precision = "fp32",
    input_size: o.InputSize = None,
    channels_last: o.ChannelsLast = True,
    compile: o.Compile = False,
    resume: o.Resume = False,
    overwrite: o.Overwrite = False,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    data_dir: o.DataDir = None,
    download: o.Download = False,
    debug: o.Debug = False,
) -> None:
    """Adversarially pre-train a registry model (PGD-AT or TRADES), the way robust source models are made."""
    if not get_method(method).pretrain:
        raise ConfigError("method", method, f"pretrain with one of: {', '.join(method_names(pretrain=True))}")
    data = DataConfig(
        dataset, data_dir, download, classes, limit_train, limit_test, val_fraction, val_min, augment=augment, seed=seed
    )
    config = TrainConfig(
        method=method,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        beta=beta,
        threat=o.parse_threat(eps, norm),
        attack_steps=attack_steps,
        schedule=schedule,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        seed=seed,
        evaluation=test_evaluation(eval, seed, autoattack_version, autoattack_n),
    )
    summary = api.pretrain(
        model,
        data,
        config,
        out,
        device=device,
        resume=resume,
        overwrite=overwrite,
        input_size=input_size,
        reporter=RichReporter(),
        command=invocation(ctx),
    )
    print_summary(summary, out)


@command(
    "finetune",
    "autolora finetune --method autolora --checkpoint runs/fmnist --dataset digits --eps 0.1 --out runs/digits",
)
def finetune(
    ctx: typer.Context,
    checkpoint: o.Checkpoint,
    dataset: o.Dataset,
    out: o.Out,
    method: Annotated[str, o.option("The method (`autolora methods`).", o.METHOD)] = "autolora",
    model: o.ModelName = None,
    model_dir: o.ModelDir = None,
    eps: o.Eps = "8/255",
    norm: o.Norm = "Linf",
    rank: Annotated[int, o.option("Rank of the low-rank branch (autolora).", o.METHOD)] = 8,
    epochs: Annotated[int | None, o.option("Passes over the data (a cap where the method decides).", o.METHOD)] = None,
    lr: Annotated[float | None, o.option("LR (autolora: its rule's start). Default: the recipe's.", o.METHOD)] = None,
    head_init: Annotated[str | None, o.option(f"Head start: {', '.join(HEAD_INITS)}.", o.METHOD)] = None,
    stem: Annotated[str | None, o.option(f"The first convolution: {', '.join(STEMS)}.", o.METHOD)] = None,
    recipe: Annotated[str, o.option("default (measured), or paper (the paper exactly).", o.METHOD)] = "default",
    beta: Annotated[float, o.option("TRADES beta of vanilla.", o.METHOD)] = 6.0,
    attack_steps: o.AttackSteps = 10,
    val_attack_steps: Annotated[int | None, o.option("PGD steps on the validation split.", o.ATTACK)] = None,
    scalar_samples: Annotated[int, o.option("Images autolora measures its branch's accuracy on.", o.METHOD)] = 5000,
    batch_size: o.BatchSize = 128,
    weight_decay: Annotated[float, o.option("SGD weight decay.", o.METHOD)] = 1e-4,
    classes: o.Classes = None,
    limit_train: o.LimitTrain = None,
    limit_test: o.LimitTest = None,
    val_fraction: o.ValFraction = 0.05,
    val_min: o.ValMin = 100,
    augment: o.Augment = None,
    eval: Annotated[str | None, o.option("Also autoattack and/or corruptions on the test split.", o.EVALUATION)] = None,
    autoattack_version: o.AutoAttackVersion = "standard",
    autoattack_n: o.AutoAttackN = None,
    save_every: Annotated[int | None, o.option("Save a snapshot every K epochs (for diagnose).", o.RUN)] = None,
    input_size: o.InputSize = None,
    mean: o.Mean = None,
    std: o.Std = None,
    precision: o.Precision = "fp32",
    channels_last: o.ChannelsLast = True,
    compile: o.Compile = False,
    resume: o.Resume = False,
    overwrite: o.Overwrite = False,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    data_dir: o.DataDir = None,
    download: o.Download = False,
    debug: o.Debug = False,
) -> None:
    """Robustly fine-tune a pre-trained model on a downstream task (AutoLoRa or a baseline)."""
    if get_method(method).pretrain:
        raise ConfigError("method", method, f"fine-tune with one of: {', '.join(method_names(pretrain=False))}")
    data = DataConfig(
        dataset, data_dir, download, classes, limit_train, limit_test, val_fraction, val_min, augment=augment, seed=seed
    )
    config = TrainConfig(
        method=method,
        recipe=recipe,
        epochs=epochs,
        lr=lr,
        head_init=head_init,
        stem=stem,
        batch_size=batch_size,
        weight_decay=weight_decay,
        beta=beta,
        rank=rank,
        threat=o.parse_threat(eps, norm),
        attack_steps=attack_steps,
        val_attack_steps=val_attack_steps,
        scalar_samples=scalar_samples,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        seed=seed,
        save_every=save_every,
        evaluation=test_evaluation(eval, seed, autoattack_version, autoattack_n),
    )
    overrides = InputOverrides(input_size, o.parse_floats(mean, "mean"), o.parse_floats(std, "std"))
    summary = api.finetune(
        checkpoint,
        data,
        config,
        out,
        architecture=model,
        overrides=overrides,
        model_dir=model_dir,
        device=device,
        resume=resume,
        overwrite=overwrite,
        reporter=RichReporter(),
        command=invocation(ctx),
    )
    print_summary(summary, out)
