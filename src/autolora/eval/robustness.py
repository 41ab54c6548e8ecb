"""Clean, PGD, AutoAttack and corruption accuracy of a model on one set of test examples."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import PGD, RandomStart, run_autoattack, threat_model
from ..attacks.autoattack import VERSIONS
from ..attacks.pgd import evaluating
from ..data import BatchLoader, ImageSet
from ..errors import ConfigError, check_choices
from ..inputs import InputSpec
from ..progress import Progress, no_progress
from .checks import check_accuracies
from .corruptions import SEVERITIES, check_corruption_names

log = logging.getLogger(__name__)

EVALUATIONS = ("clean", "pgd", "autoattack", "corruptions")


@dataclass(frozen=True)
class EvalConfig:
    """What to measure and with which attack settings."""

    attacks: tuple[str, ...] = ("clean", "pgd")
    eps: float = 8 / 255
    norm: str = "Linf"
    pgd_steps: int = 20
    pgd_restarts: int = 1
    pgd_step_size: float | None = None
    autoattack_version: str = "standard"
    autoattack_n: int | None = None
    autoattack_state: Path | None = None
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices("attacks", self.attacks, EVALUATIONS)
        threat_model(self.norm, self.eps)  # validates eps and norm
        if self.pgd_steps < 1:
            raise ConfigError("pgd-steps", self.pgd_steps, "use at least one PGD step")
        if self.autoattack_version not in VERSIONS:
            raise ConfigError("autoattack-version", self.autoattack_version, f"choose one of: {', '.join(VERSIONS)}")
        if self.autoattack_n is not None and self.autoattack_n < 1:
            raise ConfigError("autoattack-n", self.autoattack_n, "use a positive number of examples")
        if self.batch_size < 1:
            raise ConfigError("batch-size", self.batch_size, "use a positive batch size")
        if self.pgd_restarts < 1:
            raise ConfigError("pgd-restarts", self.pgd_restarts, "use at least one restart")
        if not self.severities or any(s not in SEVERITIES for s in self.severities):
            raise ConfigError("severities", self.severities, "use severities from 1 to 5")
        check_corruption_names(self.corruptions or ())

    def pgd(self) -> PGD:
        return PGD(
            threat_model(self.norm, self.eps),
            steps=self.pgd_steps,
            step_size=self.pgd_step_size,
            random_start=RandomStart.UNIFORM,
            restarts=self.pgd_restarts,
            keep_best=True,
        )

    def pgd_settings(self) -> dict[str, Any]:
        attack = self.pgd()
        return {
            "steps": attack.steps,
            "step_size": attack.step_size,
            "restarts": attack.restarts,
            "random_start": attack.random_start.value,
        }


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(dim=1)


def correct_flags(
    model: nn.Module,
    loader: BatchLoader,
    attack: PGD | None = None,
    progress: Progress = no_progress,
    description: str = "clean",
) -> Tensor:
    """Per-example correctness (in loader order) on clean inputs, or on ``attack``'s examples.

    Under an attack an example counts as robust only if it is also classified correctly clean.
    ``progress`` is told of each batch.
    """
    flags = []
    with evaluating(model), progress(len(loader), description) as advance:
        for x, y in loader.batches():
            correct = _predict(model, x) == y
            if attack is not None:
                with torch.enable_grad():
                    x_adv = attack(model, x, y)
                correct &= _predict(model, x_adv) == y
            flags.append(correct)
            advance()
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)


def _mean(flags: Tensor) -> float:
    return flags.float().mean().item() if flags.numel() else float("nan")


def _autoattack_subset(n: int, config: EvalConfig) -> Tensor:
    if config.autoattack_n is None or config.autoattack_n >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(config.seed)
    return torch.randperm(n, generator=generator)[: config.autoattack_n].sort().values


def evaluate(
    model: nn.Module,
    images: ImageSet,
    spec: InputSpec,
    config: EvalConfig,
    device: torch.device,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Measure what ``config.attacks`` asks on ``images``; accuracies are fractions in [0, 1].

    Clean and PGD accuracy use every example; AutoAttack uses all of them or a seeded subset
    of ``autoattack_n``, on which clean and PGD accuracy are reported too, so the ordering
    AA <= PGD <= clean is checked on the same examples. ``progress`` hears of every batch.
    """
    torch.manual_seed(config.seed)
    loader = BatchLoader(images, spec, config.batch_size, device)
    result: dict[str, Any] = {"n": len(images), "eps": config.eps, "norm": config.norm, "input": spec.to_dict()}
    seconds: dict[str, float] = {}
    clean = pgd = None
    if {"clean", "pgd", "autoattack"} & set(config.attacks):
        start = time.perf_counter()
        clean = correct_flags(model, loader, progress=progress)
        seconds["clean"] = time.perf_counter() - start
        result["clean_acc"] = _mean(clean)
    if "pgd" in config.attacks:
        start = time.perf_counter()
        pgd = correct_flags(model, loader, config.pgd(), progress, f"PGD-{config.pgd_steps}")
        seconds["pgd"] = time.perf_counter() - start
        result["pgd_acc"] = _mean(pgd)
        result["pgd"] = config.pgd_settings()
    warnings: list[str] = []
    if "autoattack" in config.attacks:
        subset = _autoattack_subset(len(images), config)
        x = torch.cat([loader.fetch(chunk) for chunk in subset.split(1024)])
        y = loader.labels[subset.to(loader.labels.device)]
        aa = run_autoattack(
            model,
            x,
            y,
            config.eps,
            norm=config.norm,
            version=config.autoattack_version,
            batch_size=config.batch_size,
            seed=config.seed,
            state_path=config.autoattack_state,
            progress=progress,
        )
        seconds["autoattack"] = aa.seconds
        result["autoattack_acc"] = aa.accuracy
        same = {"n": aa.n, "clean_acc": _mean(clean[subset])}
        if pgd is not None:
            same["pgd_acc"] = _mean(pgd[subset])
        result["autoattack"] = aa.to_dict() | {"same_examples": same}
        warnings += [f"AutoAttack: {flag}" for flag in aa.flags]
        warnings += check_accuracies(same["clean_acc"], same.get("pgd_acc"), aa.accuracy, aa.n, config.eps)
    elif clean is not None and pgd is not None:
        warnings += check_accuracies(result["clean_acc"], result["pgd_acc"], None, len(images), config.eps)
    if "corruptions" in config.attacks:
        from .corruption_eval import corruption_accuracy

        start = time.perf_counter()
        table = corruption_accuracy(model, loader, config.corruptions, config.severities, config.seed)
        seconds["corruptions"] = time.perf_counter() - start
        result["corruption_acc"] = table["mean"]
        result["corruptions"] = table
    result["warnings"] = warnings
    result["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    for warning in warnings:
        log.warning(warning)
    return result
