"""AutoAttack (Croce and Hein, 2020) through the authors' own package, ``pyautoattack``."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .pgd import evaluating

# "standard" is the reference protocol: every reported number uses it. "fast" drops FAB-T and
# Square (the slow black-box part) for smoke runs and is always labelled as such.
VERSIONS: dict[str, list[str] | None] = {"standard": None, "fast": ["apgd-ce", "apgd-t"]}


@dataclass
class AutoAttackResult:
    """Robust accuracy under AutoAttack on ``n`` examples, with the package's own warnings."""

    accuracy: float
    robust: Tensor
    n: int
    version: str
    attacks: list[str]
    eps: float
    norm: str
    seconds: float
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "autoattack_acc": self.accuracy,
            "n": self.n,
            "version": self.version,
            "attacks": self.attacks,
            "eps": self.eps,
            "norm": self.norm,
            "seconds": round(self.seconds, 2),
            "flags": self.flags,
        }


class _FlagCollector(logging.Handler):
    """Collects the warnings pyautoattack's sanity checks log (zero gradients, randomness, Square)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


def run_autoattack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    norm: str = "Linf",
    version: str = "standard",
    batch_size: int = 256,
    seed: int = 0,
    state_path: Path | None = None,
) -> AutoAttackResult:
    """Run AutoAttack on ``(x, y)`` and return the combined worst-case robust accuracy.

    ``version="standard"`` is APGD-CE, APGD-T, FAB-T and Square; ``"fast"`` is APGD-CE and
    APGD-T only. The targeted attacks use at most ``num_classes - 1`` target classes.
    ``state_path`` makes a long evaluation resumable: a rerun with the same file skips the
    attacks that already ran and keeps the points they broke.
    """
    from pyautoattack import AutoAttack

    if version not in VERSIONS:
        raise ConfigError("autoattack-version", version, f"choose one of: {', '.join(VERSIONS)}")
    if len(x) == 0:
        raise ConfigError("n", 0, "AutoAttack needs at least one example")
    attacks = VERSIONS[version]
    device = x.device
    collector = _FlagCollector()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(collector)
    start = time.perf_counter()
    try:
        with evaluating(model), tempfile.TemporaryDirectory() as scratch:
            adversary = AutoAttack(
                model,
                eps=eps,
                norm=norm,
                version="custom" if attacks else "standard",
                attacks=attacks,
                device=device,
                seed=seed,
            )
            adversary.verbose = False
            num_classes = _num_classes(model, x[:1])
            adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
            adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
            path = state_path or Path(scratch) / "autoattack-state.json"
            adversary.run_standard_evaluation(x, y, batch_size=batch_size, state_path=path)
            robust = _robust_flags(path).to(device)
    finally:
        logger.removeHandler(collector)
    return AutoAttackResult(
        accuracy=robust.float().mean().item(),
        robust=robust,
        n=len(x),
        version=version,
        attacks=list(adversary.attacks_to_run),
        eps=eps,
        norm=norm,
        seconds=time.perf_counter() - start,
        flags=collector.messages,
    )


def _num_classes(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        return int(model(x).shape[1])


def _robust_flags(state_path: Path) -> Tensor:
    from pyautoattack.state import EvaluationState

    return EvaluationState.from_disk(state_path).robust_flags.bool()
