"""Shared fixtures: tiny models and data, and a CLI runner."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from autolora.cli import app
from autolora.inputs import InputSpec
from autolora.models import create_model

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke the CLI in-process; returns the click Result."""

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def grey_spec() -> InputSpec:
    return InputSpec(1, 28, (0.3,), (0.35,))


@pytest.fixture
def tiny_model(grey_spec: InputSpec):
    torch.manual_seed(0)
    return create_model("resnet8", 10, grey_spec)
