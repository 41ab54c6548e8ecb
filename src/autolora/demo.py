"""The embedded default: the shipped robust Fashion-MNIST model fine-tuned on digits, AutoLoRa vs vanilla."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import api
from .attacks import Threat
from .data import DataConfig
from .eval import EvalConfig
from .report.report import write_report
from .shipped import shipped_root
from .train import TrainConfig, get_method
from .train.progress import Reporter

EPS = 0.1
THREAT = Threat(EPS)  # L-inf, eps 0.1: the budget the shipped source model was trained at


def default_checkpoint() -> Path:
    """The robust source model shipped inside the package (PGD-AT on Fashion-MNIST, eps 0.1)."""
    return shipped_root() / "fmnist-resnet8"


@dataclass(frozen=True)
class DemoSize:
    """How big the demo runs are: the method is the same, the run is smaller."""

    name: str
    limit_train: int | None
    autolora_max_epochs: int
    vanilla_epochs: int
    attack_steps: int
    autoattack_version: str
    autoattack_n: int


FULL = DemoSize("full", None, 40, 24, 10, "standard", 100)
QUICK = DemoSize("quick (smoke run: small limits, few epochs, fast AutoAttack)", 400, 6, 4, 3, "fast", 64)


def finetune_config(
    method: str,
    lr: float | None = None,
    *,
    epochs: int | None,
    attack_steps: int,
    autoattack_version: str,
    autoattack_n: int,
    seed: int,
    save_every: int | None = None,
    recipe: str = "default",
    attacks: tuple[str, ...] = ("clean", "pgd", "autoattack"),
    **settings: Any,
) -> TrainConfig:
    """The fine-tuning settings the demo and the reproduction study share, so that their runs agree:
    ``THREAT``, PGD-``attack_steps`` training, and clean, PGD-20 and AutoAttack on the test split.
    ``lr`` None is the recipe's own; ``settings`` are further ``TrainConfig`` fields (a study row's
    ``schedule``, ``clean_share``, ...)."""
    return TrainConfig(
        method=method,
        recipe=recipe,
        epochs=epochs,
        lr=lr,
        threat=THREAT,
        attack_steps=attack_steps,
        seed=seed,
        save_every=save_every,
        evaluation=EvalConfig(
            attacks,
            seed=seed,
            autoattack_version=autoattack_version,
            autoattack_n=autoattack_n,
        ),
        **settings,
    )


def _config(method: str, size: DemoSize, seed: int) -> TrainConfig:
    decides_length = get_method(method).defaults.decides_length
    return finetune_config(
        method,
        epochs=size.autolora_max_epochs if decides_length else size.vanilla_epochs,
        attack_steps=size.attack_steps,
        autoattack_version=size.autoattack_version,
        autoattack_n=size.autoattack_n,
        seed=seed,
    )


def run_demo(
    out: str | Path, *, quick: bool = False, device: str = "auto", seed: int = 0, reporter: Reporter | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """Fine-tune the shipped model on digits with AutoLoRa and with vanilla RFT; write both runs and a report.

    An interrupted demo continues where it stopped when run again with the same ``out``.
    Returns the path of ``report.md`` and the two runs' summaries.
    """
    size = QUICK if quick else FULL
    out = Path(out)
    data = DataConfig("digits", limit_train=size.limit_train, seed=seed)
    summaries = []
    for method in ("autolora", "vanilla"):
        if reporter is not None:
            reporter.message(f"== {method} on digits (eps {EPS}), {size.name} ==")
        summary = api.finetune(
            default_checkpoint(), data, _config(method, size, seed), out / method,
            device=device, resume=True, reporter=reporter,
            command=f"autolora demo --out {out}{' --quick' if quick else ''} --seed {seed}",
        )  # fmt: skip
        summaries.append(summary)
    return write_report([out / "autolora", out / "vanilla"], out), summaries
