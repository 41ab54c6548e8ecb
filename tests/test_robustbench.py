"""RobustBench sources, offline: a file written locally in the zoo's layout, and the errors without one."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torchvision

from autolora.errors import CheckpointError
from autolora.inputs import IMAGENET_MEAN, IMAGENET_STD
from autolora.models import load_classifier

SOURCE = "robustbench:imagenet/Linf/Salman2020Do_R18"


@pytest.fixture
def zoo(tmp_path):
    """A model directory holding Salman2020Do_R18 where robustbench.utils.load_model keeps it."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = tmp_path / "imagenet" / "Linf" / "Salman2020Do_R18.pt"
    path.parent.mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    return tmp_path, reference


def test_zoo_file_loads_offline_with_the_zoos_input(zoo):
    model_dir, reference = zoo
    model, record, report = load_classifier(SOURCE, model_dir=model_dir)
    assert record.architecture == "resnet18" and record.num_classes == 1000
    assert record.input.size == 224 and record.input.mean == IMAGENET_MEAN and record.input.std == IMAGENET_STD
    assert report.path == SOURCE and str(model_dir / "imagenet" / "Linf") in report.notes[0]
    x = torch.rand(2, 3, 64, 64)
    normalised = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(model.eval()(x), reference(normalised), atol=1e-5)


def test_zoo_model_dir_defaults_to_the_environment(zoo, monkeypatch):
    model_dir, _ = zoo
    monkeypatch.setenv("AUTOLORA_MODEL_DIR", str(model_dir))
    _, record, _ = load_classifier(SOURCE, num_classes=3)
    assert record.num_classes == 3


def test_missing_file_without_the_package_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)  # import fails as when the extra is not installed
    with pytest.raises(CheckpointError) as error:
        load_classifier(SOURCE, model_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "imagenet" / "Linf" / "Salman2020Do_R18.pt") in message
    assert "pip install -e '.[robustbench]'" in message


def test_missing_file_offline_with_the_package_says_where_to_put_it(tmp_path, monkeypatch):
    def load_model(name, model_dir, dataset, threat_model):
        raise ConnectionError("Failed to resolve 'drive.google.com'\nmore detail")

    package = types.ModuleType("robustbench")
    package.utils = types.SimpleNamespace(load_model=load_model)
    monkeypatch.setitem(sys.modules, "robustbench", package)
    monkeypatch.setitem(sys.modules, "robustbench.utils", package.utils)
    with pytest.raises(CheckpointError, match=r"could not download .*drive\.google\.com.*put its file at") as error:
        load_classifier(SOURCE, model_dir=tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("source", ["robustbench:imagenet/Salman2020Do_R18", "robustbench:mnist/Linf/X"])
def test_malformed_source_shows_the_form(source, tmp_path):
    with pytest.raises(CheckpointError, match="robustbench:DATASET/THREAT/NAME"):
        load_classifier(source, model_dir=tmp_path)


def test_cli_error_without_the_file_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench", None)
    result = cli(
        "finetune", "--checkpoint", SOURCE, "--model-dir", tmp_path, "--dataset", "digits", "--out", tmp_path / "run"
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Salman2020Do_R18.pt" in lines[0]
