"""``autolora diagnose``: the gradient conflict between the natural and adversarial objectives."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..data import DataConfig, prepare_data
from ..diagnose import (
    DIAGNOSED_METHODS,
    DiagnoseConfig,
    diagnose,
    diagnose_snapshots,
    plot_over_training,
    plot_per_layer,
    read_branch,
)
from ..fileio import read_json, write_json
from ..models import InputOverrides, load_classifier
from ..models.checkpoint import RUN_CONFIG
from ..runtime import resolve_device
from . import options as o
from .app import command
from .reporter import out


def _trained_on(checkpoint: Path) -> tuple[str, str | None] | None:
    """The data set (and class subset) a run directory's model was trained on, if its config says."""
    config = checkpoint / RUN_CONFIG
    data = read_json(config).get("data") if config.is_file() else None
    return (data["dataset"], data.get("classes")) if isinstance(data, dict) and "dataset" in data else None


def _diagnose_one(checkpoint: Path, data: DataConfig, config: DiagnoseConfig, device: str) -> dict[str, Any]:
    model, record, _ = load_classifier(checkpoint, overrides=InputOverrides())
    images = prepare_data(data, validation=False, image_size=model.spec.size).train
    tensors, branch = read_branch(checkpoint) or (None, None)
    trained_on = _trained_on(checkpoint)  # a source model's head classifies another task: probe a new one
    other_task = trained_on is not None and trained_on != (data.dataset, data.classes)
    result = diagnose(model, images, config, resolve_device(device), tensors, fit_head=other_task or None,
                      branch=branch)  # fmt: skip
    return {"checkpoint": str(checkpoint), "architecture": record.architecture, "dataset": data.dataset,
            **result}  # fmt: skip


@command("diagnose", "autolora diagnose --checkpoint runs/fmnist --dataset digits --eps 0.1 --out diag")
def diagnose_command(
    checkpoint: o.Checkpoint,
    dataset: o.Dataset,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for diagnose.json and the figures.")] = Path(
        "diagnose"
    ),
    method: Annotated[str, typer.Option(help="vanilla, autolora or both.")] = "both",
    batches: Annotated[int, typer.Option(help="Mini-batches whose gradients are summed.")] = 4,
    batch_size: o.BatchSize = 128,
    eps: o.Eps = "8/255",
    norm: o.Norm = "Linf",
    attack_steps: o.AttackSteps = 10,
    over_training: Annotated[
        bool, typer.Option("--over-training", help="Diagnose each snapshot in CHECKPOINT/snapshots (--save-every).")
    ] = False,
    classes: o.Classes = None,
    limit_train: o.LimitTrain = None,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    data_dir: o.DataDir = None,
    download: o.Download = False,
    debug: o.Debug = False,
) -> None:
    """Cosine similarity between the natural and the adversarial objective's gradients, per layer and overall:
    vanilla RFT (both through the feature extractor) against AutoLoRa (natural through the branch)."""
    methods = DIAGNOSED_METHODS if method == "both" else (method,)
    config = DiagnoseConfig(o.parse_threat(eps, norm), methods, batches, batch_size, attack_steps, seed=seed)
    data = DataConfig(dataset, data_dir, download, classes, limit_train, seed=seed)
    if over_training:
        _over_training(checkpoint, data, config, device, out_dir)
        return
    result = _diagnose_one(checkpoint, data, config, device)
    write_json(out_dir / "diagnose.json", result)
    figure = plot_per_layer(result, out_dir / "diagnose_layers.png", f"{checkpoint.name} on {dataset}")
    for name in methods:
        summary = result[name]
        out.print(
            f"{name:>8}: overall cosine {summary['overall_cosine']:+.3f} "
            f"(per batch {summary['per_batch_mean']:+.3f} ± {summary['per_batch_std']:.3f})",
            highlight=False,
        )
    out.print(f"wrote {out_dir / 'diagnose.json'} and {figure}", highlight=False)


def _over_training(run: Path, data: DataConfig, config: DiagnoseConfig, device: str, out_dir: Path) -> None:
    snapshot_model, _, _ = load_classifier(run, overrides=InputOverrides())
    images = prepare_data(data, validation=False, image_size=snapshot_model.spec.size).train
    method, points = diagnose_snapshots(run, images, config, resolve_device(device))
    rows = [{"epoch": epoch, "method": method, **result} for epoch, result in points]
    for row in rows:
        out.print(
            f"epoch {row['epoch']:>3}: {method} overall cosine {row[method]['overall_cosine']:+.3f}", highlight=False
        )
    write_json(out_dir / "diagnose_over_training.json", rows)
    figure = plot_over_training([r["epoch"] for r in rows], [r[method]["overall_cosine"] for r in rows], method,
                                out_dir / "diagnose_over_training.png")  # fmt: skip
    out.print(f"wrote {out_dir / 'diagnose_over_training.json'} and {figure}", highlight=False)
