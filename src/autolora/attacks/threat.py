"""Threat models: the geometry of an attack (start, step, projection), apart from its loop."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor

from ..errors import ConfigError
from .noise import BatchNoise


class RandomStart(enum.Enum):
    """Where PGD starts: the clean input, uniform in the ball, or ``x + 0.001 * N(0, 1)`` (TRADES)."""

    NONE = "none"
    UNIFORM = "uniform"
    NORMAL = "normal"


TRADES_START_STD = 0.001


def _normal(x: Tensor, noise: BatchNoise | None) -> Tensor:
    return torch.randn_like(x) if noise is None else noise.normal_like(x)


def _uniform(x: Tensor, noise: BatchNoise | None) -> Tensor:
    """Uniform in [-1, 1), shaped like ``x``."""
    return 2 * torch.rand_like(x) - 1 if noise is None else noise.uniform_like(x)


def _per_example_norm(t: Tensor, p: float) -> Tensor:
    return t.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (t.ndim - 1)))


@dataclass(frozen=True)
class ThreatModel(ABC):
    """A perturbation budget ``eps`` around an input in [0, 1]."""

    eps: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.eps <= 1.0:
            raise ConfigError("eps", self.eps, "use a budget in [0, 1] (e.g. 8/255)")

    name = "?"

    @abstractmethod
    def uniform(self, x: Tensor, noise: BatchNoise | None = None) -> Tensor:
        """A random point of the ball around ``x`` (before clipping to [0, 1])."""

    @abstractmethod
    def ascent(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        """One steepest-ascent step of length ``step_size`` in this norm."""

    @abstractmethod
    def project_ball(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """The nearest point of the ball around ``x``."""

    def project(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Project onto the ball around ``x``, then clip to the image range [0, 1]."""
        return self.project_ball(x_adv, x).clamp_(0.0, 1.0)

    def start(self, x: Tensor, kind: RandomStart, noise: BatchNoise | None = None) -> Tensor:
        """The first iterate; ``noise`` (optional) supplies the random numbers."""
        if kind is RandomStart.UNIFORM:
            x_adv = self.uniform(x, noise)
        elif kind is RandomStart.NORMAL:
            x_adv = x + TRADES_START_STD * _normal(x, noise)
        else:
            x_adv = x.clone()
        return self.project(x_adv, x)

    @abstractmethod
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-example distance in this norm."""


@dataclass(frozen=True)
class LinfBall(ThreatModel):
    """``||x_adv - x||_inf <= eps``: sign-gradient steps, coordinate-wise clipping."""

    name = "Linf"

    def uniform(self, x: Tensor, noise: BatchNoise | None = None) -> Tensor:
        return x + self.eps * _uniform(x, noise)

    def ascent(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return x_adv + step_size * grad.sign()

    def project_ball(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return torch.min(torch.max(x_adv, x - self.eps), x + self.eps)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).abs().amax(dim=1)


@dataclass(frozen=True)
class L2Ball(ThreatModel):
    """``||x_adv - x||_2 <= eps``: normalised-gradient steps, radial projection."""

    name = "L2"

    def uniform(self, x: Tensor, noise: BatchNoise | None = None) -> Tensor:
        direction = _normal(x, noise)
        direction = direction / _per_example_norm(direction, 2).clamp_min(1e-12)
        dims = x[0].numel()
        unit = (_uniform(x.new_empty(x.shape[0]), noise) + 1) / 2
        radius = self.eps * unit.pow(1.0 / dims)
        return x + direction * radius.view(-1, *([1] * (x.ndim - 1)))

    def ascent(self, x_adv: Tensor, grad: Tensor, step_size: float) -> Tensor:
        return x_adv + step_size * grad / _per_example_norm(grad, 2).clamp_min(1e-12)

    def project_ball(self, x_adv: Tensor, x: Tensor) -> Tensor:
        delta = x_adv - x
        factor = (self.eps / _per_example_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
        return x + delta * factor

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        return (x_adv - x).flatten(1).norm(p=2, dim=1)


THREAT_MODELS: dict[str, type[ThreatModel]] = {"Linf": LinfBall, "L2": L2Ball}


NORMS = tuple(THREAT_MODELS)
DEFAULT_RELATIVE_STEP = 0.25  # PGD's step is eps / 4: 2/255 at 8/255, as in the AutoLoRa and TRADES code


def threat_model(norm: str, eps: float) -> ThreatModel:
    """The threat model for ``norm`` ("Linf" or "L2") and budget ``eps``."""
    if norm not in THREAT_MODELS:
        raise ConfigError("norm", norm, f"choose one of: {', '.join(THREAT_MODELS)}")
    return THREAT_MODELS[norm](eps)


@dataclass(frozen=True)
class Threat:
    """The one threat model of a run: norm, budget and PGD's step-size rule.

    Training attacks, validation, the test evaluation, AutoAttack and ``diagnose`` all read
    their budget from one ``Threat``, so a run cannot be evaluated at a budget other than
    the one it records.
    """

    eps: float = 8 / 255
    norm: str = "Linf"
    relative_step: float = DEFAULT_RELATIVE_STEP

    def __post_init__(self) -> None:
        self.ball()  # validates norm and eps
        if not 0.0 < self.relative_step <= 1.0:
            raise ConfigError("relative-step", self.relative_step, "use a PGD step in (0, 1] times eps")

    def ball(self) -> ThreatModel:
        return threat_model(self.norm, self.eps)

    @property
    def step_size(self) -> float:
        return self.eps * self.relative_step

    def describe(self) -> str:
        """``Linf eps 0.0314 (8/255)``: what every table and log line states."""
        fraction = Fraction(self.eps).limit_denominator(255)
        exact = f" ({fraction.numerator}/{fraction.denominator})" if fraction.denominator in (255, 256) else ""
        return f"{self.norm} eps {self.eps:.4g}{exact}"

    def to_dict(self) -> dict[str, float | str]:
        return {"norm": self.norm, "eps": self.eps, "relative_step": self.relative_step}

    @classmethod
    def from_dict(cls, data: dict[str, float | str]) -> Threat:
        relative_step = float(data.get("relative_step", DEFAULT_RELATIVE_STEP))
        return cls(float(data["eps"]), str(data.get("norm", "Linf")), relative_step)
