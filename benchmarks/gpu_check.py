"""GPU check: one AutoLoRa epoch of a ResNet-18 on 32x32 synthetic data, fp32 against bf16 + channels_last.

Prints images/s and peak GPU memory for each, and the robust accuracy (PGD-10, fp32) of both
models on the same held-out synthetic batch, so a precision that breaks training shows up.
Installs nothing; run on a machine with CUDA:

    python benchmarks/gpu_check.py [--images 10240] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from autolora.attacks import PGD, LinfBall
from autolora.inputs import InputSpec
from autolora.runtime import machine
from training_step import training_step


def synthetic(n: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is written into their mean colour, so a model can learn something."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    base = torch.rand(n, 3, 32, 32, generator=generator) * 0.5
    tint = (labels.float() / 10).view(-1, 1, 1, 1)
    return (base + 0.5 * tint).clamp(0, 1).to(device), labels.to(device)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def one_epoch(precision: str, channels_last: bool, args: argparse.Namespace, device: torch.device) -> dict:
    step = training_step(
        "resnet18",
        InputSpec.plain(3, 32),
        "autolora",
        attack_steps=10,
        lr=0.05,
        weight_decay=1e-4,
        precision=precision,
        channels_last=channels_last,
        device=device,
    )
    model = step.model
    x_all, y_all = synthetic(args.images, device, seed=1)
    torch.cuda.reset_peak_memory_stats(device)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(0, args.images, args.batch):
        step(x_all[i : i + args.batch], y_all[i : i + args.batch])
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    x_test, y_test = synthetic(1024, device, seed=2)
    model.eval()
    x_adv = PGD(LinfBall(8 / 255), steps=10)(model, x_test.contiguous(memory_format=step.memory_format), y_test)
    return {
        "precision": precision,
        "channels_last": channels_last,
        "images_per_s": args.images / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "clean_acc": accuracy(model, x_test, y_test),
        "pgd10_acc": accuracy(model, x_adv, y_test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10240)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine")
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    results = [one_epoch("fp32", False, args, device), one_epoch("bf16", True, args, device)]
    for r in results:
        accuracy = f"clean {100 * r['clean_acc']:.1f}%  PGD-10 {100 * r['pgd10_acc']:.1f}%"
        print(f"{r['precision']:>5} channels_last={r['channels_last']!s:<5} {r['images_per_s']:8.1f} img/s  "
              f"peak {r['peak_memory_gib']:.2f} GiB  {accuracy}")  # fmt: skip
    print(json.dumps({"machine": machine(), "settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
