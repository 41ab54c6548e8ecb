"""How the new head starts: at zero, or trained first by robust linear probing (RoLI).

A zero head gives the feature extractor no gradient until the head has learned something
(every method in the AutoLoRa paper starts from one). RoLI (Hua, Gu, Xue, Carlini, Wong, Qin,
CVPR 2024, "Initialization Matters for Adversarial Transfer Learning") first trains the head
alone on adversarial examples of the frozen pre-trained model, then fine-tunes from that head.
Any fine-tuning method can start from it: ``TrainConfig(head_init="robust-linear")``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..attacks import PGD, BatchNoise, CrossEntropyObjective
from ..attacks.pgd import evaluating
from ..data import BatchLoader
from ..distributed import DistContext
from ..models import ImageClassifier

HEAD_INITS = {
    "zero": "a zero-initialised head (the AutoLoRa paper's start)",
    "linear": "a linear probe fitted on clean features first (LP-FT; one forward pass over the data)",
    "robust-linear": "RoLI: the head trained alone first by adversarial linear probing",
}
PROBE_L2 = 1e-4  # the clean probe's weight penalty: keeps the fit finite on separable features


def linear_probe(
    model: ImageClassifier, loader: BatchLoader, dist: DistContext = DistContext(), max_iter: int = 300
) -> dict[str, Any]:
    """Fit ``model.head`` to clean features of ``loader``'s images (L-BFGS, the extractor frozen).

    The features are computed once, in eval mode; across processes the loss and its gradient
    are summed, so every process fits the same head.
    """
    started = time.perf_counter()
    with evaluating(model), torch.no_grad():
        pairs = [(model.forward_features(x), y) for x, y in loader.batches()]
    features, labels = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    (total,) = dist.all_sum(float(len(labels)))
    head = list(model.head.parameters())
    optimizer = torch.optim.LBFGS(head, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model.forward_head(features), labels, reduction="sum") / total
        loss = loss + PROBE_L2 * model.head.weight.square().sum() / dist.world_size
        loss.backward()
        dist.sum_gradients(head)
        (value,) = dist.all_sum(loss.item())
        return torch.tensor(value)

    optimizer.step(closure)
    with torch.no_grad():
        correct = int((model.forward_head(features).argmax(1) == labels).sum())
    (correct,) = dist.all_sum(correct)
    return {"head_init": "linear", "train_acc": correct / max(total, 1),
            "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip


@dataclass(frozen=True)
class ProbeSettings:
    """Robust linear probing: SGD on the head alone, CE on PGD examples, cosine LR decay.

    It runs for ``epochs`` passes over the training set, and at least ``min_steps``
    optimizer steps, so a small data set still gets a head that has converged.
    """

    epochs: int = 10
    min_steps: int = 100
    lr: float = 0.1
    momentum: float = 0.9

    def steps(self, steps_per_epoch: int) -> int:
        return max(self.min_steps, self.epochs * steps_per_epoch)


def robust_linear_probe(
    model: ImageClassifier,
    loader: BatchLoader,
    attack: PGD,
    noise: BatchNoise,
    settings: ProbeSettings = ProbeSettings(),
    dist: DistContext = DistContext(),
) -> dict[str, Any]:
    """Train ``model.head`` alone (features frozen, BatchNorm in eval mode) on ``attack``'s examples.

    Returns what the probe did: steps, final LR, the last pass's robust training accuracy and
    loss, and the seconds it took.
    """
    started = time.perf_counter()
    head = list(model.head.parameters())
    optimizer = torch.optim.SGD(head, lr=settings.lr, momentum=settings.momentum)
    total = settings.steps(len(loader))
    step = epoch = 0
    correct = seen = loss_sum = 0.0
    with evaluating(model):
        while step < total:
            correct = seen = loss_sum = 0.0
            for x, y, info in loader.parts(-(epoch + 1)):  # its own data order, apart from training epochs
                if step == total:
                    break
                noise.begin(step, info.global_size, info.part)
                x_adv = attack(model, x, CrossEntropyObjective(y))
                with torch.no_grad():
                    features = model.forward_features(x_adv)
                logits = model.forward_head(features)
                loss = F.cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                (loss * len(y) / info.global_size).backward()
                dist.sum_gradients(head)
                for group in optimizer.param_groups:
                    group["lr"] = 0.5 * settings.lr * (1 + math.cos(math.pi * step / total))
                optimizer.step()
                loss_sum += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                step += 1
            epoch += 1
    loss_sum, correct, seen = dist.all_sum(loss_sum, correct, seen)
    return {
        "head_init": "robust-linear",
        **asdict(settings),
        "steps": step,
        "train_robust_acc": correct / max(seen, 1),
        "train_loss": loss_sum / max(seen, 1),
        "seconds": round(time.perf_counter() - started, 2),
    }


@dataclass(frozen=True)
class HeadStartContext:
    """What a head start may use: the model, the training images (``loader(shuffle)``), the run's
    training attack and random stream, and the processes."""

    model: ImageClassifier
    loader: Callable[[bool], BatchLoader]
    attack: PGD
    noise: BatchNoise
    dist: DistContext = DistContext()


def start_head(kind: str, context: HeadStartContext) -> dict[str, Any]:
    """Run the head start ``kind`` (a key of ``HEAD_INITS``) and return what it did."""
    if kind == "linear":
        return linear_probe(context.model, context.loader(False), context.dist)
    if kind == "robust-linear":
        loader = context.loader(True)
        return robust_linear_probe(context.model, loader, context.attack, context.noise, dist=context.dist)
    return {"head_init": kind}


def describe_head_start(record: dict[str, Any]) -> str | None:
    """One line on what a head start did, or None for a zero head."""
    if record["head_init"] == "linear":
        return f"head start: a linear probe on clean features, training accuracy {100 * record['train_acc']:.1f}%"
    if record["head_init"] == "robust-linear":
        return (f"head start: robust linear probing, {record['steps']} steps, robust training accuracy "
                f"{100 * record['train_robust_acc']:.1f}%, {record['seconds']:.0f}s")  # fmt: skip
    return None
