"""The one exception type the command line turns into a clean one-line message."""

from __future__ import annotations

from collections.abc import Sequence


class AutoLoraError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names what was wrong (the field, file or value) and how to fix it.
    The CLI prints it without a traceback; library users catch it like any exception.
    """


class ConfigError(AutoLoraError, ValueError):
    """A configuration value that is out of range or of the wrong kind."""

    def __init__(self, field: str, value: object, fix: str) -> None:
        super().__init__(f"{field}={value!r} is invalid: {fix}")
        self.field = field
        self.value = value


def check_choices(field: str, values: Sequence[str], choices: Sequence[str]) -> None:
    """Refuse an empty selection, or one naming anything outside ``choices``."""
    if not values or any(value not in choices for value in values):
        raise ConfigError(field, ",".join(values), f"choose from: {', '.join(choices)}")


class CheckpointError(AutoLoraError):
    """A checkpoint that is missing, unreadable, unsafe or for another model."""


class DataError(AutoLoraError):
    """A data set that is missing, unknown or cannot be adapted to the model."""
