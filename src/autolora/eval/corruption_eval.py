"""Accuracy under common corruptions, generated on the fly from the test split."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..attacks.pgd import evaluating
from ..data import BatchLoader
from .corruptions import CORRUPTIONS, available_corruptions, check_corruption_names, corrupt


def corruption_accuracy(
    model: nn.Module,
    loader: BatchLoader,
    names: tuple[str, ...] | None,
    severities: tuple[int, ...],
    seed: int,
) -> dict[str, Any]:
    """Mean accuracy over the corruptions and severities, with the per-corruption table.

    Corruptions that do not apply to the images (colour ones on grey images) are
    listed as skipped; the output names exactly which ones ran.
    """
    channels = loader.adapter.target.channels
    applicable = available_corruptions(channels)
    chosen = list(names) if names else applicable
    check_corruption_names(chosen)
    ran = [n for n in chosen if n in applicable]
    skipped = {n: "needs RGB images" for n in chosen if n not in applicable}
    table: dict[str, list[float]] = {}
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model), torch.no_grad():
        for name in ran:
            table[name] = []
            for severity in severities:
                correct = total = 0
                for x, y in loader.batches():
                    prediction = model(corrupt(x, name, severity, generator)).argmax(dim=1)
                    correct += int((prediction == y).sum())
                    total += len(y)
                table[name].append(correct / max(total, 1))
    per_corruption = {name: sum(accs) / len(accs) for name, accs in table.items()}
    mean = sum(per_corruption.values()) / len(per_corruption) if per_corruption else float("nan")
    return {
        "mean": mean,
        "severities": list(severities),
        "ran": ran,
        "skipped": skipped,
        "per_corruption": per_corruption,
        "by_severity": table,
        "families": {name: CORRUPTIONS[name].family for name in ran},
    }
