"""The invoke task class of tasks.py and what every task shares: short flags, number flags,
user errors as one line and exit 2.

Kept light on purpose (invoke and the standard library only): tasks.py imports it for
``invoke --list`` and every task, before any of the project's heavier modules.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from invoke.exceptions import Exit
from invoke.tasks import Task

F = TypeVar("F", bound=Callable[..., Any])


#: Each flag's short form, the same in every task that has it, never -h (so ``invoke TASK -h``
#: shows the help; invoke's own choice gave --host -h, and --roles -o here but -r there).
SHORT_FLAGS = {
    "host": "H", "group": "g", "inventory": "i", "check": "c", "diff": "d", "report": "o",
    "roles": "r", "parallel": "p", "set": "s", "profile": "t", "pytest_args": "p", "json": "j",
    "name": "n", "user": "u", "count": "c", "suite": "s", "reps": "r", "scenarios": "s",
    "tools": "t", "smoke": "m", "serial": "b", "variant": "v", "file": "f", "into": "I",
    "replace": "R", "version": "V", "message": "m", "batch": "b", "force_unlock": "F",
    "to": "T", "limit": "l", "min_index": "M", "html": "w", "offline": "O",
}


class FlagTask(Task[Any]):
    """A task whose short flags come from SHORT_FLAGS instead of invoke's first free letter, and
    whose number flags say in one line what is wrong with ``--parallel x`` (invoke's own
    conversion fails with a traceback)."""

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        options: dict[str, Any] = super().arg_opts(name, default, taken_names)
        options["names"] = [options["names"][0], SHORT_FLAGS[name]]
        if options.get("kind") is int:
            options["kind"] = str  # converted by __call__, which can say what is wrong
        return options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for name, parameter in inspect.signature(self.body).parameters.items():
            given = kwargs.get(name)
            if isinstance(parameter.default, int) and not isinstance(parameter.default, bool) \
                    and isinstance(given, str):
                kwargs[name] = whole_number(name, given)
        return super().__call__(*args, **kwargs)


def whole_number(name: str, text: str) -> int:
    """A number flag's value; exit 2 with one line when it is not a whole number."""
    try:
        return int(text)
    except ValueError:
        flag = "--" + name.replace("_", "-")
        raise Exit(f"error: {flag} {text!r}: must be a whole number, like {flag} 2.",
                   code=2) from None


def write_bytecode() -> None:
    """Let Python cache the bytecode of the modules a task imports from here on.

    invoke turns bytecode writing off before it imports tasks.py (so no ``tasks.pyc`` lands
    beside it, pyinvoke issue 68) and leaves it off: an editable install would then compile
    provisioner/ and roles/ afresh on every run, tens of milliseconds of a 0.25 s no-op.
    PYTHONDONTWRITEBYTECODE is overridden too: pip compiles every package it installs whatever
    it says, and the project's own modules should be no slower than those.
    """
    sys.dont_write_bytecode = False


def user_errors(function: F) -> F:
    """Run a task that uses the project's code: its modules' bytecode cached (write_bytecode),
    a ProvisionerError turned into its one-paragraph message and exit code 2, no traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        write_bytecode()
        from provisioner.errors import ProvisionerError

        try:
            return function(*args, **kwargs)
        except ProvisionerError as error:
            raise Exit(f"error: {error}", code=2) from None
    return wrapper  # type: ignore[return-value]
