"""No silent minutes: every long phase reports its batches, to a terminal bar or to throttled log lines."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from autolora.attacks import Threat, run_autoattack
from autolora.cli.reporter import RichReporter
from autolora.eval import EvalConfig, evaluate
from autolora.progress import PlainProgress

from .helpers import random_images


class Recorder:
    """A progress hook that records each phase's (description, total, steps counted)."""

    def __init__(self) -> None:
        self.phases: list[list] = []

    @contextlib.contextmanager
    def __call__(self, total: int, description: str):
        phase = [description, total, 0]
        self.phases.append(phase)

        def advance() -> None:
            phase[2] += 1

        yield advance


def test_plain_progress_is_quiet_for_short_phases_and_throttled_for_long_ones():
    now = [0.0]
    lines: list[str] = []
    progress = PlainProgress(lines.append, interval=10.0, clock=lambda: now[0])
    with progress(100, "PGD-20") as advance:
        for _ in range(100):
            now[0] += 0.5  # 50 s in all: a line after 10, 20, 30 and 40 s
            advance()
    assert lines == [
        "PGD-20: 20/100, 0m10s so far, ETA 0m40s",
        "PGD-20: 40/100, 0m20s so far, ETA 0m30s",
        "PGD-20: 60/100, 0m30s so far, ETA 0m20s",
        "PGD-20: 80/100, 0m40s so far, ETA 0m10s",
    ]
    with progress(5, "clean") as advance:
        for _ in range(5):
            now[0] += 1.0
            advance()
    assert len(lines) == 4


def test_evaluation_reports_every_batch_of_every_phase(tiny_model):
    images = random_images(20)
    recorder = Recorder()
    config = EvalConfig(("clean", "pgd", "autoattack"), threat=Threat(0.05), pgd_steps=2, autoattack_version="fast",
                        batch_size=8)  # fmt: skip
    result = evaluate(tiny_model, images, tiny_model.spec, config, torch.device("cpu"), recorder)
    names = [phase[0] for phase in recorder.phases]
    assert names[:2] == ["clean", "PGD-2"] and all(phase[1] == phase[2] for phase in recorder.phases)
    assert recorder.phases[0][1] == 3  # 20 images in batches of 8
    robust_before_apgd = round(result["autoattack"]["same_examples"]["clean_acc"] * 20)
    assert names[2] == f"AutoAttack apgd-ce on {robust_before_apgd}/20 still robust"


def test_autoattack_batch_by_batch_agrees_with_one_call_of_the_package():
    from pyautoattack import AutoAttack

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 4)).eval()
    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 4
    ours = run_autoattack(model, x, y, 0.1, version="fast", batch_size=4, seed=0)
    package = AutoAttack(model, norm="Linf", eps=0.1, version="custom", attacks=["apgd-ce", "apgd-t"], seed=0,
                         device=x.device)  # fmt: skip
    package.verbose = False
    package.apgd.n_restarts, package.apgd_targeted.n_target_classes = 1, 3
    _, y_adv = package.run_standard_evaluation(x, y, batch_size=4)
    assert torch.equal(ours.robust, y_adv == y)


def test_a_log_gets_plain_progress_lines_on_stderr(capsys):
    with RichReporter(log_interval=0.0).batches(3, "AutoAttack apgd-t on 40/100 still robust") as advance:
        for _ in range(3):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["AutoAttack apgd-t on 40/100 still robust: 1/3",
                                                       "AutoAttack apgd-t on 40/100 still robust: 2/3"]  # fmt: skip
    assert all("ETA" in line for line in lines)
