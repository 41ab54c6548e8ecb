"""Checkpoint I/O: self-describing run directories, and foreign weights loaded safely.

A run directory holds ``model.safetensors`` and ``config.json`` (architecture, class count,
input spec, provenance). Foreign files load without executing pickled code: safetensors,
or torch files through ``torch.load(weights_only=True)``. Their layout is recognised
(torchvision, MadryLab ``robustness``, AutoAttack/RobustBench CIFAR ResNets, wrapper
prefixes) and their architecture read from the weights' names and shapes.
"""

from __future__ import annotations

import logging
import pickle
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from ..errors import CheckpointError
from ..fileio import read_json, save_tensors, write_json
from ..inputs import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from .classifier import ImageClassifier
from .registry import create_model
from .timm_models import is_timm, read_hub_config

log = logging.getLogger(__name__)
RUN_WEIGHTS = "model.safetensors"
RUN_CONFIG = "config.json"
RUN_FORMAT = "autolora-run/1"
ZOO_PREFIX = "robustbench:"
WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")
_CIFAR_RESNET_DEPTHS = {1: "resnet8", 3: "resnet20", 5: "resnet32", 9: "resnet56"}
_TV_RESNETS = {
    ((2, 2, 2, 2), False, 64): "resnet18",
    ((3, 4, 6, 3), False, 64): "resnet34",
    ((3, 4, 6, 3), True, 64): "resnet50",
    ((3, 4, 6, 3), True, 128): "wide_resnet50_2",
}


@dataclass(frozen=True)
class ModelRecord:
    """What a checkpoint holds: architecture, class count, input spec and stem kind."""

    architecture: str
    num_classes: int
    input: InputSpec
    small_stem: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "input": self.input.to_dict(),
            "small_stem": self.small_stem,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        try:
            small_stem = data.get("small_stem")
            return cls(
                str(data["architecture"]),
                int(data["num_classes"]),
                InputSpec.from_dict(data["input"]),
                None if small_stem is None else bool(small_stem),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"config.json has no valid model record ({exc})") from exc

    def build(self, spec: InputSpec | None = None) -> ImageClassifier:
        """A randomly initialised model of this record's shape."""
        return create_model(self.architecture, self.num_classes, spec or self.input, self.small_stem)


@dataclass
class LoadReport:
    """What loading a checkpoint did, for the user to read."""

    path: str
    layout: str
    architecture: str
    notes: list[str] = field(default_factory=list)
    input_guess: str | None = None  # what of the input spec was guessed, from what, and the flags that set it


@dataclass(frozen=True)
class InputOverrides:
    """Input-spec values the user gives to override what a checkpoint implies."""

    size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def apply(self, spec: InputSpec) -> InputSpec:
        """``spec`` with the values given here put in place of its own."""
        return spec.replace(size=self.size, mean=self.mean, std=self.std)


# --------------------------------------------------------------------------- saving


def stem_is_small(model: ImageClassifier) -> bool | None:
    """Whether the model's stem is a 3x3 convolution (None when it has no ``conv1``)."""
    stem = getattr(model.features, "conv1", None)
    return None if stem is None else stem.kernel_size[0] == 3


def save_run_model(
    directory: str | Path, model: ImageClassifier, architecture: str, extra: dict[str, Any] | None = None
) -> None:
    """Write ``model`` as a run directory: weights first, then the config that describes them."""
    directory = Path(directory)
    record = ModelRecord(architecture, model.num_classes, model.spec, stem_is_small(model))
    save_tensors(directory / RUN_WEIGHTS, model.state_dict(), {"format": RUN_FORMAT})
    write_json(directory / RUN_CONFIG, {"format": RUN_FORMAT, "model": record.to_dict(), **(extra or {})})


# --------------------------------------------------------------------------- reading raw tensors


_NOT_CHECKPOINTS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)
_UNSAFE_GLOBAL = re.compile(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)")
_JSON_START = re.compile(rb"\s*(\{|\[\s*[\[{\"\-\d\]])")


def file_kind(head: bytes) -> str:
    """``"safetensors"``, ``"torch"`` (zip or legacy pickle), or what the first bytes say the file is instead."""
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1:
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "torch"
    kind = next((kind for magic, kind in _NOT_CHECKPOINTS if head.startswith(magic)), None)
    if kind is not None:
        return kind
    if b"\x00" in head:
        return "a binary file of unknown format"
    return "a JSON file" if _JSON_START.match(head) else "a text file"


def _refuse_unsafe(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    found = _UNSAFE_GLOBAL.search(str(exc))
    what = f"names {found.group(1)}, code" if found else "holds objects other than tensors and plain containers"
    return CheckpointError(
        f"refusing to load {path}: its pickle {what} that loading could run; "
        "re-save its state dict as safetensors where you trust it"
    )


def read_tensors(path: Path) -> dict[str, Any]:
    """Read a weights file without running pickled code: safetensors, or torch with weights_only.

    The first bytes decide: a file that is neither (an image, JSON, text) is refused as not a
    checkpoint before any loader sees it.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    with path.open("rb") as handle:
        kind = file_kind(handle.read(256))
    if kind not in ("safetensors", "torch"):
        raise CheckpointError(
            f"{path} is not a checkpoint but {kind}; give a run directory or a weights file "
            "(.safetensors, or .pt/.pth from torch.save)"
        )
    if kind == "safetensors":
        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file (truncated?): {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
            raise _refuse_unsafe(path, exc) from None
        raise CheckpointError(f"checkpoint {path} is not a readable torch file (truncated?): {exc}") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is not a readable torch file (truncated?): {first_line}") from None


def extract_state_dict(raw: Any, path: Path) -> dict[str, Tensor]:
    """The tensor dict inside a loaded file: top level, or under ``state_dict`` / ``model``."""
    candidate = raw
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(candidate, dict) and isinstance(candidate.get(key), dict):
            candidate = candidate[key]
            break
    if not isinstance(candidate, dict) or not candidate:
        raise CheckpointError(
            f"{path} holds no state dict (expected tensors at top level or under 'state_dict'/'model')"
        )
    tensors = {k: v for k, v in candidate.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors")
    return tensors


# --------------------------------------------------------------------------- foreign layouts


def strip_prefixes(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Strip wrapper prefixes (``module.``, ``model.``, ...) while they prefix every key."""
    stripped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    return state, stripped


def split_madry(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], InputSpec | None] | None:
    """A MadryLab ``robustness`` checkpoint: keep ``model.*``, read the normaliser, drop the attacker copy."""
    keys = list(state)
    if not any(k.startswith(("attacker.", "normalizer.")) for k in keys) or not any(
        k.startswith("model.") for k in keys
    ):
        return None
    model = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    mean, std = state.get("normalizer.new_mean"), state.get("normalizer.new_std")
    spec = None
    if mean is not None and std is not None:
        channels = mean.numel()
        spec = InputSpec(channels, 32, tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()))
    return model, spec


_SHORTCUT = re.compile(r"^(layer\d+\.\d+\.)shortcut\.")


def rename_cifar_style(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], bool]:
    """AutoAttack / RobustBench / MadryLab CIFAR ResNets: ``shortcut`` -> ``downsample``, ``linear`` -> ``fc``."""
    if not any(_SHORTCUT.match(k) for k in state) and not any(k.startswith("linear.") for k in state):
        return state, False
    renamed = {}
    for key, value in state.items():
        key = _SHORTCUT.sub(r"\1downsample.", key)
        if key.startswith("linear."):
            key = "fc." + key[len("linear.") :]
        renamed[key] = value
    return renamed, True


def _blocks_per_stage(state: dict[str, Tensor]) -> tuple[int, ...]:
    counts = []
    stage = 1
    while any(k.startswith(f"layer{stage}.") for k in state):
        indices = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
        counts.append(max(indices) + 1)
        stage += 1
    return tuple(counts)


def infer_architecture(state: dict[str, Tensor]) -> str | None:
    """The registry name of a torchvision-named ResNet state dict, from its keys and shapes."""
    if "conv1.weight" not in state or "layer1.0.conv1.weight" not in state:
        return None
    blocks = _blocks_per_stage(state)
    bottleneck = "layer1.0.conv3.weight" in state
    width = state["layer1.0.conv1.weight"].shape[0]
    if len(blocks) == 3 and not bottleneck and len(set(blocks)) == 1 and state["conv1.weight"].shape[0] == 16:
        return _CIFAR_RESNET_DEPTHS.get(blocks[0])
    return _TV_RESNETS.get((blocks, bottleneck, width))


def infer_input_spec(state: dict[str, Tensor], carried: InputSpec | None) -> tuple[InputSpec, str]:
    """Channels from the stem's weights; 224 px + ImageNet statistics for a 7x7 stem, 32 px for 3x3."""
    stem = state["conv1.weight"]
    channels, kernel = stem.shape[1], stem.shape[-1]
    if kernel == 7:
        size, mean, std, why = 224, IMAGENET_MEAN, IMAGENET_STD, "7x7 stem: ImageNet-style, 224 px"
    else:
        size, mean, std, why = 32, (0.0,) * 3, (1.0,) * 3, f"{kernel}x{kernel} stem: CIFAR-style, 32 px"
    if carried is not None:
        mean, std, why = carried.mean, carried.std, why + ", normalisation from the file"
    elif kernel == 7:
        why += ", ImageNet mean/std"
    else:
        why += ", no normalisation"
    return InputSpec(channels, size, mean[:channels], std[:channels]), why


def to_classifier_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision names (``conv1``, ``fc``) -> ``ImageClassifier`` names (``features.conv1``, ``head``)."""
    if any(k.startswith("features.") for k in state) and any(k.startswith("head.") for k in state):
        return state
    return {("head." + k[3:] if k.startswith("fc.") else "features." + k): v for k, v in state.items()}


def from_classifier_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {("fc." + k[5:] if k.startswith("head.") else k.removeprefix("features.")): v for k, v in state.items()}


# --------------------------------------------------------------------------- loading


def _apply_overrides(spec: InputSpec, overrides: InputOverrides) -> InputSpec:
    return overrides.apply(spec)


def input_guess(
    name: str, spec: InputSpec, why: str, carried: InputSpec | None, overrides: InputOverrides
) -> str | None:
    """One line naming the parts of ``spec`` that neither the file ``name`` nor the user gave, or None."""
    guessed = []
    if overrides.size is None:
        guessed.append((f"{spec.size} px", "--input-size"))
    if carried is None and overrides.mean is None:
        guessed.append((f"mean {_floats(spec.mean)}", "--mean"))
    if carried is None and overrides.std is None:
        guessed.append((f"std {_floats(spec.std)}", "--std"))
    if not guessed:
        return None
    values, flags = ", ".join(v for v, _ in guessed), ", ".join(f for _, f in guessed)
    return f"guessed the input of {name}: {values} (from its {why.split(',')[0]}); set it with {flags}"


def _floats(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def load_state_strict(model: ImageClassifier, state: dict[str, Tensor], path: str, *, drop_head: bool) -> list[str]:
    """Load ``state`` into ``model``; every key must match in name and shape, except a dropped head."""
    notes = []
    expected = model.state_dict()
    if drop_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        expected = {k: v for k, v in expected.items() if not k.startswith("head.")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(f"{path} does not fit the model: " + "; ".join(parts))
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{path} is for another architecture or class count: {key} has shape "
                f"{tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=not drop_head)
    if drop_head:
        notes.append("classification head not loaded (a new head is used)")
    return notes


def load_classifier(
    path: str | Path,
    *,
    architecture: str | None = None,
    num_classes: int | None = None,
    overrides: InputOverrides = InputOverrides(),
    model_dir: Path | None = None,
) -> tuple[ImageClassifier, ModelRecord, LoadReport]:
    """Load a run directory, a foreign weights file or a RobustBench zoo entry as an ``ImageClassifier``.

    ``num_classes`` different from the checkpoint's replaces the head (zero-initialised);
    every other weight must match exactly. ``architecture`` checks, or for layouts that
    cannot be recognised supplies, the registry model (or ``timm:NAME``) to build.
    ``robustbench:DATASET/THREAT/NAME`` reads the zoo's file under ``model_dir``.
    """
    if str(path).startswith(ZOO_PREFIX):
        return load_zoo_model(str(path), model_dir, architecture, num_classes, overrides)
    path = Path(path)
    if (path.is_file() and is_timm(architecture)) or (path.is_dir() and read_hub_config(path) is not None):
        from .timm_checkpoint import load_timm  # imports this module

        return load_timm(path, architecture, num_classes, overrides)
    if path.is_dir():
        return _load_run_directory(path, architecture, num_classes, overrides)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (give a run directory or a weights file)")
    raw = read_tensors(path)
    state = extract_state_dict(raw, path)
    state, stripped = strip_prefixes(state)
    notes = [f"stripped prefix {p!r}" for p in stripped]
    layout = "state dict"
    carried: InputSpec | None = None
    madry = split_madry(state)
    if madry is not None:
        state, carried = madry
        state, more = strip_prefixes(state)
        notes += [f"stripped prefix {p!r}" for p in more]
        layout = "MadryLab robustness"
        notes.append("dropped the attacker's copy and read the normaliser")
    ours = any(k.startswith("features.") for k in state) and any(k.startswith("head.") for k in state)
    torch_state = from_classifier_keys(state) if ours else state
    torch_state, renamed = rename_cifar_style(torch_state)
    if renamed:
        layout = "CIFAR ResNet (shortcut/linear names)" if layout == "state dict" else layout
        notes.append("renamed shortcut -> downsample, linear -> fc")
    inferred = infer_architecture(torch_state)
    if architecture and inferred and architecture != inferred:
        raise CheckpointError(f"{path} holds a {inferred}, but the model was given as {architecture}")
    arch = architecture or inferred
    if arch is None:
        raise CheckpointError(
            f"cannot tell the architecture of {path}; pass --model with a registered model name or timm:NAME"
        )
    if "conv1.weight" not in torch_state:
        raise CheckpointError(f"{path} has no stem convolution 'conv1.weight'; is it a ResNet of the registry?")
    spec, why = infer_input_spec(torch_state, carried)
    spec = _apply_overrides(spec, overrides)
    notes.append(f"input spec: {why}")
    guess = input_guess(path.name, spec, why, carried, overrides)
    if guess is not None:
        log.warning(guess)
    head = torch_state.get("fc.weight")
    small_stem = torch_state["conv1.weight"].shape[-1] == 3
    record = ModelRecord(arch, int(head.shape[0]) if head is not None else 0, spec, small_stem)
    model, record, load_notes = _build_and_load(record, to_classifier_keys(torch_state), num_classes, str(path))
    return model, record, LoadReport(str(path), layout, arch, notes + load_notes, guess)


def _build_and_load(
    record: ModelRecord, state: dict[str, Tensor], num_classes: int | None, path: str
) -> tuple[ImageClassifier, ModelRecord, list[str]]:
    """Build ``record``'s model, load ``state`` strictly, and give it ``num_classes`` outputs."""
    classes = num_classes or record.num_classes
    if classes < 2:
        raise CheckpointError(f"{path} has no classification head; give the number of classes")
    drop_head = classes != record.num_classes
    model = record.build() if record.num_classes >= 2 else replace(record, num_classes=classes).build()
    notes = load_state_strict(model, state, path, drop_head=drop_head)
    if drop_head:
        model.reset_classifier(classes, zero_init=True)
    return model, replace(record, num_classes=classes), notes


def _load_run_directory(
    path: Path, architecture: str | None, num_classes: int | None, overrides: InputOverrides
) -> tuple[ImageClassifier, ModelRecord, LoadReport]:
    config_path, weights_path = path / RUN_CONFIG, path / RUN_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{path} is not a run directory (it needs {RUN_CONFIG} and {RUN_WEIGHTS})")
    try:
        config = read_json(config_path)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON (truncated?): {exc}") from exc
    record = ModelRecord.from_dict(config.get("model", {}))
    if architecture and architecture != record.architecture:
        raise CheckpointError(f"{path} holds a {record.architecture}, but the model was given as {architecture}")
    record = replace(record, input=_apply_overrides(record.input, overrides))
    state = read_tensors(weights_path)
    model, record, notes = _build_and_load(record, state, num_classes, str(weights_path))
    return model, record, LoadReport(str(path), "autolora run directory", record.architecture, notes)


# --------------------------------------------------------------------------- RobustBench


def load_zoo_model(
    source: str, model_dir: Path | None, architecture: str | None, num_classes: int | None, overrides: InputOverrides
) -> tuple[ImageClassifier, ModelRecord, LoadReport]:
    """Load ``robustbench:DATASET/THREAT/NAME`` from its file under ``model_dir`` (downloaded when possible)."""
    from .robustbench import ZooModel, default_model_dir, fetch

    zoo = ZooModel.parse(source)
    file = fetch(zoo, model_dir or default_model_dir())
    model, record, report = load_classifier(
        file, architecture=architecture, num_classes=num_classes, overrides=zoo.overrides(overrides)
    )
    report.notes.insert(0, f"RobustBench {zoo}: {file}")
    return model, record, replace(report, path=source)
