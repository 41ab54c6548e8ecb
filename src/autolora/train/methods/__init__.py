"""The registry of training methods: adding one is one file in this folder plus one line below."""

from __future__ import annotations

from ...errors import ConfigError
from ..method import Method
from .autolora import AutoLoRa
from .linear import AdversarialLinear, StandardLinear
from .pgd_at import PgdAtFineTuning, PgdAtPretrain
from .roli import RoLI
from .trades import TradesPretrain, VanillaRFT
from .twins import Twins

METHODS: dict[str, type[Method]] = {}
_ALIASES: dict[str, str] = {}


def register_method(method: type[Method]) -> type[Method]:
    """Make ``method`` available by its name (and aliases) to configs, the CLI and the study."""
    for name in (method.name, *method.aliases):
        if name in METHODS or name in _ALIASES:
            raise ValueError(f"a method named {name!r} is already registered")
    METHODS[method.name] = method
    _ALIASES.update(dict.fromkeys(method.aliases, method.name))
    return method


def get_method(name: str) -> type[Method]:
    """The method registered as ``name`` (or an alias of it)."""
    name = _ALIASES.get(name, name)
    if name not in METHODS:
        raise ConfigError("method", name, f"choose one of: {', '.join(METHODS)}")
    return METHODS[name]


def method_names(*, pretrain: bool) -> list[str]:
    """The fine-tuning (or pre-training) methods' names, in registration order."""
    return [name for name, method in METHODS.items() if method.pretrain == pretrain]


for _method in (AutoLoRa, VanillaRFT, PgdAtFineTuning, Twins, RoLI, StandardLinear, AdversarialLinear,
                PgdAtPretrain, TradesPretrain):  # fmt: skip
    register_method(_method)
