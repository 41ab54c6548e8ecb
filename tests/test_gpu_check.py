"""benchmarks/gpu_check.py on a CPU (``--smoke``): the settings it measures run, and its record says what ran.

The fast test measures one eager setting in-process; the long one runs the whole smoke check (both
models, fp32 and bf16, eager and compiled, and the 32-px epoch) as the GPU machine would run it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autolora import runtime

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # its sibling training_step.py
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", runtime.COMPILE_BACKEND)  # --smoke changes it: restored after
    module = importlib.import_module("gpu_check")
    yield module
    sys.modules.pop("gpu_check", None)
    sys.modules.pop("training_step", None)


def test_the_smoke_run_measures_a_step(gpu_check, monkeypatch, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    argv = ["gpu_check.py", "--smoke", "--parts", "step224", "--models", "vit_s16", "--precisions", "fp32",
            "--compile", "off", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    gpu_check.main()
    record = json.loads(out.read_text())
    (row,) = record["step224"]
    assert (row["model"], row["precision"], row["compiled"]) == ("vit_s16", "fp32", False)
    assert row["autolora_images_per_s"] > 0 and row["plain_images_per_s"] > 0
    assert row["autolora_peak_gib"] is None  # no GPU: no peak memory
    assert record["settings"]["smoke"] and record["settings"]["size"] == 32
    assert "SMOKE: figures mean nothing" in capsys.readouterr().out


@pytest.mark.long
def test_the_whole_smoke_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--smoke", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert [r["precision"] for r in record["epoch32"]] == ["fp32", "bf16"]
    settings = {(r["model"], r["precision"], r["compiled"]) for r in record["step224"]}
    assert settings == {(m, p, c) for m in ("resnet50", "vit_s16") for p in ("fp32", "bf16") for c in (False, True)}
    assert record["settings"]["compile_backend"] == "eager"
    assert "The paper's CIFAR-10 setting" in result.stdout


def test_the_paper_estimate(gpu_check):
    minutes, hours = gpu_check.paper_estimate(100.0)  # 50,000 images at 100 img/s: 500 s an epoch, 60 epochs
    assert minutes == pytest.approx(500 / 60) and hours == pytest.approx(60 * 500 / 3600)


def test_a_setting_that_fails_is_recorded_and_the_rest_measured(gpu_check, monkeypatch, tmp_path, capsys):
    def out_of_memory(name, precision, compile, args, device):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(gpu_check, "step_224", out_of_memory)
    out = tmp_path / "gpu_check.json"
    argv = ["gpu_check.py", "--smoke", "--parts", "step224", "--models", "resnet50", "--precisions", "fp32,bf16",
            "--compile", "off", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    gpu_check.main()
    rows = json.loads(out.read_text())["step224"]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    assert all(r["error"].startswith("CUDA out of memory") for r in rows)
    assert "failed: CUDA out of memory" in capsys.readouterr().out
