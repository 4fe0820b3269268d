"""Help that names a value by what it means (``URL``, ``WHEN``, ``N``), never by its Python type.

Typer prints ``<str>``, ``<int>`` or ``<bool>`` beside every parameter and has no setting to leave them
out; an option shows its ``metavar`` instead of the type, an argument shows its type regardless. These
classes show an option's metavar or nothing, and an argument's name alone.
"""

from __future__ import annotations

from typing import Any

from typer import Context
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Option(TyperOption):
    def display_type_rich(self, ctx: Context) -> str | None:
        return self.metavar


class _Argument(TyperArgument):
    def display_type_rich(self, ctx: Context) -> str | None:
        return None


_PLAIN: dict[type, type] = {TyperOption: _Option, TyperArgument: _Argument}


def _plain(params: list[Any]) -> list[Any]:
    for param in params:
        param.__class__ = _PLAIN.get(type(param), type(param))
    return params


class PlainCommand(TyperCommand):
    def get_params(self, ctx: Context) -> list[Any]:
        return _plain(super().get_params(ctx))


class PlainGroup(TyperGroup):
    """A group whose commands, and theirs, all print plain help (commands added by other modules too)."""

    def get_params(self, ctx: Context) -> list[Any]:
        return _plain(super().get_params(ctx))

    def get_command(self, ctx: Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if type(command) is TyperCommand:
            command.__class__ = PlainCommand
        elif type(command) is TyperGroup:
            command.__class__ = PlainGroup
        return command
