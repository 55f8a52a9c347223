"""Roles: finding them, loading their steps/handlers/defaults, and checking variables up front.

A role is a directory ``<roles dir>/<name>/`` with ``role.py`` (``steps(host)`` yielding Steps in
order, optional ``HANDLERS``, optional ``TEMPLATE_ARGUMENTS``: per template, the names the role
passes to it on each render, such as a loop index; optional ``validate(vars)``; optional
``validate_login(config, vars)``, which refuses settings under which the inventory's own login
would stop working by design), ``defaults.yml`` (every variable,
documented), ``templates/`` and ``spec.py`` (testinfra). Variables are checked against the
defaults before any host is contacted: a ``<role>_`` variable the role does not declare is a
typo, a type that differs from the default's is a mistake, a declared default of ``null`` marks a
variable the inventory must set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from provisioner.errors import RoleError
from provisioner.host import Host, secrets_in
from provisioner.inventory import HostConfig
from provisioner.secrets import Secret, redact, reveal_all
from provisioner.step import Handler, Step
from provisioner.templates import BUILTIN_NAMES, template_variables
from provisioner.yaml_loader import load_yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    validate = getattr(module, "validate", None)
    arguments = {template: frozenset(names) for template, names
                 in getattr(module, "TEMPLATE_ARGUMENTS", {}).items()}
    validate_login = getattr(module, "validate_login", None)
    return Role(path.name, path, _read_defaults(path), handlers, steps,
                validate if callable(validate) else None, arguments,
                validate_login if callable(validate_login) else None)


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


def check_login_kept(roles: Sequence[Role], config: HostConfig,
                     variables: Mapping[str, Any]) -> None:
    """Refuse, before any contact, a host whose roles would end the login the inventory uses."""
    for role in roles:
        if role.validate_login is not None:
            try:
                role.validate_login(config, reveal_all(variables))
            except RoleError as error:
                raise RoleError(f"host {config.name}: "
                                f"{redact(str(error), secrets_in(variables))}") from None


def merge_role_variables(roles: Sequence[Role], inventory_vars: Mapping[str, Any],
                         origin: str) -> dict[str, Any]:
    """Role defaults under the inventory's merged variables, validated; raises RoleError."""
    merged: dict[str, Any] = {}
    for role in roles:
        merged.update(role.defaults)
    for role in roles:
        _check_declared(role, inventory_vars, origin)
    merged.update(inventory_vars)
    for role in roles:
        _check_values(role, merged, origin)
        _check_templates(role, merged)
        if role.validate is not None:
            try:
                role.validate(reveal_all(merged))  # values, as the host will get them
            except RoleError as error:
                raise RoleError(f"{origin}: {redact(str(error), secrets_in(merged))}"
                                ) from None
    return merged


def _check_declared(role: Role, inventory_vars: Mapping[str, Any], origin: str) -> None:
    prefix = role.name + "_"
    for key in inventory_vars:
        if key.startswith(prefix) and key not in role.defaults:
            raise RoleError(f"{origin}: variable {key!r} is not a variable of role {role.name!r} "
                            f"(see {role.path / 'defaults.yml'} for the ones it has); a typo?")


def _check_values(role: Role, merged: Mapping[str, Any], origin: str) -> None:
    for key, default in role.defaults.items():
        value = merged.get(key)
        if value is None and default is not None:
            raise RoleError(f"{origin}: variable {key!r} is set to nothing (an empty YAML value?);"
                            f" give it a value like its default in {role.path / 'defaults.yml'} "
                            f"({default!r}) or remove it.")
        if value is None:
            if default is None:
                raise RoleError(f"{origin}: role {role.name!r} needs variable {key!r}, which is "
                                f"not set; define it in the inventory (see "
                                f"{role.path / 'defaults.yml'} for what it means).")
            continue
        if default is not None and not _same_kind(default, value):
            raise RoleError(f"{origin}: variable {key!r} should be {_kind(default)} like its "
                            f"default in {role.path / 'defaults.yml'}, got {_kind(value)}"
                            f"{'' if isinstance(value, dict | list) else f' {value!r}'}.")


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(value, Secret):
        return isinstance(default, str)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


def _check_templates(role: Role, merged: Mapping[str, Any]) -> None:
    if not role.template_dir.is_dir():
        return
    for template, names in template_variables(role.template_dir).items():
        passed = role.template_arguments.get(template, frozenset())
        missing = sorted(names - set(merged) - BUILTIN_NAMES - passed)
        if missing:
            raise RoleError(f"Template {role.template_dir / template} uses undefined "
                            f"variable(s) {', '.join(missing)}; define them in the inventory or in "
                            f"{role.path / 'defaults.yml'}.")
