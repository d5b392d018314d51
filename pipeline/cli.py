"""The command line's own rules for every Invoke task: no automatic short flags, clear errors.

Invoke gives each option a short flag from its first letter, so `-s` meant --strategy, --shard
or --seed depending on the task; here there are none. A whole-number option keeps its INT in
`--help`, and a value that is not one is one line and exit 2 instead of Invoke's traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import invoke
from invoke import Exit, Task
from invoke.parser import Argument

EXIT_BAD_INPUT = 2


class CheckedArgument(Argument):
    """An INT option whose bad value ends the command with one line and exit 2."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError as error:
            flag = "--" + str(self.name).replace("_", "-")
            raise Exit(
                f"error: {flag} must be a whole number, not {value!r}", code=EXIT_BAD_INPUT
            ) from error


class CliTask(Task):
    """A task whose whole-number options are CheckedArguments."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.kind is int:
                argument.__class__ = CheckedArgument
        return arguments


def task(*args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Invoke's @task (bare or with options), with the rules above."""
    return invoke.task(*args, klass=CliTask, auto_shortflags=False, **kwargs)  # type: ignore[no-any-return]
