"""The gradient-conflict diagnostic: do the natural and adversarial objectives pull the weights apart?

For vanilla RFT (TRADES) both objectives act on the feature extractor: the natural one is
``CE(f(x), y)``, the adversarial one ``beta * KL(f(x) || f(x_adv))``. For AutoLoRa the natural
objective ``CE(f_nat(x), y)`` flows through the low-rank branch: its gradient is taken with
respect to the natural path's effective weights ``W + dW`` of each branched layer, the
adversarial objective's ``(1 - l1) CE(f(x_adv), y) + l2 KL(f_nat(x) || f(x_adv))`` with
respect to ``W``. Both methods are compared on the same layers (every branched convolution);
the cosine of the two gradients, summed over a few batches, is reported per layer and overall.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from .attacks import PGD, CrossEntropyObjective, KLObjective, RandomStart, Threat
from .data import BatchLoader, ImageSet
from .errors import CheckpointError, ConfigError, check_choices
from .fileio import read_json
from .lora import BranchConfig, LoraLayer, export, inject, load_branch, natural_forward
from .models import ImageClassifier, load_classifier, read_tensors
from .models.checkpoint import RUN_CONFIG
from .train import LossWeights, autolora_loss_terms, linear_probe, trades_terms
from .train.run_dir import BRANCH, SNAPSHOTS

DIAGNOSED_METHODS = ("vanilla", "autolora")


@dataclass(frozen=True)
class DiagnoseConfig:
    """Which objectives to compare, on how many batches, under which threat model and attack."""

    threat: Threat
    methods: tuple[str, ...] = DIAGNOSED_METHODS
    batches: int = 4
    batch_size: int = 128
    attack_steps: int = 10
    beta: float = 6.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices("method", self.methods, DIAGNOSED_METHODS)
        if self.batches < 1:
            raise ConfigError("batches", self.batches, "use at least one batch")

    def attack(self, start: RandomStart) -> PGD:
        return PGD(self.threat.ball(), steps=self.attack_steps, step_size=self.threat.step_size, random_start=start)


def branched_layers(model: ImageClassifier) -> list[str]:
    """The layers AutoLoRa branches (every conv of the feature extractor but the stem), by name."""
    probe = inject(copy.deepcopy(model))
    return [name for name, module in probe.named_modules() if isinstance(module, LoraLayer)]


def _weights(model: nn.Module, layers: Iterable[str]) -> list[Tensor]:
    found = []
    for name in layers:
        module = model.get_submodule(name)
        found.append((module.base_layer if isinstance(module, LoraLayer) else module).weight)
    return found


def _grads(loss: Tensor, params: list[Tensor], retain_graph: bool = False) -> list[Tensor]:
    return [g.detach() for g in torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=False)]


def _vanilla(model: ImageClassifier, x: Tensor, y: Tensor, layers: list[str], config: DiagnoseConfig):
    params = _weights(model, layers)
    with torch.no_grad():
        clean = model(x)
    x_adv = config.attack(RandomStart.NORMAL)(model, x, KLObjective(clean))
    natural_loss, adversarial_loss = trades_terms(model(x), model(x_adv), y, config.beta)
    return _grads(natural_loss, params, retain_graph=True), _grads(adversarial_loss, params)


def _autolora(model: nn.Module, x: Tensor, y: Tensor, layers: list[str], config: DiagnoseConfig):
    merged = export(model, merge=True)  # the natural path as a plain model: its weights are W + dW
    with torch.no_grad():
        z_nat = natural_forward(model, x)
    weights = LossWeights.from_accuracy((z_nat.argmax(1) == y).float().mean().item())
    x_adv = config.attack(RandomStart.NORMAL)(model, x, CrossEntropyObjective(y))
    z_adv = model(x_adv)
    # the natural term's gradient is taken with respect to the natural path's weights W + dW
    natural_loss, _, _ = autolora_loss_terms(merged(x), z_adv.detach(), y, LossWeights(1.0, 0.0))
    _, adversarial_ce, distillation = autolora_loss_terms(z_nat, z_adv, y, weights)
    adversarial_loss = adversarial_ce + distillation
    return _grads(natural_loss, _weights(merged, layers)), _grads(adversarial_loss, _weights(model, layers))


def _cosine(a: list[Tensor], b: list[Tensor]) -> float:
    flat_a, flat_b = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return F.cosine_similarity(flat_a, flat_b, dim=0, eps=1e-20).item()


def diagnose(
    model: ImageClassifier,
    images: ImageSet,
    config: DiagnoseConfig,
    device: torch.device,
    branch_state: dict[str, Tensor] | None = None,
    fit_head: bool | None = None,
    branch: BranchConfig | None = None,
) -> dict[str, Any]:
    """Cosine similarity of the natural and adversarial gradients, per layer and overall, per method.

    ``fit_head`` replaces the checkpoint's head by a linear probe on clean features (a source
    model's head classifies another task); by default only when the class counts differ.
    """
    torch.manual_seed(config.seed)
    model = copy.deepcopy(model).to(device).eval()
    loader = BatchLoader(images, model.spec, config.batch_size, device, shuffle=True, seed=config.seed)
    batches = [batch for _, batch in zip(range(config.batches), loader.batches(), strict=False)]
    head = "from the checkpoint"
    if fit_head or (fit_head is None and model.num_classes != images.num_classes):
        model.reset_classifier(images.num_classes)
        linear_probe(model, loader)
        head = "a linear probe fitted on clean features of the training images"
    layers = branched_layers(model)
    results: dict[str, Any] = {
        "config": asdict(config) | {"threat": config.threat.to_dict()}, "layers": layers, "head": head,
        "n": len(images),
        "branch_loaded": branch_state is not None,
    }  # fmt: skip
    for method in config.methods:
        subject: nn.Module = model
        if method == "autolora":
            subject = copy.deepcopy(model)
            subject = load_branch(subject, branch_state, branch) if branch_state else inject(subject)
        results[method] = _measure(subject, method, batches, layers, config)
    return results


def _measure(model: nn.Module, method: str, batches: list, layers: list[str], config: DiagnoseConfig) -> dict:
    compute = _autolora if method == "autolora" else _vanilla
    total_nat: list[Tensor] | None = None
    total_adv: list[Tensor] | None = None
    per_batch = []
    for x, y in batches:
        natural, adversarial = compute(model, x, y, layers, config)
        per_batch.append(_cosine(natural, adversarial))
        total_nat = natural if total_nat is None else [a + b for a, b in zip(total_nat, natural, strict=True)]
        total_adv = adversarial if total_adv is None else [a + b for a, b in zip(total_adv, adversarial, strict=True)]
    assert total_nat is not None and total_adv is not None
    per_layer = {name: _cosine([n], [a]) for name, n, a in zip(layers, total_nat, total_adv, strict=True)}
    spread = torch.tensor(per_batch)
    return {
        "overall_cosine": _cosine(total_nat, total_adv),
        "per_layer": per_layer,
        "per_batch": per_batch,
        "per_batch_mean": spread.mean().item(),
        "per_batch_std": spread.std().item() if len(per_batch) > 1 else 0.0,
    }


def read_branch(folder: Path) -> tuple[dict[str, Tensor], BranchConfig | None] | None:
    """The low-rank branch saved beside a snapshot's model with its config (None in files written
    before configs were saved), or None where there is no branch."""
    path = folder / BRANCH
    if not path.is_file():
        return None
    tensors = read_tensors(path)
    with safe_open(str(path), framework="pt") as handle:
        return tensors, BranchConfig.from_metadata(handle.metadata())


def diagnose_snapshots(
    run: Path, images: ImageSet, config: DiagnoseConfig, device: torch.device
) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """Diagnose every snapshot a run saved (``--save-every``), with the run's own method.

    Returns the method and ``(epoch, result)`` pairs in epoch order; AutoLoRa snapshots carry
    their branch (see ``read_branch``), which is loaded strictly.
    """
    snapshots = sorted((run / SNAPSHOTS).glob("epoch-*"))
    if not snapshots:
        raise CheckpointError(f"{run} has no {SNAPSHOTS}/epoch-* folders; train with --save-every K first")
    trained_with = read_json(snapshots[0] / RUN_CONFIG).get("method")
    method = trained_with if trained_with in DIAGNOSED_METHODS else "vanilla"
    points = []
    for snapshot in snapshots:
        model, _, _ = load_classifier(snapshot)
        tensors, branch = read_branch(snapshot) or (None, None)
        result = diagnose(model, images, replace(config, methods=(method,)), device, tensors, branch=branch)
        points.append((int(snapshot.name.split("-")[1]), result))
    return method, points


def plot_per_layer(results: dict[str, Any], path: Path, title: str) -> Path:
    """Per-layer cosine similarity for each diagnosed method, on shared axes."""
    from .report.plots import plt, save_figure

    layers = results["layers"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(layers) + 2), 3.8))
    for method in DIAGNOSED_METHODS:
        if method in results:
            values = [results[method]["per_layer"][name] for name in layers]
            overall = results[method]["overall_cosine"]
            ax.plot(range(len(layers)), values, marker="o", label=f"{method} (overall {overall:.3f})")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([name.removeprefix("features.") for name in layers], rotation=70, fontsize=7)
    ax.set_ylabel("cos(natural grad, adversarial grad)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def plot_over_training(epochs: list[int], cosines: list[float], method: str, path: Path) -> Path:
    """Overall cosine similarity of the snapshots of one run, against the epoch."""
    from .report.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    ax.plot(epochs, cosines, marker="o", label=method)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("overall cosine similarity")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    return path
