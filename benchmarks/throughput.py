"""Images per second of one adversarial training step, per method, model, memory format and compile.

One step = the method's attack (PGD-K) + its loss's forward and backward + the optimizer step,
exactly the objects the trainer uses. Reports the median of timed steps after warm-up, and the
ratio autolora / vanilla (TRADES) on the same model, batch and attack. ``--compile off,on`` also
times the steps compiled as ``--compile`` compiles them; the first step's seconds (compiling
included) are recorded as ``first_step_s``.

    python benchmarks/throughput.py [--steps 10] [--batch 128] [--repeats 7] [--out benchmarks/results/throughput.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

from autolora.inputs import InputSpec
from autolora.runtime import machine
from training_step import training_step

CASES = {"resnet8 28x28": ("resnet8", InputSpec.plain(1, 28)), "resnet18 32x32": ("resnet18", InputSpec.plain(3, 32))}


def step_time(
    model_name: str, spec: InputSpec, method: str, args: argparse.Namespace, channels_last: bool, compile: bool
) -> tuple[float, float]:
    """The median seconds of a timed step, and the first step's seconds (which include compiling)."""
    torch._dynamo.reset()
    step = training_step(model_name, spec, method, attack_steps=args.steps, lr=0.01, channels_last=channels_last,
                         compile=compile)  # fmt: skip
    x = torch.rand(args.batch, spec.channels, spec.size, spec.size).contiguous(memory_format=step.memory_format)
    y = torch.randint(0, 10, (args.batch,))
    times = []
    for _ in range(args.warmup + args.repeats):
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times[args.warmup :]), times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="PGD steps of the training attack")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--methods", default="pgd-at,vanilla,autolora")
    parser.add_argument("--formats", default="contiguous,channels_last")
    parser.add_argument("--compile", default="off", help="off, on, or off,on")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    rows = []
    cases = {name: CASES[name] for name in args.cases.split(",")}
    formats, compiles, methods = args.formats.split(","), args.compile.split(","), args.methods.split(",")
    for case, memory, compile, method in itertools.product(cases, formats, compiles, methods):
        model_name, spec = cases[case]
        seconds, first = step_time(model_name, spec, method, args, memory == "channels_last", compile == "on")
        rows.append({"case": case, "format": memory, "compiled": compile == "on", "method": method,
                     "seconds": seconds, "images_per_s": args.batch / seconds, "first_step_s": first})  # fmt: skip
        print(f"{case:<16} {memory:<14} compile {compile:<3} {method:<9} {args.batch / seconds:8.1f} img/s  "
              f"(first step {first:.1f} s)", flush=True)  # fmt: skip
    ratios = {}
    for case, memory, compile in itertools.product(cases, formats, compiles):
        key = f"{case} {memory}" + (" compiled" if compile == "on" else "")
        setting = (case, memory, compile == "on")
        by_method = {r["method"]: r["seconds"] for r in rows if (r["case"], r["format"], r["compiled"]) == setting}
        if {"autolora", "vanilla"} <= set(by_method):
            ratios[key] = by_method["autolora"] / by_method["vanilla"]
            print(f"{key}: autolora/vanilla step time {ratios[key]:.3f}")
    record = {"settings": vars(args) | {"out": str(args.out)}, "machine": machine(), "rows": rows,
              "autolora_over_vanilla_time": ratios, "time": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
