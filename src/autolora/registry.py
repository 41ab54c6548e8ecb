"""A name -> entry table with descriptions, filled by decorators (models, data sets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    description: str
    value: T


class Registry(Generic[T]):
    """Entries by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[T], T]:
        """A decorator that registers its target under ``name``."""

        def decorate(value: T) -> T:
            self._entries[name] = Entry(name, description, value)
            return value

        return decorate

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self._entries[name].value

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)
