"""Typed, validated settings of a training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..attacks import PGD, BatchNoise, CrossEntropyObjective, MarginObjective, RandomStart, Threat
from ..attacks.objectives import UntargetedObjective
from ..errors import ConfigError
from ..eval import EvalConfig
from ..lora import BRANCH_SCALES
from .batchnorm import ATTACK_TURNS_TO_RUNNING, BATCHNORM_STATS, READ_STATISTICS
from .head_start import HEAD_INITS
from .methods import get_method
from .methods.autolora import NATURAL_WEIGHTS
from .schedule import SCHEDULES
from .stem import STEMS

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
VAL_METRICS = ("robust_acc", "robust_loss")
VAL_ATTACK_OBJECTIVES = {"ce": CrossEntropyObjective, "dlr": MarginObjective}  # what validation PGD maximises
# the settings a field left as None takes from the method's recipe
RECIPE_FIELDS = ("lr", "epochs", "head_init", "period_steps", "val_metric", "val_attack_loss", "average_epochs",
                 "clean_share", "batchnorm", "attack_start", "natural_batchnorm", "fixed_teacher",
                 "natural_weight", "read_statistics", "spike_ratio", "stem")  # fmt: skip
ATTACK_STARTS = tuple(start.value for start in RandomStart)
NATURAL_BATCHNORM = {  # AutoLoRa's natural path's BatchNorm running statistics (lora/statistics.py)
    "shared": "the feature extractor's own, updated by both paths (the paper)",
    "own": "a set of its own, so the model's own statistics are the deployed path's alone",
}
RECIPES = {
    "default": "each method's measured defaults (see docs/method.md)",
    "paper": "the AutoLoRa paper's algorithm exactly: LR 0.1, epoch-based rule, zero head",
}


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a training run, validated where they are built.

    Fields left as None take the defaults of the method's ``recipe`` (see ``autolora
    methods``); for a method that decides its own length, ``epochs`` is a cap; an ``lr`` that
    stays None (or ``find_lr``) is chosen by an LR range test when the run starts. The test evaluation always
    uses the run's ``threat``: an ``evaluation`` given another one is refused. Build a new
    config rather than ``dataclasses.replace`` one: the defaults it filled in would be kept.
    """

    method: str
    recipe: str = "default"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 1e-4
    beta: float = 6.0
    rank: int = 8
    branch_scale: str = "1/r"  # AutoLoRa: the branch's update scale (BRANCH_SCALES; experimental)
    threat: Threat = field(default_factory=Threat)
    attack_steps: int = 10
    val_attack_steps: int | None = None
    scalar_samples: int | None = 5000
    period_steps: int | None = None  # an epoch runs at least this many optimizer steps (None: the recipe's)
    val_metric: str | None = None  # "robust_acc" or "robust_loss" (lower is better); None: the recipe's
    val_attack_loss: str | None = None  # what the validation PGD maximises: "ce" or "dlr"; None: the recipe's
    schedule: str | None = None  # None: the method's own
    average_epochs: int | None = None  # validate and deploy an average of this many epochs' weights; 0: none
    head_init: str | None = None  # None: the method's own (zero for all but RoLI)
    clean_share: float | None = None  # AutoLoRa: deployed-path CE share on clean images; None: the recipe's
    batchnorm: str | None = None  # the deployed model's statistics (BATCHNORM_STATS); None: the recipe's
    attack_start: str | None = None  # training attack's start (ATTACK_STARTS); None: recipe's, else method's
    natural_batchnorm: str | None = None  # AutoLoRa: NATURAL_BATCHNORM; None: the recipe's
    fixed_teacher: bool | None = None  # AutoLoRa: the KL term's natural side detached; None: the recipe's
    natural_weight: str | None = None  # AutoLoRa: the natural CE's weight (NATURAL_WEIGHTS); None: the recipe's
    read_statistics: str | None = None  # READ_STATISTICS: the training attack's, validation's, λ's; None: recipe's
    spike_ratio: float | None = None  # a step's gradient norm over its 8 predecessors' median that counts as a
    # spike (train/spikes.py): an epoch with one that ends no better than it began halves the LR and rolls back
    find_lr: bool = False  # choose the initial LR by a range test instead (train/lr_search.py; experimental)
    warmup_steps: int = 0  # the LR rises linearly from 1/warmup_steps of the schedule's to all of it (experimental)
    stem: str | None = None  # STEMS: whether fine-tuning keeps the source's first convolution; None: the recipe's
    precision: str = "fp32"
    channels_last: bool = True  # measured faster on CPU too (benchmarks/RESULTS.md)
    compile: bool = False  # torch.compile the model's forward for training (runtime.compile_model)
    seed: int = 0
    save_every: int | None = None
    evaluation: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        method = get_method(self.method)
        self._set("method", method.name)  # an alias ("aff") is recorded as the method's own name
        if self.recipe not in RECIPES:
            raise ConfigError("recipe", self.recipe, f"choose one of: {', '.join(RECIPES)}")
        recipe = method.recipe(self.recipe)
        if self.find_lr and self.lr is not None:
            raise ConfigError("lr", self.lr, "give an LR or ask for find_lr, not both")
        for name in RECIPE_FIELDS:
            if getattr(self, name) is None:
                self._set(name, getattr(recipe, name))
        if self.attack_start is None:
            self._set("attack_start", method.attack_start)
        if self.clean_share and self.method != "autolora":
            raise ConfigError("clean-share", self.clean_share, "only autolora has a deployed path beside a branch")
        if self.natural_batchnorm != "shared" and self.method != "autolora":
            raise ConfigError("natural-batchnorm", self.natural_batchnorm, "only autolora has a natural path")
        if self.fixed_teacher is True and self.method != "autolora":
            raise ConfigError("fixed-teacher", self.fixed_teacher, "only autolora has a natural path to distil from")
        if self.branch_scale != "1/r" and self.method != "autolora":
            raise ConfigError("branch-scale", self.branch_scale, "only autolora has a low-rank branch")
        if self.natural_weight != "lambda1" and self.method != "autolora":
            raise ConfigError("natural-weight", self.natural_weight, "only autolora has a natural objective")
        if self.find_lr:
            self._set("lr", None)  # the trainer runs the range test before the first epoch
        self._check()
        if self.batchnorm != "training" and not method.learns_batchnorm:  # valid (checked above), not here
            raise ConfigError("batchnorm", self.batchnorm, f"{self.method} keeps the source's BatchNorm statistics")
        if self.batch_statistics and not method.learns_batchnorm:
            raise ConfigError("read-statistics", self.read_statistics, f"{self.method} keeps the source's statistics")
        if self.evaluation.threat not in (None, self.threat):
            raise ConfigError(
                "evaluation.threat",
                self.evaluation.threat,
                f"a run is evaluated under its own threat model ({self.threat.describe()}); leave it unset",
            )
        self._set("evaluation", replace(self.evaluation, threat=self.threat))

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check(self) -> None:
        for name in ("find_lr", "channels_last", "compile", "fixed_teacher"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name.replace("_", "-"), getattr(self, name), "use True or False")
        positive = {"epochs": self.epochs, "batch-size": self.batch_size, "rank": self.rank}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(name, value, "use a positive number")
        if self.lr is not None and not (self.lr > 0 and self.lr < float("inf")):
            raise ConfigError("lr", self.lr, "use a positive, finite learning rate")
        if not 0 <= self.momentum < 1:
            raise ConfigError("momentum", self.momentum, "use a momentum in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError("weight-decay", self.weight_decay, "use a non-negative weight decay")
        if self.beta < 0:
            raise ConfigError("beta", self.beta, "use a non-negative TRADES beta")
        optional = {"attack-steps": self.attack_steps, "val-attack-steps": self.val_attack_steps,
                    "scalar-samples": self.scalar_samples, "save-every": self.save_every,
                    "period-steps": self.period_steps}  # fmt: skip
        for name, value in optional.items():
            if value is not None and value < 1:
                raise ConfigError(name, value, "use a positive number")
        if self.warmup_steps < 0:
            raise ConfigError("warmup-steps", self.warmup_steps, "use 0 (no warm-up) or a positive number of steps")
        if not 0 <= self.clean_share <= 1:
            raise ConfigError("clean-share", self.clean_share, "use a share in [0, 1]")
        if self.spike_ratio != 0 and not 1 < self.spike_ratio < float("inf"):
            raise ConfigError("spike-ratio", self.spike_ratio, "use 0 (off) or a multiple of the recent median above 1")
        if self.average_epochs is not None and self.average_epochs < 0:
            raise ConfigError("average-epochs", self.average_epochs, "use 0 (no average) or a positive number")
        choices = {"schedule": (self.schedule, SCHEDULES), "precision": (self.precision, PRECISIONS),
                   "head-init": (self.head_init, HEAD_INITS), "val-metric": (self.val_metric, VAL_METRICS),
                   "val-attack-loss": (self.val_attack_loss, VAL_ATTACK_OBJECTIVES),
                   "batchnorm": (self.batchnorm, BATCHNORM_STATS),
                   "attack-start": (self.attack_start, ATTACK_STARTS),
                   "natural-batchnorm": (self.natural_batchnorm, NATURAL_BATCHNORM),
                   "natural-weight": (self.natural_weight, NATURAL_WEIGHTS),
                   "read-statistics": (self.read_statistics, READ_STATISTICS),
                   "branch-scale": (self.branch_scale, BRANCH_SCALES), "stem": (self.stem, STEMS)}  # fmt: skip
        for name, (value, table) in choices.items():
            if value is not None and value not in table:
                raise ConfigError(name, value, f"choose one of: {', '.join(table)}")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    @property
    def resolved_schedule(self) -> str:
        """The LR schedule this run follows: its own, else its recipe's (which a newer version may change)."""
        return self.schedule or get_method(self.method).recipe(self.recipe).schedule

    @property
    def batch_statistics(self) -> bool:
        """Whether the model's reads during training (the training attack, the validation, AutoLoRa's
        natural accuracy; the attack's at the start LR) normalise with batch statistics rather than the running ones."""
        return self.read_statistics in ("batch", ATTACK_TURNS_TO_RUNNING)

    def attack_reads_batch_statistics(self, lr: float, initial_lr: float) -> bool:
        """Whether the training attack normalises with batch statistics in an epoch at ``lr``: with
        "batch-then-running-attack" only while the LR is at its start; once it has fallen the running
        averages follow the weights, and the attack meets the model as it is deployed, with fixed statistics."""
        if self.read_statistics == ATTACK_TURNS_TO_RUNNING:
            return lr >= initial_lr
        return self.batch_statistics

    @property
    def val_objective(self) -> type[UntargetedObjective]:
        """What the validation PGD maximises, built from the batch's labels."""
        return VAL_ATTACK_OBJECTIVES[self.val_attack_loss]

    def attack(
        self,
        start: RandomStart,
        steps: int | None = None,
        autocast: torch.dtype | None = None,
        noise: BatchNoise | None = None,
        batch_statistics: bool = False,
    ) -> PGD:
        """PGD in the run's threat model: ``attack_steps`` steps unless ``steps`` says otherwise
        (``batch_statistics``: for the reads during training, ``self.batch_statistics``)."""
        return PGD(
            self.threat.ball(),
            steps=self.attack_steps if steps is None else steps,
            step_size=self.threat.step_size,
            random_start=start,
            autocast=autocast,
            noise=noise,
            batch_statistics=batch_statistics,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["evaluation"] = {
            k: (str(v) if k == "autoattack_state" and v else v) for k, v in data["evaluation"].items()
        }
        return data

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues (not ``compile``: how the
        steps run, not what they compute; a run may continue where no compiler is), nor ``evaluation``
        and ``batchnorm``, which act after the last epoch. A setting added later is left out while it
        is off (``comparable_key``)."""
        data = self.to_dict()
        for name in ("evaluation", "compile", "batchnorm"):
            data.pop(name)
        return comparable_key(data)


def comparable_key(training: dict[str, Any]) -> dict[str, Any]:
    """A resume key's settings without those added later where they hold the value every run had
    before them: a run written before such a setting existed resumes, and so does one written since,
    which records it."""
    before = settings_before_they_existed(training["method"])
    return {k: v for k, v in training.items() if k not in before or v != before[k]}


def settings_before_they_existed(method: str) -> dict[str, Any]:
    """The settings added after runs were written, at the value runs of ``method`` had before them."""
    return {"average_epochs": 0, "clean_share": 0.0, "attack_start": get_method(method).attack_start,
            "natural_batchnorm": "shared", "fixed_teacher": False, "read_statistics": "running",
            "spike_ratio": 0.0, "warmup_steps": 0, "natural_weight": "lambda1", "branch_scale": "1/r",
            "stem": "trained"}  # fmt: skip
