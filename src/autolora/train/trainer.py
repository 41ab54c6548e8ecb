"""One trainer for every method: epochs, automatic scalars, validation, LR rule, resume, export."""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..attacks import BatchNoise, RandomStart
from ..attacks.pgd import evaluating
from ..data import BatchLoader, ImageSet, PreparedData, limit
from ..data.loader import BatchInfo
from ..distributed import DistContext, restore_batchnorm, use_global_batchnorm
from ..errors import CheckpointError, ConfigError
from ..eval import evaluate
from ..eval.metrics import METRIC_KEYS
from ..fileio import read_json, save_tensors, write_json
from ..models import ImageClassifier, save_run_model
from ..runtime import compile_model
from .averaging import WeightAverage, snapshot
from .batchnorm import BATCHNORM_SAMPLES, recompute_batchnorm
from .config import TrainConfig, comparable_key
from .head_start import HeadStartContext, describe_head_start, start_head
from .lr_search import RangeTest, lr_range_test
from .method import MethodContext
from .methods import get_method
from .objectives import LossOutput
from .progress import LogReporter, Reporter
from .run_dir import AUTOATTACK_STATE, SNAPSHOTS, SUMMARY, RunDirectory
from .schedule import Decision
from .spikes import GradientSpikes
from .state import load_state, rng_state, save_state, seed_epoch, set_rng_state
from .stem import freeze_stem

PASS_STREAM = 100_003  # data-order keys of an epoch's repeated passes: epoch + pass * PASS_STREAM
NOISE_STREAM = 1_000_000  # random-start keys: epoch * NOISE_STREAM + batch (validation: + NOISE_STREAM / 2)
LR_SEARCH_KEYS = NOISE_STREAM // 4  # the LR search's random starts: epoch 0's stream, apart from the head start's
LR_SEARCH_ORDER = 1_000  # its data orders: keys -(1000 + pass), apart from the head start's -1, -2, ...
BATCHNORM_KEYS = 3 * NOISE_STREAM // 4  # the random starts of the BatchNorm re-estimate: epoch 0's stream too


def build_optimizer(parameters: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer of every method: SGD with the run's momentum and weight decay (the paper's). Its
    LR is the schedule's, which sets it before every epoch; an LR still to be found starts at the
    range test's top, which the found one replaces before the first step."""
    lr = config.lr or RangeTest().lr_max
    return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


@dataclass
class Timing:
    """Seconds spent in each phase, summed over the run (and over resumes)."""

    train: float = 0.0
    scalars: float = 0.0
    validation: float = 0.0
    test: float = 0.0

    def summary(self) -> dict[str, float]:
        return {f"time_{k}_s": round(v, 2) for k, v in asdict(self).items()}


@dataclass
class Compute:
    """Work done, summed over the run: optimizer steps, and forward+backward passes of the attacks
    (training and validation; the test evaluation's are in its own record)."""

    optimizer_steps: int = 0
    attack_passes: int = 0


@dataclass
class EpochResult:
    loss: float | None
    accuracy: float | None
    fault: str | None = None


class Trainer:
    """Trains ``model`` on ``data`` with ``config.method`` and writes the run to ``run``.

    Every method shares this loop: the head start (``config.head_init``), then per epoch the
    method's own work (AutoLoRa's scalars), one or more passes of the method's loss (as many as
    ``period_steps`` optimizer steps need; ``config.epochs`` counts passes), validation clean and
    robust accuracy on the held-out split, and the schedule's decision (next LR, roll back to
    the best model, stop). What is particular to a method is asked of it (``train/method.py``).
    After each epoch the full state is written atomically, so ``fit(resume=True)`` continues a killed run
    exactly. The exported model is the best on validation; the test split is used only for
    the final report.
    """

    def __init__(
        self,
        model: ImageClassifier,
        architecture: str,
        data: PreparedData,
        config: TrainConfig,
        run: RunDirectory,
        *,
        device: torch.device,
        dist: DistContext = DistContext(),
        reporter: Reporter | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        if data.val is None:
            raise ConfigError("val-fraction", 0, "training needs a validation split for model selection")
        if config.batch_size < 2 * dist.world_size:
            raise ConfigError("batch-size", config.batch_size, f"use at least 2 per process ({2 * dist.world_size})")
        self.model, self.architecture, self.data, self.config = model, architecture, data, config
        self.run, self.device, self.dist = run, device, dist
        self.reporter = reporter or LogReporter()
        self.record = record or {}
        self.noise = BatchNoise(config.seed)
        self.method = get_method(config.method)(config, self.noise)
        self.timing = Timing()
        self.compute = Compute()
        self.metrics: list[dict[str, Any]] = []
        self.head_start: dict[str, Any] | None = None  # what the head start did, once it ran
        self.lr_search: dict[str, Any] | None = None if config.lr is None else {"lr": config.lr, "given": True}
        self.stop_reason: str | None = None
        self.finished = False  # the test evaluation ran and the run's files are written
        self._prepare_model()
        self.optimizer = build_optimizer(list(self.method.parameters(self.model)), config)
        self.best_state = snapshot(self.model)
        self._build_loaders()
        self.average = WeightAverage(self.model, self._average_horizon())
        self.spikes = GradientSpikes()
        # --epochs counts passes over the data; an epoch of the schedule may hold several (period_steps)
        periods = max(1, config.epochs // self._passes())  # never more passes than the cap
        self.schedule = self.method.build_schedule(self.optimizer.param_groups[0]["lr"], periods)

    # ------------------------------------------------------------------ set-up

    def _prepare_model(self) -> None:
        model = self.model.to(self.device)
        seed_epoch(self.config.seed, 0)  # e.g. a branch's initialisation depends on the seed alone
        self.method.prepare(model)
        self.frozen_stem = freeze_stem(model, self.config.stem)
        if self.config.channels_last:
            model.to(memory_format=torch.channels_last)
        # Compiled in place, so every call of the model is compiled (the attacks, both AutoLoRa paths,
        # validation, the scalars) while state dicts, snapshots and the export stay those of the
        # plain model; the test evaluation runs on the exported copy, eagerly.
        self.compiled = self.config.compile and compile_model(model, self.device)
        self.net: nn.Module = model
        if self.dist.enabled:
            use_global_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)

    def _build_loaders(self) -> None:
        cfg = self.config
        self.train_loader = self._training_loader(self.data.train, shuffle=True)
        self.val_loader = self._loader(self.data.val, 2 * cfg.batch_size)
        self.method.setup(MethodContext(self.data.train, self._loader, self.dist))
        self.val_attack = cfg.attack(RandomStart.UNIFORM, steps=cfg.val_attack_steps, noise=self.noise,
                                     batch_statistics=cfg.batch_statistics)  # fmt: skip

    def _training_loader(self, images: ImageSet, shuffle: bool) -> BatchLoader:
        """This process's part of ``images`` as training steps see them: augmented, in batches that
        BatchNorm in training mode can take."""
        return BatchLoader(
            images,
            self.model.spec,
            self.config.batch_size,
            self.device,
            shuffle=shuffle,
            augment=self.data.augment,
            seed=self.config.seed,
            shard=self.dist.shard,
            min_batch=2 * self.dist.world_size,  # BatchNorm needs two examples; every process needs one
        )

    def _loader(self, images: ImageSet, batch_size: int) -> BatchLoader:
        """An unshuffled loader of this process's part of ``images``."""
        return BatchLoader(images, self.model.spec, batch_size, self.device, shard=self.dist.shard)

    def _attack_steps(self) -> int:
        """Attack forward-backward passes per training step: the method's attack's steps, if it has one."""
        attack = getattr(self.method.objective, "attack", None)
        return attack.steps if attack is not None else 0

    def _memory_format(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _set_train_mode(self) -> None:
        self.method.train_mode(self.net, self.model)

    # ------------------------------------------------------------------ resume

    def _resume_key(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues: settings (with the schedule a recipe
        chose, which a newer version may choose differently), data and source model."""
        return {
            "training": self.config.resume_key(),
            "schedule": self.config.resolved_schedule,
            "data": self.record.get("data"),
            "source": (self.record.get("source") or {}).get("model"),
            "num_classes": self.data.num_classes,
        }

    def _state(self) -> dict[str, Any]:
        optimizer = self.optimizer.state_dict()
        return {
            "config": self._resume_key(),
            "epoch": self.schedule.epoch,
            "model": self.model.state_dict(),
            "best": self.best_state,
            "average": self.average.state_dict(),
            "optimizer": optimizer,
            "schedule": self.schedule.state_dict(),
            "method": self.method.state_dict(),
            "head_start": self.head_start,
            "lr_search": self.lr_search,
            "metrics": self.metrics,
            "spikes": self.spikes.state_dict(),
            "timing": asdict(self.timing),
            "compute": asdict(self.compute),
            "stop_reason": self.stop_reason,
            "finished": self.finished,
            "rng": rng_state(),
        }

    def _save_state(self) -> None:
        if self.dist.is_main:
            save_state(self.run.state, self._state())
            self.run.write_metrics(self.metrics)

    def _restore(self) -> None:
        state = load_state(self.run.state)
        if _comparable(state["config"]) != _comparable(self._resume_key()):
            raise CheckpointError(
                f"{self.run.state} was written with other settings, data or source model; resume with the "
                "same command, or pass --overwrite to start again"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{self.run.state} does not fit this model: {str(exc).splitlines()[0]}") from None
        self.best_state = state["best"]
        if "average" in state:
            self.average.load_state_dict(state["average"])
        optimizer = state["optimizer"]
        # parameter indices come back as strings; an optimizer may keep entries of its own there
        optimizer["state"] = {int(k) if str(k).isdigit() else k: v for k, v in optimizer["state"].items()}
        self.optimizer.load_state_dict(optimizer)
        self.schedule.load_state_dict(state["schedule"])
        self.method.load_state_dict(state["method"])
        self.head_start = state.get("head_start")
        self.lr_search = state.get("lr_search", self.lr_search)
        self.metrics = list(state["metrics"])
        if "spikes" in state:
            self.spikes.load_state_dict(state["spikes"])
        self.timing = Timing(**state["timing"])
        self.compute = Compute(**state.get("compute", {}))
        self.stop_reason = state["stop_reason"]
        self.finished = bool(state.get("finished", False))
        set_rng_state(state["rng"])
        self.reporter.message(f"resumed after epoch {self.schedule.epoch} from {self.run.state}")

    # ------------------------------------------------------------------ one epoch

    def _passes(self) -> int:
        """Passes over the training set per epoch: one, or as many as ``period_steps`` optimizer steps
        need (never more than the run's ``epochs``, which count passes)."""
        steps = self.config.period_steps
        needed = 1 if steps is None else math.ceil(steps / max(len(self.train_loader), 1))
        return max(1, min(needed, self.config.epochs))

    def _average_horizon(self) -> int | None:
        """The weight average's horizon in optimizer steps: ``average_epochs`` of the schedule's epochs."""
        epochs = self.config.average_epochs
        return epochs * self._passes() * len(self.train_loader) if epochs else None

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor, BatchInfo]]:
        """The epoch's batches, over ``_passes()`` passes; the first pass is the plain epoch's."""
        orders = (epoch if number == 0 else epoch + number * PASS_STREAM for number in range(self._passes()))
        return self._passes_in_order(orders)

    def _passes_in_order(self, orders: Iterable[int]) -> Iterator[tuple[Tensor, Tensor, BatchInfo]]:
        """Training passes in the data orders ``orders``, batches numbered on across passes."""
        for number, order in enumerate(orders):
            offset = number * len(self.train_loader)
            for x, y, info in self.train_loader.parts(order):
                yield x, y, BatchInfo(offset + info.index, info.global_size, info.part)

    def _train_epoch(self, epoch: int) -> EpochResult:
        self._set_train_mode()
        loss_sum = correct = seen = 0.0
        total = self._passes() * len(self.train_loader)
        with self.reporter.batches(total, f"epoch {epoch}") as advance:
            for x, y, info in self._batches(epoch):
                self.noise.begin(epoch * NOISE_STREAM + info.index, info.global_size, info.part)
                x = self._memory_format(x)
                output: LossOutput = self.method.loss(self.net, x, y)
                if not self._finite(output.loss):
                    return EpochResult(None, None, f"non-finite loss in epoch {epoch}, batch {info.index}")
                if self.config.warmup_steps:
                    self._set_lr(self.schedule.lr * self._warmup_factor())
                self._step(output, len(y), info)
                if self.config.spike_ratio:
                    parameters = (p for group in self.optimizer.param_groups for p in group["params"])
                    self.spikes.observe(parameters, info.global_size)
                loss_sum += output.loss.item() * len(y)
                correct += int((output.logits.argmax(1) == y).sum())
                seen += len(y)
                advance()
        loss_sum, correct, seen = self.dist.all_sum(loss_sum, correct, seen)
        return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1))

    def _step(self, output: LossOutput, size: int, info: BatchInfo) -> None:
        """One optimizer step on ``output.loss`` (this process's ``size`` examples), counted in ``compute``."""
        self.optimizer.zero_grad(set_to_none=True)
        # DDP averages the processes' gradients; weighting each by its share of the global batch
        # makes that average the gradient of the global batch's mean loss
        share = size * self.dist.world_size / info.global_size
        (output.loss * share).backward()
        self.optimizer.step()
        self.average.update(self.model)
        self.compute.optimizer_steps += 1
        self.compute.attack_passes += self._attack_steps()

    def _warmup_factor(self) -> float:
        """The share of the schedule's LR the next training step takes: (k + 1) / W for the run's k-th
        step while k < W = ``warmup_steps``, then all of it (a head start's and a range test's steps do
        not count)."""
        before = (self.head_start or {}).get("steps", 0) + len((self.lr_search or {}).get("sweep", ()))
        trained = self.compute.optimizer_steps - before
        return min(1.0, (trained + 1) / self.config.warmup_steps) if self.config.warmup_steps else 1.0

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _finite(self, loss: Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).item())
        if self.dist.enabled:
            (bad,) = self.dist.all_sum(0.0 if finite else 1.0)
            finite = bad == 0
        return finite

    def _validate(self, epoch: int) -> tuple[float, float, float]:
        """Validation clean accuracy, robust accuracy and robust loss (mean CE on the PGD examples).

        The PGD maximises ``val_attack_loss``: cross-entropy, or the DLR margin, which keeps attacking
        where a saturated softmax leaves the cross-entropy no gradient.
        """
        clean = robust = total = loss = 0.0
        with evaluating(self.model, self.config.batch_statistics):
            for x, y, info in self.val_loader.parts():
                self.noise.begin(epoch * NOISE_STREAM + NOISE_STREAM // 2 + info.index, info.global_size, info.part)
                x = self._memory_format(x)
                with torch.no_grad():
                    clean += int((self.model(x).argmax(1) == y).sum())
                x_adv = self.val_attack(self.model, x, self.config.val_objective(y))
                self.compute.attack_passes += self.val_attack.steps
                with torch.no_grad():
                    logits = self.model(x_adv)
                robust += int((logits.argmax(1) == y).sum())
                loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
                total += len(y)
        clean, robust, loss, total = self.dist.all_sum(clean, robust, loss, total)
        return clean / max(total, 1), robust / max(total, 1), loss / max(total, 1)

    def _run_epoch(self, epoch: int) -> None:
        started = time.perf_counter()
        seed_epoch(self.config.seed, epoch)
        self.method.attack_statistics(
            self.config.attack_reads_batch_statistics(self.schedule.lr, self.schedule.initial_lr)
        )
        row: dict[str, Any] = {"epoch": epoch, "lr": self.schedule.lr, **dict.fromkeys(self.method.columns)}
        t0 = time.perf_counter()
        weight = self.method.loss_weight()
        row |= self.method.begin_epoch(self.model, epoch)
        if self.method.reweighs_loss(epoch):  # the steps before, as the new loss would have taken them
            self.spikes.rescale(self.method.loss_weight() / weight)
        self.timing.scalars += time.perf_counter() - t0
        t0 = time.perf_counter()
        result = self._train_epoch(epoch)
        self.timing.train += time.perf_counter() - t0
        largest_ratio = self.spikes.end_epoch() if self.config.spike_ratio else None  # of a step's norm to recent ones
        spiked = largest_ratio is not None and largest_ratio > self.config.spike_ratio
        row |= {"train_loss": result.loss, "train_acc": result.accuracy}
        if self.config.spike_ratio:
            row["gradient_spike"] = largest_ratio
        if result.fault:
            self.reporter.warning(result.fault)
            decision = self.schedule.fault()
            row |= {"val_clean_acc": None, "val_robust_acc": None, "val_robust_loss": None}
        else:
            t0 = time.perf_counter()
            with self.average.applied(self.model):  # the schedule judges the averaged model, if any
                val_clean, val_robust, val_loss = self._validate(epoch)
            self.timing.validation += time.perf_counter() - t0
            row |= {"val_clean_acc": val_clean, "val_robust_acc": val_robust, "val_robust_loss": val_loss}
            # the schedule maximises its metric: robust accuracy, or the negated robust loss
            metric = val_robust if self.config.val_metric == "robust_acc" else -val_loss
            decision = self.schedule.step(metric, unstable=spiked)
        self._apply(decision)
        row |= {"best": decision.is_best, "event": decision.reason, "steps": self.compute.optimizer_steps,
                "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
        self.metrics.append(row)

    def _apply(self, decision: Decision) -> None:
        if decision.is_best:
            self.best_state = self.average.state(self.model)
        if decision.rollback:
            self.model.load_state_dict(self.best_state)
            self.average.reset(self.model)
        if decision.average:
            self.average.start(self.model, horizon=math.inf)
        if decision.clear_momentum:
            self.optimizer.state.clear()  # momentum from a diverging (or spiking) step must not carry over
        self._set_lr(decision.lr)
        if decision.stop:
            self.stop_reason = decision.reason

    # ------------------------------------------------------------------ the run

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (or continue), then export the best model, evaluate it on the test split and write the run."""
        if resume:
            self._restore()
            if self.finished and self.run.file(SUMMARY).exists():
                summary = read_json(self.run.file(SUMMARY))
                if summary.get("batchnorm", "training") == self.config.batchnorm:
                    self.reporter.message(f"{self.run.path} is finished; its summary stands")
                    return summary
                self.reporter.message(f"{self.run.path} is finished; finishing it again with BatchNorm statistics "
                                      f"{self.config.batchnorm}, as this version's settings ask")  # fmt: skip
                return self._finish()
        if self.head_start is None:
            self._start_head()
        if self.lr_search is None:
            self._search_lr()
        while self.stop_reason is None:
            self._run_epoch(self.schedule.epoch + 1)
            self.reporter.epoch(self.metrics[-1], self._eta())
            self._save_snapshot()
            self._save_state()
        return self._finish()

    def _eta(self) -> float | None:
        if self.stop_reason is not None or not self.metrics:
            return None
        mean = sum(row["seconds"] for row in self.metrics) / len(self.metrics)
        return mean * (self.schedule.max_epochs - self.schedule.epoch)

    def _start_head(self) -> None:
        """Give the new head its start (``config.head_init``): a probe, or nothing for a zero head."""
        cfg = self.config

        def loader(shuffle: bool) -> BatchLoader:
            return BatchLoader(self.data.train, self.model.spec, cfg.batch_size * (1 if shuffle else 2), self.device,
                               shuffle=shuffle, seed=cfg.seed, shard=self.dist.shard)  # fmt: skip

        attack = cfg.attack(RandomStart.UNIFORM, noise=self.noise)
        self.head_start = start_head(cfg.head_init, HeadStartContext(self.model, loader, attack, self.noise, self.dist))
        self.compute.optimizer_steps += self.head_start.get("steps", 0)
        self.compute.attack_passes += self.head_start.get("steps", 0) * attack.steps
        line = describe_head_start(self.head_start)
        if line is not None:
            self.reporter.message(line)
            self.best_state = snapshot(self.model)  # a roll-back returns to the started head, not to zero
            self.average.reset(self.model)
        self._save_state()

    def _search_lr(self) -> None:
        """Choose the initial LR by a range test on the method's objective, then restore the state."""
        saved_model, saved_rng = snapshot(self.model), rng_state()
        saved_optimizer = copy.deepcopy(self.optimizer.state_dict())
        self.method.begin_epoch(self.model, 0)  # e.g. AutoLoRa's scalars for the model as it starts
        self._set_train_mode()
        batches = self._passes_in_order(-(LR_SEARCH_ORDER + number) for number in itertools.count())

        def step(lr: float) -> float:
            x, y, info = next(batches)
            self.noise.begin(LR_SEARCH_KEYS + info.index, info.global_size, info.part)
            self._set_lr(lr)
            output = self.method.loss(self.net, self._memory_format(x), y)
            self._step(output, len(y), info)  # thrown away afterwards, but spent: its cost counts
            (loss,) = self.dist.all_sum(output.loss.item() * len(y) / info.global_size)
            return loss

        self.reporter.message("choosing the initial learning rate: a range test on the training objective")
        result = lr_range_test(step)
        self.model.load_state_dict(saved_model)
        self.average.reset(self.model)
        self.optimizer.load_state_dict(saved_optimizer)
        set_rng_state(saved_rng)
        self.lr_search = result.to_dict()
        self.schedule.lr = self.schedule.initial_lr = result.lr
        self._set_lr(result.lr)
        self.reporter.message(f"initial learning rate {result.lr:.3g} (range test over {len(result.lrs)} steps)")
        self._save_state()

    def _copy_holding(self, state: dict[str, Tensor]) -> ImageClassifier:
        """A copy of the model, with plain BatchNorm, holding ``state``; the model itself is left as it is."""
        held = restore_batchnorm(copy.deepcopy(self.model))
        held.load_state_dict(state)
        return held

    def exported_model(self, state: dict[str, Tensor] | None = None) -> ImageClassifier:
        """The best-on-validation model (or ``state``) as deployed: the method's export, in the
        original architecture."""
        plain = self.method.export(self._copy_holding(self.best_state if state is None else state))
        return plain.to(memory_format=torch.contiguous_format).requires_grad_(True)

    def _save_snapshot(self) -> None:
        every = self.config.save_every
        if not every or self.schedule.epoch % every or not self.dist.is_main:
            return
        folder = self.run.file(SNAPSHOTS) / f"epoch-{self.schedule.epoch:03d}"
        current = self._copy_holding(self.average.state(self.model))  # the model this epoch was judged by
        for name, (tensors, metadata) in self.method.snapshot_files(current).items():
            save_tensors(folder / name, tensors, metadata)
        current = self.method.export(current)
        save_run_model(folder, current, self.architecture, {"epoch": self.schedule.epoch, "method": self.config.method})

    def _deployed_state(self) -> tuple[dict[str, Tensor], int]:
        """The best state, its BatchNorm statistics re-estimated where ``config.batchnorm`` asks
        (``train/batchnorm.py``; every process takes part, as in a training step), and how many
        images the re-estimate saw (0: none was made)."""
        if self.config.batchnorm == "training":
            return self.best_state, 0
        held = copy.deepcopy(self.model)  # GlobalBatchNorm stays: the statistics cover the global batch
        held.load_state_dict(self.best_state)
        cfg = self.config
        images = limit(self.data.train, BATCHNORM_SAMPLES, cfg.seed, "batchnorm-samples")
        loader = self._training_loader(images, shuffle=False)
        attack = getattr(self.method.objective, "attack", None) or cfg.attack(RandomStart.UNIFORM, noise=self.noise)

        def batches() -> Iterator[tuple[Tensor, Tensor]]:
            for x, y, info in loader.parts():
                self.noise.begin(BATCHNORM_KEYS + info.index, info.global_size, info.part)
                self.compute.attack_passes += attack.steps
                yield self._memory_format(x), y

        with_clean = self.config.batchnorm == "recomputed-clean-adversarial"
        (seen,) = self.dist.all_sum(recompute_batchnorm(held, batches(), attack, with_clean=with_clean))
        inputs = (
            f"{int(seen)} images and their adversarial examples"
            if with_clean
            else f"adversarial examples of {int(seen)} images"
        )
        self.reporter.message(
            f"BatchNorm statistics re-estimated on {inputs}" if seen else "No BatchNorm statistics to re-estimate"
        )
        return held.state_dict(), int(seen)

    def _finish(self) -> dict[str, Any]:
        state, batchnorm_images = self._deployed_state()
        # Only the main process evaluates on the test split; the others leave now rather than
        # wait in a collective that could time out during a long AutoAttack run.
        self.dist.barrier()
        if not self.dist.is_main:
            return {}
        model = self.exported_model(state)
        started = time.perf_counter()
        evaluation = replace(self.config.evaluation, autoattack_state=self.run.file(AUTOATTACK_STATE))
        results = evaluate(model, self.data.test, model.spec, evaluation, self.device, self.reporter.batches)
        self.timing.test += time.perf_counter() - started
        summary = self._summary(results, batchnorm_images)
        save_run_model(self.run.path, model, self.architecture, self.record | {"training": self._training_record()})
        write_json(self.run.file(SUMMARY), summary)
        self.finished = True
        self._save_state()
        return summary

    def _training_record(self) -> dict[str, Any]:
        """The settings as config.json records them: what the run followed where the settings left
        it open (the recipe's LR schedule, the initial LR a range test found)."""
        return self.config.to_dict() | {"schedule": self.config.resolved_schedule, "lr": self.schedule.initial_lr}

    def _summary(self, results: dict[str, Any], batchnorm_images: int) -> dict[str, Any]:
        best_epoch = self.schedule.best_epoch
        best_row = next((r for r in self.metrics if r["epoch"] == best_epoch), {})
        return {
            "method": self.config.method,
            "description": self.method.description,
            "dataset": self.data.name,
            "architecture": self.architecture,
            **self.config.threat.to_dict(),
            **{k: results[k] for k in METRIC_KEYS if k in results},
            "n_test": results["n"],
            "epochs": self.schedule.epoch,
            "passes": self.schedule.epoch * self._passes(),
            "best_epoch": best_epoch,
            "best_val_robust_acc": best_row.get("val_robust_acc"),
            "best_val_clean_acc": best_row.get("val_clean_acc"),
            "final_lr": self.schedule.lr,
            "stop_reason": self.stop_reason,
            "head_start": self.head_start,
            "schedule": self.config.resolved_schedule,
            "initial_lr": self.schedule.initial_lr,
            "lr_search": self.lr_search,
            "period_steps": self.config.period_steps,
            "val_metric": self.config.val_metric,
            "val_attack_loss": self.config.val_attack_loss,
            "average_epochs": self.config.average_epochs,
            "clean_share": self.config.clean_share,
            "attack_start": self.config.attack_start,
            "natural_batchnorm": self.config.natural_batchnorm,
            "read_statistics": self.config.read_statistics,
            "spike_ratio": self.config.spike_ratio,
            "warmup_steps": self.config.warmup_steps,
            "stem": self.config.stem,
            "frozen_stem": self.frozen_stem,
            "fixed_teacher": self.config.fixed_teacher,
            "natural_weight": self.config.natural_weight,
            "batchnorm": self.config.batchnorm,
            "batchnorm_images": batchnorm_images,
            "data": self.data.sizes(),
            "input_guess": (self.record.get("source") or {}).get("input_guess"),
            "evaluation": results,
            "compiled": self.compiled,
            **self.timing.summary(),
            **asdict(self.compute),
        }


def _comparable(key: dict[str, Any]) -> dict[str, Any]:
    """A resume key as compared (as JSON): the schedule is the one the run follows (its top-level
    entry), whether the settings named it or left it to the recipe."""
    key = json.loads(json.dumps(key))
    key["training"].pop("schedule", None)
    key["training"] = comparable_key(key["training"])
    return key
