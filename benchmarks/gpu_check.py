"""GPU check: what a training step costs on this machine, in fp32 and bf16, eager and compiled.

Two parts (``--parts``, both by default):

- ``epoch32``: one AutoLoRa epoch of a ResNet-18 on 10,240 synthetic 32x32 images, fp32 against
  bf16 + channels_last: images/s, peak memory, and the clean / PGD-10 accuracy (fp32) each model
  reaches on the same held-out synthetic batch, so a precision that breaks training shows up.
- ``step224``: ResNet-50 (torchvision's layout, which MadryLab checkpoints load into) and ViT-S/16
  (timm ``vit_small_patch16_224``) at 224 px, random weights, channels_last: images/s and peak
  memory of an AutoLoRa training step (PGD-10 attack, both paths, backward, SGD) and of a plain
  step (clean cross-entropy forward and backward, SGD) on the same model, for fp32 and bf16
  autocast, eager and compiled as ``--compile`` compiles (the first step's time includes the
  compiling); then how long the paper's CIFAR-10 setting would take at the measured ResNet-50 rates.

Installs and downloads nothing. On a machine with CUDA (``gpu_check.sh`` runs it):

    python benchmarks/gpu_check.py [--parts epoch32,step224] [--batch-224 64] [--compile off,on]

``--smoke`` checks the script on a CPU in seconds: 32 px, batch 2, PGD-1, one timed step, and
compiling through the "eager" backend (graph capture without code generation). Its figures
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from autolora import runtime
from autolora.attacks import PGD, LinfBall
from autolora.inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from autolora.runtime import autocast, machine
from training_step import TrainingStep, training_step

MODELS_224 = {"resnet50": "resnet50", "vit_s16": "timm:vit_small_patch16_224"}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
# The paper's CIFAR-10 setting (Xu et al. 2024, following Liu et al. 2023): 50,000 training images
# upsampled to 224 px, ResNet-50, PGD-10 training attack, at most 60 epochs.
CIFAR10_IMAGES, PAPER_EPOCHS = 50_000, 60


def synthetic(n: int, device: torch.device, seed: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is written into their mean colour, so a model can learn something."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    base = torch.rand(n, 3, size, size, generator=generator) * 0.5
    tint = (labels.float() / 10).view(-1, 1, 1, 1)
    return (base + 0.5 * tint).clamp(0, 1).to(device), labels.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------------------- epoch32


def one_epoch(precision: str, channels_last: bool, args: argparse.Namespace, device: torch.device) -> dict:
    step = training_step("resnet18", InputSpec.plain(3, 32), "autolora", attack_steps=args.attack_steps,
                         lr=0.05, weight_decay=1e-4, precision=precision, channels_last=channels_last,
                         device=device)  # fmt: skip
    model = step.model
    x_all, y_all = synthetic(args.images, device, seed=1)
    reset_peak(device)
    sync(device)
    start = time.perf_counter()
    for i in range(0, args.images, args.batch):
        step(x_all[i : i + args.batch], y_all[i : i + args.batch])
    sync(device)
    seconds = time.perf_counter() - start
    x_test, y_test = synthetic(args.test_images, device, seed=2)
    model.eval()
    attack = PGD(LinfBall(8 / 255), steps=args.attack_steps)
    x_adv = attack(model, x_test.contiguous(memory_format=step.memory_format), y_test)
    return {
        "precision": precision,
        "channels_last": channels_last,
        "images_per_s": args.images / seconds,
        "peak_memory_gib": peak_gib(device),
        "clean_acc": accuracy(model, x_test, y_test),
        "pgd_acc": accuracy(model, x_adv, y_test),
    }


def epoch32(args: argparse.Namespace, device: torch.device) -> list[dict]:
    print(f"\nResNet-18, 32x32, one AutoLoRa epoch of {args.images} images, batch {args.batch}, "
          f"PGD-{args.attack_steps}", flush=True)  # fmt: skip
    results = []
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        r = one_epoch(precision, channels_last, args, device)
        results.append(r)
        accuracy = f"clean {100 * r['clean_acc']:.1f}%  PGD-{args.attack_steps} {100 * r['pgd_acc']:.1f}%"
        print(f"{r['precision']:>5} channels_last={r['channels_last']!s:<5} {r['images_per_s']:8.1f} img/s  "
              f"peak {_gib(r['peak_memory_gib'])}  {accuracy}", flush=True)  # fmt: skip
    return results


# ---------------------------------------------------------------------------- step224


def timed(step: Callable[[], object], repeats: int, device: torch.device) -> float:
    """The median seconds of ``repeats`` calls of ``step``."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_step(step: TrainingStep, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None) -> None:
    """Clean cross-entropy through the model's adversarial path, backward and SGD: standard training's step."""
    with autocast(x.device, dtype):
        logits = step.model(x)
    loss = F.cross_entropy(logits.float(), y)
    step.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    step.optimizer.step()


def step_224(name: str, precision: str, compile: bool, args: argparse.Namespace, device: torch.device) -> dict:
    spec = InputSpec(3, args.size, IMAGENET_MEAN, IMAGENET_STD)
    torch._dynamo.reset()  # each setting compiles its own graphs, from nothing
    step = training_step(MODELS_224[name], spec, "autolora", attack_steps=args.attack_steps, lr=0.01,
                         weight_decay=1e-4, precision=precision, channels_last=True, compile=compile,
                         device=device)  # fmt: skip
    x, y = synthetic(args.batch_224, device, seed=3, size=args.size)
    x = x.contiguous(memory_format=torch.channels_last)
    reset_peak(device)
    first = timed(lambda: step(x, y), 1, device)  # includes compiling, when compiled
    for _ in range(args.warmup):
        step(x, y)
    autolora = timed(lambda: step(x, y), args.repeats, device)
    autolora_peak = peak_gib(device)
    reset_peak(device)
    dtype = PRECISIONS[precision]
    for _ in range(args.warmup + 1):  # the same graph as AutoLoRa's adversarial forward: nothing new to compile
        plain_step(step, x, y, dtype)
    plain = timed(lambda: plain_step(step, x, y, dtype), args.repeats, device)
    result = {
        "model": name,
        "precision": precision,
        "compiled": compile,
        "first_step_s": first,
        "autolora_images_per_s": args.batch_224 / autolora,
        "autolora_peak_gib": autolora_peak,
        "plain_images_per_s": args.batch_224 / plain,
        "plain_peak_gib": peak_gib(device),
    }
    return result


def paper_estimate(images_per_s: float) -> tuple[float, float]:
    """Minutes per epoch and hours for the 60-epoch cap of the paper's CIFAR-10 setting, training steps only."""
    epoch_s = CIFAR10_IMAGES / images_per_s
    return epoch_s / 60, PAPER_EPOCHS * epoch_s / 3600


def step224(args: argparse.Namespace, device: torch.device) -> list[dict]:
    print(f"\n{args.size} px, batch {args.batch_224}, channels_last; AutoLoRa step = PGD-{args.attack_steps} + "
          "both paths + backward + SGD; plain = clean CE forward/backward + SGD", flush=True)  # fmt: skip
    print(f"{'model':<9} {'precision':<9} {'compiled':<8} {'1st step s':>10} {'AutoLoRa img/s':>14} {'peak GiB':>8} "
          f"{'plain img/s':>11} {'peak GiB':>8} {'CIFAR-10 h':>10}", flush=True)  # fmt: skip
    results = []
    for compile in args.compile:  # every eager row first: they come back even if compiling runs out of time
        for name in args.models:
            for precision in args.precisions:
                try:
                    r = step_224(name, precision, compile == "on", args, device)
                except RuntimeError as exc:  # out of memory, a compiler failure: say so, measure the rest
                    error = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    results.append({"model": name, "precision": precision, "compiled": compile == "on", "error": error})
                    print(f"{name:<9} {precision:<9} {compile:<8} failed: {error}", flush=True)
                    continue
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()  # the step's model and graphs are gone: its cached blocks go too
                results.append(r)
                hours = f"{paper_estimate(r['autolora_images_per_s'])[1]:10.1f}" if name == "resnet50" else " " * 10
                rates = (f"{r['autolora_images_per_s']:14.1f} {_gib(r['autolora_peak_gib']):>8} "
                         f"{r['plain_images_per_s']:11.1f} {_gib(r['plain_peak_gib']):>8}")  # fmt: skip
                print(f"{name:<9} {precision:<9} {compile:<8} {r['first_step_s']:10.1f} {rates} {hours}", flush=True)
    resnet = [r for r in results if r["model"] == "resnet50" and "error" not in r]
    if resnet:
        best = max(resnet, key=lambda r: r["autolora_images_per_s"])
        minutes, hours = paper_estimate(best["autolora_images_per_s"])
        print(f"\nThe paper's CIFAR-10 setting ({CIFAR10_IMAGES:,} images at 224 px, ResNet-50, PGD-{args.attack_steps}"
              f" training attack, batch {args.batch_224}) at the fastest rate measured here "
              f"({best['autolora_images_per_s']:.1f} img/s, {best['precision']}, compile {best['compiled']}): "
              f"{minutes:.1f} min per epoch, {hours:.1f} h for the {PAPER_EPOCHS}-epoch cap; training steps "
              "only (validation and the scalars add about 10%: benchmarks/RESULTS.md).", flush=True)  # fmt: skip
    return results


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _list(text: str, choices) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in choices]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=lambda t: _list(t, ("epoch32", "step224")), default="epoch32,step224")
    parser.add_argument("--images", type=int, default=10240, help="epoch32: training images")
    parser.add_argument("--test-images", type=int, default=1024, help="epoch32: held-out images")
    parser.add_argument("--batch", type=int, default=128, help="epoch32: batch")
    parser.add_argument("--models", type=lambda t: _list(t, MODELS_224), default=",".join(MODELS_224))
    parser.add_argument("--precisions", type=lambda t: _list(t, PRECISIONS), default="fp32,bf16")
    parser.add_argument("--compile", type=lambda t: _list(t, ("off", "on")), default="off,on")
    parser.add_argument("--batch-224", type=int, default=64, help="step224: batch")
    parser.add_argument("--size", type=int, default=224, help="step224: input size in pixels")
    parser.add_argument("--attack-steps", type=int, default=10, help="PGD steps of the training attack")
    parser.add_argument("--warmup", type=int, default=2, help="step224: steps after the first, before timing")
    parser.add_argument("--repeats", type=int, default=5, help="step224: timed steps (the median is reported)")
    parser.add_argument("--smoke", action="store_true", help="a CPU check of this script in seconds")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON record here")
    args = parser.parse_args()
    if args.smoke:  # tiny sizes on the CPU; compiling captures graphs without generating code
        args.images, args.test_images, args.batch, args.batch_224, args.size = 8, 4, 4, 2, 32
        args.attack_steps, args.warmup, args.repeats = 1, 0, 1
        runtime.COMPILE_BACKEND = "eager"
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check is for a GPU machine (--smoke checks the script on a CPU)")
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
    record: dict = {"machine": machine(), "settings": vars(args) | {"out": str(args.out)}}
    record["settings"] |= {"compile_backend": runtime.COMPILE_BACKEND, "smoke": args.smoke}
    if device.type == "cuda":
        record["settings"] |= {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                               "tf32_cudnn": torch.backends.cudnn.allow_tf32}  # fmt: skip
    print(
        f"{record['machine']}  torch {torch.__version__}  device {device}"
        + ("  SMOKE: figures mean nothing" * args.smoke)
    )
    if "epoch32" in args.parts:
        record["epoch32"] = epoch32(args, device)
    if "step224" in args.parts:
        record["step224"] = step224(args, device)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
