"""What a training method is: one object that owns everything particular to it.

The trainer is the generic loop (epochs, validation, the LR schedule's decisions, resume,
export, the test evaluation); it asks the method, through the hooks below, what to train, on
which loss, what to do at the start of an epoch and what the deployed model is. A new method
is one file with one subclass, plus one line in ``train/methods/__init__.py`` (or a call to
``register_method`` from your own code); see docs/extending.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from ..attacks import PGD, BatchNoise, RandomStart
from ..data import BatchLoader, ImageSet
from ..distributed import DistContext
from ..models import ImageClassifier
from .batchnorm import ATTACK_TURNS_TO_RUNNING
from .objectives import LossOutput, Objective
from .schedule import SCHEDULES, Schedule

if TYPE_CHECKING:
    from .config import TrainConfig


@dataclass(frozen=True)
class MethodDefaults:
    """A method's own defaults (a recipe): its LR, its length in epochs and its LR schedule.

    ``lr`` None: chosen by an LR range test on the method's objective (``train/lr_search.py``);
    ``decides_length``: the schedule stops the run by itself and ``epochs`` is only a cap;
    ``head_init``: how the new head starts (``train/head_start.py``);
    ``period_steps``: an epoch repeats the training set until it has this many optimizer steps;
    ``val_metric``: what the schedule compares on the validation split;
    ``val_attack_loss``: what the validation PGD maximises, cross-entropy ("ce") or the DLR margin ("dlr");
    ``average_epochs``: validate and deploy a moving average of the weights over this many epochs (0: none);
    ``clean_share``: the share of AutoLoRa's deployed-path cross-entropy taken on the clean image (0: none);
    ``batchnorm``: the deployed model's BatchNorm statistics, "training" or "recomputed" (``train/batchnorm.py``);
    ``attack_start``: where the training attack starts ("uniform", "normal" or "none"; None: the method's own);
    ``natural_batchnorm``: AutoLoRa's natural path's BatchNorm statistics, "shared" with the deployed path or its "own";
    ``fixed_teacher``: AutoLoRa's KL term leaves the natural path alone (its side detached), so the branch learns
    from natural CE only and the deployed path distils from it as from a fixed teacher;
    ``natural_weight``: what AutoLoRa's natural cross-entropy is weighed by, "lambda1" (the paper's) or "full";
    ``read_statistics``: what BatchNorm normalises with where training reads the model in eval mode (the
    training attack, the validation, AutoLoRa's natural accuracy): the "running" averages, each "batch"'s own,
    or each batch's own but the training attack's the running ones once the LR has fallen (ATTACK_TURNS_TO_RUNNING);
    ``spike_ratio``: a step whose gradient norm is this many times the median of the 8 before it is a spike,
    and an epoch with one that ends no better on validation than the model it started from halves the LR of a
    schedule that halves (AutoLoRa's rule) and rolls back to the best model, as a non-finite loss does (0: off);
    ``stem``: what fine-tuning does with the feature extractor's first convolution (``train/stem.py``).
    """

    lr: float | None
    epochs: int
    schedule: str
    decides_length: bool = False
    head_init: str = "zero"
    period_steps: int | None = None
    val_metric: str = "robust_acc"
    val_attack_loss: str = "ce"
    average_epochs: int = 0
    clean_share: float = 0.0
    batchnorm: str = "training"
    attack_start: str | None = None
    natural_batchnorm: str = "shared"
    fixed_teacher: bool = False
    natural_weight: str = "lambda1"
    read_statistics: str = "running"
    spike_ratio: float = 0.0
    stem: str = "trained"


STEM_NOTES = {"trained": "", "frozen": ", the stem frozen", "frozen-if-patches": ", a patch-embedding stem frozen"}
FIXED_FINETUNE = MethodDefaults(lr=0.01, epochs=30, schedule="step")  # the baselines: ÷10 at 50% and 75%
PRETRAIN = MethodDefaults(lr=0.1, epochs=10, schedule="cosine")


@dataclass(frozen=True)
class MethodContext:
    """What a method may use besides the model: the training images and how to batch them."""

    train: ImageSet
    loader: Callable[[ImageSet, int], BatchLoader]  # (images, batch size) -> an unshuffled loader
    dist: DistContext


class Method(ABC):
    """A robust fine-tuning (or pre-training) method.

    Class attributes describe it (``autolora methods`` prints them); the hooks have defaults
    that fit a method training every parameter of a plain model on one loss.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    loss_description: ClassVar[str]
    trains: ClassVar[str] = "everything"
    defaults: ClassVar[MethodDefaults]
    pretrain: ClassVar[bool] = False
    aliases: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[str, ...]] = ()  # the method's own columns in metrics.jsonl
    recipes: ClassVar[dict[str, MethodDefaults]] = {}  # named alternatives to ``defaults`` ("paper")
    learns_batchnorm: ClassVar[bool] = True  # False: it keeps (some of) the source's statistics as they are
    attack_start: ClassVar[str] = "uniform"  # where its training attack starts unless the recipe says otherwise

    @classmethod
    def recipe(cls, name: str) -> MethodDefaults:
        """The defaults of recipe ``name``: "default" is ``defaults``; a method without a recipe of
        that name has only one way to run, its defaults."""
        return cls.recipes.get(name, cls.defaults) if name != "default" else cls.defaults

    def __init__(self, config: TrainConfig, noise: BatchNoise | None = None) -> None:
        self.config = config
        self.noise = noise
        self.attacks: list[PGD] = []  # the training attacks its objective crafts with
        self.objective = self.build_objective()

    @abstractmethod
    def build_objective(self) -> Objective:
        """The loss of one batch (see ``train/objectives.py``)."""

    def training_attack(self) -> PGD:
        """The run's training attack, from the run's ``attack_start``, in its precision and random stream."""
        cfg = self.config
        start = RandomStart(cfg.attack_start)
        attack = cfg.attack(start, autocast=cfg.autocast_dtype, noise=self.noise, batch_statistics=cfg.batch_statistics)
        self.attacks.append(attack)
        return attack

    def attack_statistics(self, batch: bool) -> None:
        """Make the training attack normalise with each batch's statistics, or with the running ones."""
        for attack in self.attacks:
            attack.batch_statistics = batch

    def prepare(self, model: ImageClassifier) -> None:  # noqa: B027 - an optional hook
        """Change the model before training (add branches, freeze parts); runs before the optimizer exists."""

    def setup(self, context: MethodContext) -> None:  # noqa: B027 - an optional hook
        """Build what the method needs besides the model (e.g. a loader of its own)."""

    def parameters(self, model: ImageClassifier) -> Iterable[nn.Parameter]:
        """The parameters the optimizer updates."""
        return (p for p in model.parameters() if p.requires_grad)

    def begin_epoch(self, model: ImageClassifier, epoch: int) -> dict[str, Any]:
        """Per-epoch work before the epoch's batches; returns the values of ``columns``."""
        return {}

    def loss_weight(self) -> float:
        """The sum of the loss's term weights, which a step's gradient norm scales with."""
        return 1.0

    def reweighs_loss(self, epoch: int) -> bool:
        """Whether the loss's weights are set afresh as ``epoch`` begins, not just re-measured: the
        gradient spike rule then reads the steps before at the new weights (``GradientSpikes.rescale``)."""
        return False

    def loss(self, net: nn.Module, x: Tensor, y: Tensor) -> LossOutput:
        return self.objective(net, x, y)

    def train_mode(self, net: nn.Module, model: ImageClassifier) -> None:
        """Put the (possibly DDP-wrapped) ``net`` in its training mode."""
        net.train()

    def export(self, model: ImageClassifier) -> ImageClassifier:
        """The deployed model, in the original architecture (``model`` may be changed in place)."""
        return model

    def snapshot_files(self, model: ImageClassifier) -> dict[str, tuple[dict[str, Tensor], dict[str, str]]]:
        """Extra tensor files saved beside a snapshot: file name -> (tensors, metadata)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the method keeps between epochs, for resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - an optional hook
        pass

    def build_schedule(self, lr: float, epochs: int) -> Schedule:
        """The LR schedule over ``epochs`` epochs (of the trainer's, which may hold several passes)."""
        return SCHEDULES[self.config.resolved_schedule](lr, epochs)

    @classmethod
    def describe(cls) -> dict[str, str]:
        """One row of ``autolora methods``."""
        d = cls.defaults
        length = f"≤{d.epochs} epochs (decides its own)" if d.decides_length else f"{d.epochs} epochs"
        lr = "found by a range test" if d.lr is None else f"{d.lr:g}"
        return {
            "method": cls.name,
            "used by": "pretrain" if cls.pretrain else "finetune",
            "description": cls.description,
            "loss": cls.loss_description,
            "trains": cls.trains,
            "default schedule": f"{d.schedule}, LR {lr}, {length}"
            + ("" if d.head_init == "zero" else f", head: {d.head_init}")
            + ("" if d.period_steps is None else f", epochs of ≥{d.period_steps} steps")
            + ("" if d.val_attack_loss == "ce" else f", validation PGD on the {d.val_attack_loss.upper()} loss")
            + ("" if d.batchnorm == "training" else ", BatchNorm statistics re-estimated at the end")
            + ("" if d.attack_start in (None, cls.attack_start) else f", training attack from a {d.attack_start} start")
            + ("" if d.natural_batchnorm == "shared" else ", the natural path's own BatchNorm statistics")
            + ("" if not d.fixed_teacher else ", the natural branch as a fixed teacher")
            + ("" if d.natural_weight == "lambda1" else ", the natural CE at full weight")
            + ("" if d.read_statistics == "running" else ", reads in training on batch statistics")
            + ("" if d.read_statistics != ATTACK_TURNS_TO_RUNNING else " (the attack's on the running ones later)")
            + ("" if not d.spike_ratio else f", halves on a harmful gradient spike (>{d.spike_ratio:g}x the median)")
            + STEM_NOTES[d.stem]
            + ("" if not cls.recipes else f"; recipes: default, {', '.join(cls.recipes)}"),
        }
