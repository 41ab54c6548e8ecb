"""timm weights from a local file or a Hugging Face hub snapshot, loaded strictly.

A file in timm's layout (or in a family's original layout that timm's own ``checkpoint_filter_fn``
maps, e.g. Meta's ConvNeXt) loads with ``--model timm:NAME``; a hub snapshot directory (``config.json``
with ``architecture`` and ``pretrained_cfg``, beside ``model.safetensors``) names its model itself.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..errors import CheckpointError
from .checkpoint import (
    InputOverrides,
    LoadReport,
    ModelRecord,
    extract_state_dict,
    load_state_strict,
    read_tensors,
    strip_prefixes,
)
from .classifier import ImageClassifier
from .timm_models import (
    PREFIX,
    classifier_name,
    create_timm_classifier,
    default_spec,
    first_conv_channels,
    from_timm_state,
    head_classes,
    hub_spec,
    hub_weights,
    read_hub_config,
    timm_filter,
    timm_name,
    to_timm_state,
)


def _config_classifier(architecture: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(timm_name(architecture))
    return str(cfg.classifier) if cfg and cfg.classifier else "head"


def _timm_layout(state: dict[str, Tensor], architecture: str) -> dict[str, Tensor]:
    """The state in timm's names; a file saved from an ``ImageClassifier`` is renamed back."""
    ours = any(k.startswith("features.") for k in state) and any(k.startswith("head.") for k in state)
    return to_timm_state(state, _config_classifier(architecture)) if ours else state


def load_timm(
    path: Path, architecture: str | None, num_classes: int | None, overrides: InputOverrides
) -> tuple[ImageClassifier, ModelRecord, LoadReport]:
    """Load timm weights from ``path`` (a file, with ``architecture`` = ``timm:NAME``, or a hub snapshot)."""
    hub = read_hub_config(path) if path.is_dir() else None
    if hub is not None:
        named = PREFIX + str(hub["architecture"])
        if architecture and architecture != named:
            raise CheckpointError(f"{path} holds a {named}, but the model was given as {architecture}")
        architecture, weights, layout = named, hub_weights(path), "timm hub snapshot"
    elif architecture:
        weights, layout = path, "timm state dict"
    else:
        raise CheckpointError(f"cannot tell the architecture of {path}; pass --model timm:NAME")
    state, stripped = strip_prefixes(extract_state_dict(read_tensors(weights), weights))
    notes = [f"stripped prefix {p!r}" for p in stripped]
    state = _timm_layout(state, architecture)
    channels = first_conv_channels(state, architecture)
    spec = overrides.apply(hub_spec(hub, channels) if hub else default_spec(architecture, channels))
    notes.append(f"input spec: {spec.size} px, mean/std from timm's {'hub config' if hub else 'pretrained config'}")
    file_classes = head_classes(state, _config_classifier(architecture))
    classes = num_classes or file_classes
    model = create_timm_classifier(architecture, max(file_classes, classes, 2), spec)
    state, filtered = timm_filter(state, model.features)
    if filtered:
        notes.append("mapped by timm's checkpoint_filter_fn (layout or position-embedding size)")
    ours = from_timm_state(state, classifier_name(model.features))
    notes += load_state_strict(model, ours, str(weights), drop_head=classes != file_classes)
    if classes < 2:
        raise CheckpointError(f"{weights} has no classification head; give the number of classes")
    if classes != file_classes:
        model.reset_classifier(classes, zero_init=True)
    record = ModelRecord(architecture, classes, spec)
    return model, record, LoadReport(str(path), layout, architecture, notes)
