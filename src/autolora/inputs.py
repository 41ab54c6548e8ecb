"""What a model expects as input: channels, size and the normalisation it applies itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """A model's input: ``channels`` x ``size`` x ``size`` pixels in [0, 1].

    ``mean`` and ``std`` are applied inside the model, so everything outside it
    (data, attacks, evaluation) works on raw [0, 1] pixels.
    """

    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError("input.channels", self.channels, "use 1 (grey) or 3 (RGB)")
        if self.size < 8:
            raise ConfigError("input.size", self.size, "use an input size of at least 8 pixels")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) == 1 and self.channels == 3:
                values = values * 3
            if len(values) != self.channels:
                raise ConfigError(f"input.{name}", values, f"give one value per channel ({self.channels})")
            object.__setattr__(self, name, values)
        if any(s <= 0 for s in self.std):
            raise ConfigError("input.std", self.std, "standard deviations must be positive")

    @classmethod
    def plain(cls, channels: int, size: int) -> InputSpec:
        """A spec with no normalisation (mean 0, std 1)."""
        return cls(channels, size, (0.0,) * channels, (1.0,) * channels)

    def replace(self, **changes: Any) -> InputSpec:
        values = asdict(self) | {k: v for k, v in changes.items() if v is not None}
        return InputSpec(**values)

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": self.size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        try:
            return cls(int(data["channels"]), int(data["size"]), tuple(data["mean"]), tuple(data["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError("input", data, "expected channels, size, mean and std") from exc
