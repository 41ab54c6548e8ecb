"""One trainer for every method: epochs, automatic scalars, validation, LR rule, resume, export."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..attacks import BatchNoise, RandomStart
from ..attacks.pgd import evaluating
from ..data import BatchLoader, PreparedData, limit
from ..distributed import DistContext, restore_batchnorm, use_global_batchnorm
from ..errors import CheckpointError, ConfigError
from ..eval import evaluate
from ..fileio import read_json, save_tensors, write_json
from ..lora import export, has_branches, inject, lora_parameters, natural_forward
from ..models import ImageClassifier, save_run_model
from .config import TrainConfig
from .methods import METHODS, build_schedule
from .objectives import LossOutput, LossWeights
from .progress import LogReporter, Reporter
from .run_dir import AUTOATTACK_STATE, BRANCH, SNAPSHOTS, SUMMARY, RunDirectory
from .scalars import AutoScalars
from .schedule import Decision
from .state import load_state, rng_state, save_state, seed_epoch, set_rng_state

SCALAR_COLUMNS = ("lambda1", "lambda2", "nat_branch_acc")
NOISE_STREAM = 1_000_000  # random-start keys: epoch * NOISE_STREAM + batch (validation: + NOISE_STREAM / 2)


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
class EpochResult:
    loss: float | None
    accuracy: float | None
    fault: str | None = None


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter and buffer (branch and BatchNorm statistics included)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Trainer:
    """Trains ``model`` on ``data`` with ``config.method`` and writes the run to ``run``.

    Every method shares this loop: per epoch, the automatic scalars (AutoLoRa), one pass of
    the method's objective, validation clean and robust accuracy on the held-out split, and
    the schedule's decision (next LR, roll back to the best model, stop). After each epoch
    the full state is written atomically, so ``fit(resume=True)`` continues a killed run
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
        self.method = METHODS[config.method]
        self.model, self.architecture, self.data, self.config = model, architecture, data, config
        self.run, self.device, self.dist = run, device, dist
        self.reporter = reporter or LogReporter()
        self.record = record or {}
        self.weights = LossWeights()
        self.scalars = AutoScalars(self.weights) if self.method.auto_scalars else None
        self.noise = BatchNoise(config.seed)
        self.objective = self.method.objective(config, self.weights, self.noise)
        self.schedule = build_schedule(config)
        self.timing = Timing()
        self.metrics: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.finished = False  # the test evaluation ran and the run's files are written
        self._prepare_model()
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.best_state = snapshot(self.model)
        self._build_loaders()

    # ------------------------------------------------------------------ set-up

    def _prepare_model(self) -> None:
        model = self.model.to(self.device)
        seed_epoch(self.config.seed, 0)  # the branch's initialisation depends on the seed alone
        if self.method.branch and not has_branches(model):
            inject(model, rank=self.config.rank)
        if self.method.head_only:
            model.features.requires_grad_(False)
        if self.config.channels_last:
            model.to(memory_format=torch.channels_last)
        self.net: nn.Module = model
        if self.dist.enabled:
            use_global_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)

    def _build_loaders(self) -> None:
        spec, cfg, shard = self.model.spec, self.config, self.dist.shard
        self.train_loader = BatchLoader(
            self.data.train,
            spec,
            cfg.batch_size,
            self.device,
            shuffle=True,
            augment=self.data.augment,
            seed=cfg.seed,
            shard=shard,
            min_batch=2 * shard.world_size,  # BatchNorm needs two examples; every process needs one
        )
        self.val_loader = BatchLoader(self.data.val, spec, 2 * cfg.batch_size, self.device, shard=shard)
        self.scalar_loader = None
        if self.scalars is not None:
            subset = limit(self.data.train, cfg.scalar_samples, cfg.seed, "scalar-samples")
            self.scalar_loader = BatchLoader(subset, spec, 2 * cfg.batch_size, self.device, shard=shard)
        self.val_attack = cfg.attack.pgd(RandomStart.UNIFORM, steps=cfg.val_attack_steps, noise=self.noise)

    def _memory_format(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    def _set_train_mode(self) -> None:
        self.net.train()
        if self.method.head_only:
            self.model.features.eval()

    # ------------------------------------------------------------------ resume

    def _resume_key(self) -> dict[str, Any]:
        """What a resumed run must share with the run it continues: settings, data and source model."""
        return {
            "training": self.config.resume_key(),
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
            "optimizer": optimizer,
            "schedule": self.schedule.state_dict(),
            "scalars": self.scalars.state_dict() if self.scalars else None,
            "metrics": self.metrics,
            "timing": asdict(self.timing),
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
        if _jsonable(state["config"]) != _jsonable(self._resume_key()):
            raise CheckpointError(
                f"{self.run.state} was written with other settings, data or source model; resume with the "
                "same command, or pass --overwrite to start again"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{self.run.state} does not fit this model: {str(exc).splitlines()[0]}") from None
        self.best_state = state["best"]
        optimizer = state["optimizer"]
        optimizer["state"] = {int(k): v for k, v in optimizer["state"].items()}
        self.optimizer.load_state_dict(optimizer)
        self.schedule.load_state_dict(state["schedule"])
        if self.scalars is not None and state["scalars"] is not None:
            self.scalars.load_state_dict(state["scalars"])
        self.metrics = list(state["metrics"])
        self.timing = Timing(**state["timing"])
        self.stop_reason = state["stop_reason"]
        self.finished = bool(state.get("finished", False))
        set_rng_state(state["rng"])
        self.reporter.message(f"resumed after epoch {self.schedule.epoch} from {self.run.state}")

    # ------------------------------------------------------------------ one epoch

    def _measure_natural_accuracy(self) -> float:
        correct = total = 0
        with evaluating(self.model), torch.no_grad():
            for x, y in self.scalar_loader.batches():
                correct += int((natural_forward(self.model, x).argmax(1) == y).sum())
                total += len(y)
        correct, total = self.dist.all_sum(correct, total)
        return correct / max(total, 1)

    def _train_epoch(self, epoch: int) -> EpochResult:
        self._set_train_mode()
        loss_sum = correct = seen = 0.0
        with self.reporter.batches(len(self.train_loader), f"epoch {epoch}") as advance:
            for x, y, info in self.train_loader.parts(epoch):
                self.noise.begin(epoch * NOISE_STREAM + info.index, info.global_size, info.part)
                x = self._memory_format(x)
                output: LossOutput = self.objective(self.net, x, y)
                if not self._finite(output.loss):
                    return EpochResult(None, None, f"non-finite loss in epoch {epoch}, batch {info.index}")
                self.optimizer.zero_grad(set_to_none=True)
                # DDP averages the processes' gradients; weighting each by its share of the global batch
                # makes that average the gradient of the global batch's mean loss
                share = len(y) * self.dist.world_size / info.global_size
                (output.loss * share).backward()
                self.optimizer.step()
                loss_sum += output.loss.item() * len(y)
                correct += int((output.logits.argmax(1) == y).sum())
                seen += len(y)
                advance()
        loss_sum, correct, seen = self.dist.all_sum(loss_sum, correct, seen)
        return EpochResult(loss_sum / max(seen, 1), correct / max(seen, 1))

    def _finite(self, loss: Tensor) -> bool:
        finite = bool(torch.isfinite(loss.detach()).item())
        if self.dist.enabled:
            (bad,) = self.dist.all_sum(0.0 if finite else 1.0)
            finite = bad == 0
        return finite

    def _validate(self, epoch: int) -> tuple[float, float]:
        clean = robust = total = 0
        with evaluating(self.model):
            for x, y, info in self.val_loader.parts():
                self.noise.begin(epoch * NOISE_STREAM + NOISE_STREAM // 2 + info.index, info.global_size, info.part)
                x = self._memory_format(x)
                with torch.no_grad():
                    clean += int((self.model(x).argmax(1) == y).sum())
                x_adv = self.val_attack(self.model, x, y)
                with torch.no_grad():
                    robust += int((self.model(x_adv).argmax(1) == y).sum())
                total += len(y)
        clean, robust, total = self.dist.all_sum(clean, robust, total)
        return clean / max(total, 1), robust / max(total, 1)

    def _run_epoch(self, epoch: int) -> None:
        started = time.perf_counter()
        seed_epoch(self.config.seed, epoch)
        # the scalar columns stay None for methods without automatic scalars
        row: dict[str, Any] = {"epoch": epoch, "lr": self.schedule.lr, **dict.fromkeys(SCALAR_COLUMNS)}
        if self.scalars is not None:
            t0 = time.perf_counter()
            acc_nat = self._measure_natural_accuracy()
            self.scalars.update(acc_nat)
            self.timing.scalars += time.perf_counter() - t0
            row |= {"lambda1": self.weights.lambda1, "lambda2": self.weights.lambda2, "nat_branch_acc": acc_nat}
        t0 = time.perf_counter()
        result = self._train_epoch(epoch)
        self.timing.train += time.perf_counter() - t0
        row |= {"train_loss": result.loss, "train_acc": result.accuracy}
        if result.fault:
            self.reporter.warning(result.fault)
            decision = self.schedule.fault()
            row |= {"val_clean_acc": None, "val_robust_acc": None}
        else:
            t0 = time.perf_counter()
            val_clean, val_robust = self._validate(epoch)
            self.timing.validation += time.perf_counter() - t0
            row |= {"val_clean_acc": val_clean, "val_robust_acc": val_robust}
            decision = self.schedule.step(val_robust)
        self._apply(decision, fault=result.fault is not None)
        row |= {"best": decision.is_best, "event": decision.reason, "seconds": round(time.perf_counter() - started, 3)}
        self.metrics.append(row)

    def _apply(self, decision: Decision, fault: bool = False) -> None:
        if decision.is_best:
            self.best_state = snapshot(self.model)
        if decision.rollback:
            self.model.load_state_dict(self.best_state)
        if fault:
            self.optimizer.state.clear()  # momentum from a diverging step must not carry over
        for group in self.optimizer.param_groups:
            group["lr"] = decision.lr
        if decision.stop:
            self.stop_reason = decision.reason

    # ------------------------------------------------------------------ the run

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train (or continue), then export the best model, evaluate it on the test split and write the run."""
        if resume:
            self._restore()
            if self.finished and self.run.file(SUMMARY).exists():
                self.reporter.message(f"{self.run.path} is finished; its summary stands")
                return read_json(self.run.file(SUMMARY))
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

    def exported_model(self) -> ImageClassifier:
        """The best-on-validation model without branches, in the original architecture."""
        best = restore_batchnorm(copy.deepcopy(self.model))
        best.load_state_dict(self.best_state)
        plain = export(best, inplace=True) if has_branches(best) else best
        return plain.to(memory_format=torch.contiguous_format).requires_grad_(True)

    def _save_snapshot(self) -> None:
        every = self.config.save_every
        if not every or self.schedule.epoch % every or not self.dist.is_main:
            return
        folder = self.run.file(SNAPSHOTS) / f"epoch-{self.schedule.epoch:03d}"
        current = restore_batchnorm(copy.deepcopy(self.model))
        if has_branches(current):
            names = {id(p): n for n, p in current.named_parameters()}
            save_tensors(folder / BRANCH, {names[id(p)]: p for p in lora_parameters(current)})
            current = export(current, inplace=True)
        save_run_model(folder, current, self.architecture, {"epoch": self.schedule.epoch, "method": self.config.method})

    def _finish(self) -> dict[str, Any]:
        # Only the main process evaluates on the test split; the others leave now rather than
        # wait in a collective that could time out during a long AutoAttack run.
        self.dist.barrier()
        if not self.dist.is_main:
            return {}
        model = self.exported_model()
        started = time.perf_counter()
        evaluation = replace(self.config.evaluation, autoattack_state=self.run.file(AUTOATTACK_STATE))
        results = evaluate(model, self.data.test, model.spec, evaluation, self.device, self.reporter.batches)
        self.timing.test += time.perf_counter() - started
        summary = self._summary(results)
        save_run_model(self.run.path, model, self.architecture, self.record | {"training": self.config.to_dict()})
        write_json(self.run.file(SUMMARY), summary)
        self.finished = True
        self._save_state()
        _write_curves(self.run)
        return summary

    def _summary(self, results: dict[str, Any]) -> dict[str, Any]:
        best_epoch = self.schedule.best_epoch
        best_row = next((r for r in self.metrics if r["epoch"] == best_epoch), {})
        keys = ("clean_acc", "pgd_acc", "autoattack_acc", "corruption_acc")
        return {
            "method": self.config.method,
            "dataset": self.data.name,
            "architecture": self.architecture,
            "eps": self.config.attack.eps,
            "norm": self.config.attack.norm,
            **{k: results[k] for k in keys if k in results},
            "n_test": results["n"],
            "epochs": self.schedule.epoch,
            "best_epoch": best_epoch,
            "best_val_robust_acc": best_row.get("val_robust_acc"),
            "best_val_clean_acc": best_row.get("val_clean_acc"),
            "final_lr": self.schedule.lr,
            "stop_reason": self.stop_reason,
            "data": self.data.sizes(),
            "input_guess": (self.record.get("source") or {}).get("input_guess"),
            "evaluation": results,
            **self.timing.summary(),
        }


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _write_curves(run: RunDirectory) -> None:
    from ..report.plots import plot_run_curves

    plot_run_curves(run.path)
