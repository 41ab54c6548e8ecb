"""The ``autolora`` command line."""

from . import evaluate, info, train  # noqa: F401  (registers the commands)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
