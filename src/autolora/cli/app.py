"""The ``autolora`` command: a typer app whose commands parse, build a config and call the library."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..errors import AutoLoraError
from .reporter import configure_logging, fail, out


class _FlagsWithoutType:
    """Help that shows flags (``--help`` included) without typer's ``<bool>`` type."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _Group(_FlagsWithoutType, TyperGroup):
    pass


app = typer.Typer(
    name="autolora",
    cls=_Group,
    help="Automated robust fine-tuning (AutoLoRa, ICLR 2024): no learning rate or loss weights to tune.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _show_version(value: bool) -> None:
    if value:
        out.print(f"autolora {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    """Automated robust fine-tuning (AutoLoRa, ICLR 2024): no learning rate or loss weights to tune."""


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
        app.command(name, epilog=epilog, cls=_Command)(wrapper)
        return fn

    return decorate


def invocation(ctx: typer.Context) -> str:
    """The running command with every option's effective value, e.g. for a run's provenance."""
    words = ["autolora", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or param.name == "debug":
            continue
        if param.param_type_name == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif isinstance(value, bool):
            flag = param.opts[0] if value else (param.secondary_opts[0] if param.secondary_opts else None)
            words += [flag] if flag else []
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)
