"""AutoAttack (Croce and Hein, 2020) through the authors' own package, ``pyautoattack``.

The attacks are the package's, with its settings for each version; this module runs them one
after another on the points still robust (as AutoAttack itself does) and keeps its own state
file, so a long evaluation resumes after an interruption. (pyautoattack 0.2.0's state file
cannot be reloaded: it stores its set of attacks as a string.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from ..fileio import write_json
from ..progress import Progress, no_progress
from .pgd import evaluating
from .threat import threat_model

# "standard" is the reference protocol: every reported number uses it. "fast" is APGD-CE (one
# restart) and APGD-T: no FAB-T and no Square (the slow black-box part), for smoke runs only.
VERSIONS: dict[str, list[str] | None] = {"standard": None, "fast": ["apgd-ce", "apgd-t"]}
TARGETED_NEEDS = 4  # APGD-T's targeted DLR loss reads the 4th-largest logit


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
    per_attack: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "autoattack_acc": self.accuracy,
            "n": self.n,
            "version": self.version,
            "attacks": self.attacks,
            "accuracy_after": self.per_attack,
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


def _fingerprint(model: nn.Module, x: Tensor, y: Tensor, settings: dict[str, Any]) -> str:
    """A hash of everything the result depends on: every parameter and buffer (normalisation included,
    which the state dict leaves out), the examples and the attack settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    named = [*model.named_parameters(), *model.named_buffers(), ("x", x), ("y", y)]
    for name, tensor in named:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _settings(adversary: Any, eps: float, norm: str, version: str, seed: int) -> dict[str, Any]:
    from pyautoattack import __version__

    return {
        "pyautoattack": __version__, "eps": eps, "norm": norm, "version": version, "seed": seed,
        "apgd_restarts": adversary.apgd.n_restarts, "targets": adversary.apgd_targeted.n_target_classes,
        "fab_targets": adversary.fab.n_target_classes, "square_queries": adversary.square.n_queries,
    }  # fmt: skip


@dataclass
class _State:
    """Which attacks ran and which points survived them, for one model and set of examples."""

    fingerprint: str
    robust: list[bool]
    clean: float
    done: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, fingerprint: str) -> _State | None:
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            state = cls(data["fingerprint"], list(data["robust"]), float(data["clean"]), dict(data["done"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"AutoAttack state {path} is unreadable ({exc}); delete it to start again") from None
        if state.fingerprint != fingerprint:
            raise CheckpointError(
                f"AutoAttack state {path} belongs to another model, data or setting; delete it or choose another path"
            )
        return state

    def save(self, path: Path | None) -> None:
        if path is not None:
            write_json(path, {"fingerprint": self.fingerprint, "robust": self.robust, "clean": self.clean,
                              "done": self.done})  # fmt: skip


def _adversary(model: nn.Module, eps: float, norm: str, version: str, seed: int, device: torch.device) -> Any:
    from pyautoattack import AutoAttack

    attacks = VERSIONS[version]
    adversary = AutoAttack(model, eps=eps, norm=norm, version="custom" if attacks else "standard",
                           attacks=attacks, device=device, seed=seed)  # fmt: skip
    adversary.verbose = False
    if attacks:
        adversary.apgd.n_restarts = 1  # the standard version's setting; "custom" would keep 5
    return adversary


def _attack_list(adversary: Any, num_classes: int, flags: list[str]) -> list[str]:
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    attacks = list(adversary.attacks_to_run)
    if num_classes < TARGETED_NEEDS and "apgd-t" in attacks:
        attacks.remove("apgd-t")
        flags.append(f"APGD-T needs at least {TARGETED_NEEDS} classes; with {num_classes} it was skipped")
    return attacks


def _start(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, settings: dict, path: Path | None) -> _State:
    """The saved state of this evaluation, or a fresh one (robust = correctly classified)."""
    fingerprint = _fingerprint(model, x, y, settings) if path is not None else ""
    state = _State.load(path, fingerprint)
    if state is None:
        correct = _correct(model, x, y, batch_size)
        state = _State(fingerprint, correct.tolist(), correct.float().mean().item())
    return state


def _sanity_checks(model: nn.Module, x: Tensor, y: Tensor, logger: logging.Logger) -> None:
    """pyautoattack's own checks of the defence (randomness, probability outputs, dynamic code), run once."""
    from pyautoattack import checks

    checks.check_randomized(model, x, y, logger=logger)
    checks.check_range_output(model, x, logger=logger)
    checks.check_dynamic(model, x, False, logger=logger)


def _square_check(state: _State, logger: logging.Logger) -> None:
    """pyautoattack's warning when the black-box Square beats the white-box attacks (full-set accuracies)."""
    from pyautoattack import checks

    checks.check_square_sr({"clean": state.clean, **state.done}, logger=logger)


@torch.no_grad()
def _correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    return torch.cat(
        [model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size] for i in range(0, len(x), batch_size)]
    )


def _attack_robust(adversary: Any, x: Tensor, y: Tensor, robust: Tensor, batch_size: int, progress: Progress) -> None:
    """Run the adversary's one attack on the points still ``robust``, batch by batch; clear those it breaks.

    The package seeds every batch alike, so batches of ``batch_size`` give what one call would.
    """
    index = robust.nonzero().flatten()
    chunks = index.split(batch_size) if len(index) else ()  # split() of nothing gives one empty chunk
    name = adversary.attacks_to_run[0]
    with progress(len(chunks), f"AutoAttack {name} on {len(index)}/{len(x)} still robust") as advance:
        for chunk in chunks:
            # the package's own verdict per point (its y_adv), not a second forward pass of ours
            _, y_adv = adversary.run_standard_evaluation(x[chunk], y[chunk], batch_size=batch_size)
            robust[chunk[y_adv.to(y.device) != y[chunk]]] = False
            advance()


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
    progress: Progress = no_progress,
) -> AutoAttackResult:
    """Run AutoAttack on ``(x, y)`` and return the combined worst-case robust accuracy.

    ``version="standard"`` is APGD-CE, APGD-T, FAB-T and Square; ``"fast"`` is APGD-CE and
    APGD-T only. The targeted attacks use at most ``num_classes - 1`` target classes.
    ``state_path`` makes a long evaluation resumable: a rerun with the same file (same model,
    examples and settings) skips the attacks that already ran and keeps the points they broke.
    ``progress`` hears of each batch of each attack, which runs on the points still robust.
    """
    if version not in VERSIONS:
        raise ConfigError("autoattack-version", version, f"choose one of: {', '.join(VERSIONS)}")
    threat_model(norm, eps)  # the project's threat models are the norms AutoAttack runs for here
    if len(x) == 0:
        raise ConfigError("n", 0, "AutoAttack needs at least one example")
    collector = _FlagCollector()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(collector)
    start = time.perf_counter()
    flags: list[str] = []
    try:
        with evaluating(model):
            adversary = _adversary(model, eps, norm, version, seed, x.device)
            num_classes = int(model(x[:1]).shape[1])
            attacks = _attack_list(adversary, num_classes, flags)
            _sanity_checks(model, x[:batch_size], y[:batch_size], logger)
            state = _start(model, x, y, batch_size, _settings(adversary, eps, norm, version, seed), state_path)
            robust = torch.tensor(state.robust, dtype=torch.bool, device=x.device)
            for attack in attacks:
                if attack in state.done:
                    continue
                adversary.attacks_to_run = [attack]
                _attack_robust(adversary, x, y, robust, batch_size, progress)
                state.robust, state.done[attack] = robust.tolist(), robust.float().mean().item()
                state.save(state_path)
            _square_check(state, logger)
    finally:
        logger.removeHandler(collector)
    return AutoAttackResult(
        accuracy=robust.float().mean().item(),
        robust=robust,
        n=len(x),
        version=version,
        attacks=attacks,
        eps=eps,
        norm=norm,
        seconds=time.perf_counter() - start,
        per_attack=dict(state.done),
        flags=flags + collector.messages,
    )
