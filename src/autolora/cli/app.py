"""The ``autolora`` command: a typer app whose commands parse, build a config and call the library."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..errors import AutoLoraError
from .reporter import configure_logging, fail

app = typer.Typer(
    name="autolora",
    help="Automated robust fine-tuning (AutoLoRa, ICLR 2024): no learning rate or loss weights to tune.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def command(name: str, example: str) -> Callable[[F], F]:
    """Register a command whose user errors print one line and exit 2 (``--debug`` shows the traceback)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            configure_logging()
            try:
                return fn(*args, **kwargs)
            except AutoLoraError as exc:
                if kwargs.get("debug"):
                    raise
                fail(str(exc))
            except KeyboardInterrupt:
                fail("interrupted", code=130)

        epilog = f"Example: {example}"
        app.command(name, epilog=epilog)(wrapper)
        return fn

    return decorate
