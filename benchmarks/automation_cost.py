"""What AutoLoRa's automation costs: scalars and validation against training, ours and the reference's.

For each finished AutoLoRa run directory: the measured time breakdown (training, automatic
scalars, validation, test evaluation) from its summary.json, and the breakdown the reference
code's 32px protocol would have cost on the same machine for the same epochs: validation =
PGD-20 on the whole training set every epoch, scalars = four passes of the natural path over
the whole training set per epoch. Those two are computed from per-image costs measured here.

    python benchmarks/automation_cost.py RUN_DIR [RUN_DIR ...] [--out benchmarks/results/automation_cost.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from autolora.attacks import PGD, LinfBall
from autolora.lora import inject, natural_forward
from autolora.models import load_classifier
from autolora.runtime import machine


def per_image_seconds(run: Path, eps: float, repeats: int = 3) -> tuple[float, float]:
    """Seconds per image of PGD-20 evaluation and of a natural-path forward, for this run's model."""
    model, record, _ = load_classifier(run)
    model = inject(model).eval()
    spec = record.input
    x = torch.rand(256, spec.channels, spec.size, spec.size)
    y = torch.randint(0, record.num_classes, (256,))
    attack = PGD(LinfBall(eps), steps=20)

    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / len(x)

    def pgd20() -> None:
        with torch.no_grad():
            model(x)
        x_adv = attack(model, x, y)
        with torch.no_grad():
            model(x_adv)

    def natural() -> None:
        with torch.no_grad():
            natural_forward(model, x)

    return timed(pgd20), timed(natural)


def breakdown(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    epochs, sizes = summary["epochs"], summary["data"]
    pgd20, natural = per_image_seconds(run, summary["eps"])
    n_train = sizes["train"] + sizes["val"]  # the reference code holds nothing out
    train = summary["time_train_s"]
    ours = {k: summary[f"time_{k}_s"] for k in ("train", "scalars", "validation", "test")}
    reference = {"train": train, "scalars": epochs * 4 * n_train * natural, "validation": epochs * n_train * pgd20}
    return {
        "run": str(run),
        "dataset": summary["dataset"],
        "epochs": epochs,
        "sizes": sizes,
        "ours_s": ours,
        "ours_automation_over_train": (ours["scalars"] + ours["validation"]) / train,
        "reference_s": reference,
        "reference_automation_over_train": (reference["scalars"] + reference["validation"]) / train,
        "per_image_s": {"pgd20_eval": pgd20, "natural_forward": natural},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/automation_cost.json"))
    args = parser.parse_args()
    rows = [breakdown(run) for run in args.runs]
    for r in rows:
        o, ref = r["ours_s"], r["reference_s"]
        print(f"{r['run']} ({r['dataset']}, {r['epochs']} epochs): train {o['train']:.0f}s, "
              f"scalars {o['scalars']:.0f}s, validation {o['validation']:.0f}s, test {o['test']:.0f}s -> automation "
              f"{100 * r['ours_automation_over_train']:.1f}% of training; reference protocol: scalars "
              f"{ref['scalars']:.0f}s, validation {ref['validation']:.0f}s -> "
              f"{100 * r['reference_automation_over_train']:.0f}% of training")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows, "time": time.strftime("%Y-%m-%d %H:%M")},
                                   indent=2) + "\n")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
