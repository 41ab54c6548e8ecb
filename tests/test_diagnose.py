"""The gradient-conflict diagnostic: what it compares, and the command over a run's snapshots."""

from __future__ import annotations

import json

import pytest
import torch

from autolora.attacks import Threat
from autolora.diagnose import DiagnoseConfig, branched_layers, diagnose
from autolora.errors import ConfigError
from autolora.models import save_run_model

from .helpers import random_images


def test_diagnose_reports_cosines_per_layer_and_overall(tiny_model):
    images = random_images(64, classes=10)
    result = diagnose(tiny_model, images, DiagnoseConfig(Threat(0.1), batches=2, batch_size=32, attack_steps=2),
                      torch.device("cpu"))  # fmt: skip
    assert result["layers"] == branched_layers(tiny_model) and len(result["layers"]) == 8
    for method in ("vanilla", "autolora"):
        assert -1.0 <= result[method]["overall_cosine"] <= 1.0
        assert set(result[method]["per_layer"]) == set(result["layers"])
        assert len(result[method]["per_batch"]) == 2
    assert result["head"] == "from the checkpoint"


def test_a_new_class_count_gets_a_linear_probe_head(tiny_model):
    result = diagnose(tiny_model, random_images(40, classes=4), DiagnoseConfig(Threat(0.1), methods=("vanilla",),
                      batches=1, batch_size=40, attack_steps=1), torch.device("cpu"))  # fmt: skip
    assert "linear probe" in result["head"] and result["vanilla"]["per_layer"]


def test_diagnose_validates_its_methods():
    with pytest.raises(ConfigError, match="method"):
        DiagnoseConfig(Threat(0.1), methods=("slf",))


def test_the_command_follows_a_run_over_its_snapshots(cli, tmp_path, tiny_model):
    save_run_model(tmp_path / "source", tiny_model, "resnet8")
    run = tmp_path / "run"
    trained = cli("finetune", "--checkpoint", tmp_path / "source", "--dataset", "digits", "--limit-train", "150",
                  "--limit-test", "20", "--eps", "0.1", "--attack-steps", "1", "--epochs", "2", "--save-every", "1",
                  "--recipe", "paper",
                  "--batch-size", "50", "--out", run, "--device", "cpu")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert (run / "snapshots" / "epoch-002" / "branch.safetensors").exists()
    result = cli("diagnose", "--checkpoint", run, "--dataset", "digits", "--limit-train", "64", "--eps", "0.1",
                 "--batches", "1", "--batch-size", "32", "--attack-steps", "1", "--over-training", "--out",
                 tmp_path / "diag", "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "diag" / "diagnose_over_training.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["branch_loaded"] for r in rows)
    assert (tmp_path / "diag" / "diagnose_over_training.png").exists()
