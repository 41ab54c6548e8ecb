"""The ``autolora`` command line."""

from . import demo, diagnose, evaluate, info, report, train  # noqa: F401  (registers the commands)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
