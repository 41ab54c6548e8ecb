"""The library's entry points for whole jobs: pre-train, fine-tune, evaluate.

The CLI is a thin layer over these; Python users can call them directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data import DataConfig, ImageSet, PreparedData, prepare_data
from .distributed import DistContext, init_distributed, shutdown_distributed
from .eval import EvalConfig, evaluate
from .inputs import InputSpec
from .models import ImageClassifier, InputOverrides, check_takes_its_input, create_model, load_classifier
from .progress import Progress, no_progress
from .report.plots import plot_run_curves
from .runtime import provenance, resolve_device
from .train.config import TrainConfig
from .train.progress import Reporter, SilentReporter
from .train.run_dir import RunDirectory
from .train.state import seed_epoch
from .train.trainer import Trainer


def data_statistics(images: ImageSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of a set of images in [0, 1]."""
    sums = torch.zeros(images.shape[0], dtype=torch.float64)
    squares = torch.zeros_like(sums)
    count = 0
    for start in range(0, len(images), 4096):
        x = images.floats(slice(start, start + 4096)).double()
        sums += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = sums / count
    std = (squares / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _open_run(out: Path, dist: DistContext, resume: bool, overwrite: bool) -> tuple[RunDirectory, bool]:
    run = RunDirectory(out)
    resuming = run.open(resume=resume, overwrite=overwrite and dist.is_main) if dist.is_main else False
    dist.barrier()
    if not dist.is_main:
        resuming = resume and run.state.exists()
    return run, resuming


def _train(
    model: ImageClassifier,
    architecture: str,
    data: PreparedData,
    config: TrainConfig,
    out: Path,
    record: dict[str, Any],
    *,
    device: str,
    resume: bool,
    overwrite: bool,
    reporter: Reporter | None,
) -> dict[str, Any]:
    check_takes_its_input(model, architecture)
    dist = init_distributed(resolve_device(device))
    torch_device = resolve_device(device, dist.local_rank)
    run, resuming = _open_run(out, dist, resume, overwrite)
    trainer = Trainer(
        model,
        architecture,
        data,
        config,
        run,
        device=torch_device,
        dist=dist,
        reporter=reporter if dist.is_main else SilentReporter(),
        record=record,
    )
    try:
        summary = trainer.fit(resume=resuming)
    finally:
        shutdown_distributed()
    if dist.is_main:
        plot_run_curves(run.path)
    return summary


def pretrain(
    architecture: str,
    data_config: DataConfig,
    config: TrainConfig,
    out: str | Path,
    *,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    command: str | None = None,
    input_size: int | None = None,
) -> dict[str, Any]:
    """Adversarially pre-train a registry model on a data set; returns the run's summary.

    ``input_size`` builds the model for images of that many pixels a side (the data are resized to
    it as they are batched), for a model whose patches or downsampling need more than the data
    set's own size (a ViT on 28-px images).
    """
    resolve_device(device)  # refuse a missing GPU before loading data
    data = prepare_data(data_config, image_size=input_size)
    channels, height, width = data.train.shape
    mean, std = data_statistics(data.train)
    seed_epoch(config.seed, 0)  # the initialisation depends on the seed alone
    spec = InputSpec(channels, input_size or max(height, width), mean, std)
    model = create_model(architecture, data.num_classes, spec)
    record = {
        "command": "pretrain",
        "data": data_config.to_dict(),
        "classes": data.classes,
        "provenance": provenance(config.seed, command),
    }
    return _train(
        model,
        architecture,
        data,
        config,
        Path(out),
        record,
        device=device,
        resume=resume,
        overwrite=overwrite,
        reporter=reporter,
    )


def finetune(
    checkpoint: str | Path,
    data_config: DataConfig,
    config: TrainConfig,
    out: str | Path,
    *,
    architecture: str | None = None,
    overrides: InputOverrides = InputOverrides(),
    model_dir: Path | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Robustly fine-tune a pre-trained checkpoint on a downstream data set; returns the run's summary.

    The feature extractor and its input spec come from the checkpoint; the head is new
    (zero-initialised) with the downstream class count; the data are adapted to the spec.
    """
    resolve_device(device)  # refuse a missing GPU before loading anything
    model, source, load_report = load_classifier(
        checkpoint, architecture=architecture, overrides=overrides, model_dir=model_dir
    )
    data = prepare_data(data_config, image_size=model.spec.size)
    model.reset_classifier(data.num_classes, zero_init=True)
    record = {
        "command": "finetune",
        "data": data_config.to_dict(),
        "classes": data.classes,
        "source": {
            "checkpoint": str(checkpoint),
            "layout": load_report.layout,
            "notes": load_report.notes,
            "input_guess": load_report.input_guess,
            "model": source.to_dict(),
        },
        "provenance": provenance(config.seed, command),
    }
    return _train(
        model,
        source.architecture,
        data,
        config,
        Path(out),
        record,
        device=device,
        resume=resume,
        overwrite=overwrite,
        reporter=reporter,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    data_config: DataConfig,
    config: EvalConfig,
    *,
    architecture: str | None = None,
    overrides: InputOverrides = InputOverrides(),
    device: str = "auto",
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a data set's test split (the checkpoint's head must fit its classes).

    The results name the input spec used, and ``input_guess`` says which of it was guessed.
    """
    torch_device = resolve_device(device)
    model, record, load_report = load_classifier(checkpoint, architecture=architecture, overrides=overrides)
    check_takes_its_input(model, record.architecture)
    data = prepare_data(data_config, validation=False, image_size=model.spec.size)
    if data.num_classes != record.num_classes:
        from .errors import CheckpointError

        raise CheckpointError(
            f"{checkpoint} classifies {record.num_classes} classes but {data.name} has {data.num_classes}; "
            "evaluate on the data set it was trained for (or pick --classes)"
        )
    model.to(torch_device)
    results = evaluate(model, data.test, model.spec, config, torch_device, progress)
    return {
        "checkpoint": str(checkpoint),
        "architecture": record.architecture,
        "dataset": data.name,
        "layout": load_report.layout,
        "input_guess": load_report.input_guess,
        **results,
    }
