"""A host's variables for its roles: role defaults under the inventory's, checked before contact.

Variables are checked against the roles' defaults before any host is contacted: a ``<role>_``
variable the role does not declare is a typo, a type that differs from the default's is a
mistake, a declared default of ``null`` marks a variable the inventory must set. A role's own
``validate``/``validate_login`` hooks run here too, on the values the host will get.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.content.roles import Role
from provisioner.content.templates import BUILTIN_NAMES, template_variables
from provisioner.errors import RoleError
from provisioner.host import secrets_in
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.redaction import redact
from provisioner.secrets.values import Secret, reveal_all


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


def check_inventory_references(roles: Sequence[Role], config: HostConfig,
                               variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse, before any contact, variables naming groups or hosts the inventory lacks; the
    role sees the host's own name as ``host_name``, as its templates do."""
    for role in roles:
        if role.validate_inventory is not None:
            try:
                role.validate_inventory({**reveal_all(variables), "host_name": config.name},
                                        inventory)
            except RoleError as error:
                raise RoleError(f"host {config.name}: role {role.name}: "
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
        if default is not None and not same_kind(default, value):
            raise RoleError(f"{origin}: variable {key!r} should be {kind_name(default)} like its "
                            f"default in {role.path / 'defaults.yml'}, got {kind_name(value)}"
                            f"{'' if isinstance(value, dict | list) else f' {value!r}'}."
                            + unquoted_time_hint(key, default, value))


def unquoted_time_hint(key: str, default: Any, value: Any) -> str:
    """YAML 1.1 reads an unquoted 02:00 as the number 120 (base 60): where a time is wanted,
    say so, with the value written as the user meant it."""
    if not (isinstance(default, str) and re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", default)
            and isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return ""
    hours, minutes = divmod(value, 60)
    if hours >= 24:
        return (f" YAML reads an unquoted time as a number of minutes: {value} is "
                f"{hours}:{minutes:02d}, past a day's last minute (23:59); write the time you "
                f"mean quoted, e.g. {key}: \"{default}\".")
    return (f" YAML reads an unquoted time such as {hours:02d}:{minutes:02d} as a number of "
            f"minutes: write it quoted, {key}: \"{hours:02d}:{minutes:02d}\".")


def same_kind(default: Any, value: Any) -> bool:
    """Whether ``value`` may stand where a role's default is ``default`` (a Secret for a string,
    any number for a number, a boolean only for a boolean)."""
    if isinstance(value, Secret | HostSecret):
        return isinstance(default, str)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def kind_name(value: Any) -> str:
    """What a value is, as a message to a person says it ("a list")."""
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
