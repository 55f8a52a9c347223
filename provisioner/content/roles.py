"""Roles: finding them on the role search path and loading their steps, handlers and defaults.

A role is a directory ``<roles dir>/<name>/`` with ``role.py`` (``steps(host)`` yielding Steps in
order, optional ``HANDLERS``, optional ``TEMPLATE_ARGUMENTS``: per template, the names the role
passes to it on each render, such as a loop index; optional ``validate(vars)``; optional
``validate_login(config, vars)``, which refuses settings under which the inventory's own login
would stop working by design; optional ``validate_inventory(vars, inventory)``, which refuses
names of groups or hosts the inventory lacks; optional ``release(host)``, which makes it a
role that ships releases for ``invoke deploy``: provisioner/release.py), ``defaults.yml``
(every variable, documented), ``templates/`` and ``spec.py`` (testinfra). variables.py
checks a host's variables against these defaults.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.inventory.yaml_loader import load_yaml
from provisioner.release import Release
from provisioner.step import Handler, Step

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def role_search_path() -> tuple[Path, ...]:
    """The project's roles/ first, then the directories in $PROVISIONER_ROLES_PATH (':'-separated).

    The extra path is how roles kept outside roles/ (e.g. the benchmark's workload) are run
    exactly like product roles.
    """
    extra = os.environ.get("PROVISIONER_ROLES_PATH", "")
    return (PROJECT_ROOT / "roles", *(Path(part).resolve() for part in extra.split(":") if part))


@dataclass(frozen=True)
class Role:
    name: str
    path: Path
    defaults: Mapping[str, Any]
    handlers: Mapping[str, Handler]
    steps: Callable[[Host], Iterable[Step]]
    validate: Callable[[Mapping[str, Any]], None] | None = None
    #: Template (relative path) -> names the role passes to each render of it; not variables.
    template_arguments: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Raises RoleError when these variables would end the inventory's own login to the host.
    validate_login: Callable[[HostConfig, Mapping[str, Any]], None] | None = None
    #: Raises RoleError when the variables name what the inventory lacks (a group whose hosts
    #: may reach a port, a backup host): judged on the whole inventory, before contact.
    validate_inventory: Callable[[Mapping[str, Any], InventoryView], None] | None = None
    #: The role's releases for ``invoke deploy`` (provisioner/release.py), when it ships any.
    release: Callable[[Host], Release] | None = None

    @property
    def template_dir(self) -> Path:
        return self.path / "templates"

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.py"


def available_roles(role_dirs: Sequence[Path] | None = None) -> dict[str, Path]:
    """Role name -> directory, for every directory holding a role.py (first one found wins)."""
    found: dict[str, Path] = {}
    for directory in role_dirs if role_dirs is not None else role_search_path():
        for candidate in sorted(directory.glob("*/role.py")):
            found.setdefault(candidate.parent.name, candidate.parent)
    return found


@cache
def load_role(path: Path) -> Role:
    """Import a role's module and read its defaults; cached for the process."""
    module = _import(path)
    steps = getattr(module, "steps", None)
    if not callable(steps):
        raise RoleError(f"Role {path.name} ({path / 'role.py'}) defines no steps(host) function.")
    handlers = {handler.name: handler for handler in getattr(module, "HANDLERS", ())}
    check_handler_names(path.name, handlers)
    validate = getattr(module, "validate", None)
    arguments = {template: frozenset(names) for template, names
                 in getattr(module, "TEMPLATE_ARGUMENTS", {}).items()}
    validate_login = getattr(module, "validate_login", None)
    validate_inventory = getattr(module, "validate_inventory", None)
    release = getattr(module, "release", None)
    return Role(path.name, path, _read_defaults(path), handlers, steps,
                validate if callable(validate) else None, arguments,
                validate_login if callable(validate_login) else None,
                validate_inventory if callable(validate_inventory) else None,
                release if callable(release) else None)


#: A handler's name becomes a file name on the host (its pending record, run/handlers.py): no
#: '/', no leading dot or blank.
HANDLER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+ -]*$")
#: The longest a handler may wait for its service to be ready again, in seconds.
MAXIMUM_READY_TIMEOUT = 3600


def check_handler_names(role: str, handlers: Mapping[str, Handler]) -> None:
    """RoleError for a handler whose name cannot be recorded or that supersedes an unknown one."""
    for handler in handlers.values():
        if not HANDLER_NAME.fullmatch(handler.name):
            raise RoleError(f"Role {role}: handler name {handler.name!r} must start with a letter"
                            " or digit and hold only letters, digits, blanks and _ . : @ + -.")
        timeout = handler.ready_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int) or \
                not 1 <= timeout <= MAXIMUM_READY_TIMEOUT:
            raise RoleError(f"Role {role}: handler {handler.name!r} has ready_timeout "
                            f"{timeout!r}; it must be a whole number of seconds from 1 to "
                            f"{MAXIMUM_READY_TIMEOUT}.")
        unknown = [name for name in handler.supersedes if name not in handlers]
        if unknown:
            raise RoleError(f"Role {role}: handler {handler.name!r} supersedes "
                            f"{', '.join(map(repr, unknown))}, which the role does not define "
                            f"(its handlers: {', '.join(sorted(handlers))}).")


def check_notifications(role: Role, steps: Sequence[Step]) -> None:
    """RoleError, before anything runs, for a step that notifies a handler the role lacks."""
    for step in steps:
        unknown = [name for name in step.notify if name not in role.handlers]
        if unknown:
            known = ", ".join(sorted(role.handlers)) or "none"
            raise RoleError(f"Role {role.name}: step {step.label!r} notifies "
                            f"{', '.join(map(repr, unknown))}, which the role does not define "
                            f"(its handlers: {known}).")


def _import(path: Path) -> ModuleType:
    name = f"provisioner_role_{path.name}"
    spec = importlib.util.spec_from_file_location(name, path / "role.py")
    if spec is None or spec.loader is None:
        raise RoleError(f"Cannot import role {path.name} from {path / 'role.py'}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_defaults(path: Path) -> dict[str, Any]:
    defaults_file = path / "defaults.yml"
    if not defaults_file.is_file():
        return {}
    try:
        data = load_yaml(defaults_file) or {}
    except yaml.YAMLError as error:
        raise RoleError(f"{defaults_file} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise RoleError(f"{defaults_file} must be a mapping of variable: default.")
    return data
