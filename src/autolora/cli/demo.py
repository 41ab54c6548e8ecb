"""``autolora demo``: the whole point of the project in minutes on a laptop CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..demo import run_demo
from ..progress import format_duration
from ..report.report import load_runs
from . import options as o
from .app import command
from .report import print_table
from .reporter import RichReporter, out


@command("demo", "autolora demo --quick")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two runs, report.md and the figures.")] = Path(
        "autolora-demo"
    ),
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run of about 2 minutes (not a result).")] = False,
    seed: o.Seed = 0,
    device: o.Device = "auto",
    debug: o.Debug = False,
) -> None:
    """Fine-tune the shipped robust Fashion-MNIST ResNet-8 on digits with AutoLoRa and with vanilla robust
    fine-tuning, evaluate both (clean, PGD-20, AutoAttack) and compare them. Rerun to continue an interrupted demo."""
    started = time.perf_counter()
    report, _ = run_demo(out_dir, quick=quick, device=device, seed=seed, reporter=RichReporter())
    print_table(load_runs([out_dir / "autolora", out_dir / "vanilla"]))
    out.print(f"demo took {format_duration(time.perf_counter() - started)}; wrote {report}", highlight=False)
