"""Inventory: a YAML file of hosts, groups and defaults, validated before any host is contacted.

Format (documented in README.md and inventories/production.yml)::

    defaults: {user, port, ssh: {...}, vars: {...}}
    groups:   {NAME: {roles: [...], vars: {...}}}
    hosts:    {NAME: {address, port, user, groups: [...], roles: [...], vars: {...}, ssh: {...}}}

Variable precedence, lowest first: role defaults < inventory defaults < group vars (in the order
the host lists its groups) < host vars < CLI ``--set``. Role defaults are layered in by the engine;
this module merges the rest. Secrets appear as ``{secret: env:NAME}`` or ``{secret: file:PATH}``
and are resolved here into masked Secret values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from provisioner import validation_cache
from provisioner.errors import InventoryError
from provisioner.secrets import Secret, resolve_reference
from provisioner.yaml_loader import load_yaml_text

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: The files whose code decides whether a document is valid; part of the validation cache key.
VALIDATOR_SOURCES = (Path(__file__).with_name("inventory_schema.py"),
                     Path(__file__).with_name("yaml_loader.py"))


@dataclass(frozen=True)
class SshSettings:
    """Effective SSH settings for one host, paths resolved against the inventory's directory."""

    identity_file: Path | None
    known_hosts: Path
    trust_on_first_use: bool
    jump_host: str | None
    connect_timeout: float
    command_timeout: float
    sudo_password: Secret | None
    #: Seconds a login stays open after a run for the next run to reuse; 0 = a new login each run.
    control_persist: float = 300.0


@dataclass(frozen=True)
class HostConfig:
    """One host as the inventory describes it, with variables merged up to host level."""

    name: str
    address: str
    port: int
    user: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    vars: Mapping[str, Any]
    ssh: SshSettings


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: dict[str, HostConfig]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> its roles

    def select(self, hosts: str = "", group: str = "") -> list[HostConfig]:
        """Hosts named (comma-separated) and/or members of a group; all hosts when neither."""
        if not hosts and not group:
            return list(self.hosts.values())
        chosen: dict[str, HostConfig] = {}
        for name in filter(None, (part.strip() for part in hosts.split(","))):
            if name not in self.hosts:
                known = ", ".join(sorted(self.hosts)) or "none"
                raise InventoryError(str(self.path), f"hosts.{name}",
                                     f"there is no host {name!r} (known hosts: {known}). "
                                     "Check the spelling or add it under 'hosts:'.")
            chosen[name] = self.hosts[name]
        if group:
            if group not in self.groups:
                known = ", ".join(sorted(self.groups)) or "none"
                raise InventoryError(str(self.path), f"groups.{group}",
                                     f"there is no group {group!r} (known groups: {known}).")
            chosen.update({h.name: h for h in self.hosts.values() if group in h.groups})
        return list(chosen.values())


def load_inventory(path: Path, known_roles: Iterable[str],
                   cli_vars: Mapping[str, Any] | None = None) -> Inventory:
    """Read, validate and merge an inventory; every problem is an InventoryError naming the key."""
    text = _read_text(path)
    document = validation_cache.validated(text, VALIDATOR_SOURCES,
                                          lambda: _validate(path, text))
    roles = set(known_roles)
    _check_groups_and_roles(path, document, roles)
    hosts = {name: _host_config(path, name, entry, document, dict(cli_vars or {}))
             for name, entry in document["hosts"].items()}
    groups = {name: tuple(group["roles"]) for name, group in document["groups"].items()}
    return Inventory(path=path, hosts=hosts, groups=groups)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InventoryError(str(path), "", "the file does not exist. Pass --inventory PATH, or "
                             "run `invoke sandbox.up` to create the sandbox inventory.")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InventoryError(str(path), "", f"cannot be read ({error}).") from None


def _validate(path: Path, text: str) -> dict[str, Any]:
    """Parse and check the document against the schema (pydantic is imported only here)."""
    from provisioner.inventory_schema import validate_document

    try:
        raw = load_yaml_text(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise InventoryError(str(path), where, f"{problem}; fix the YAML there.") from None
    if not isinstance(raw, dict):
        raise InventoryError(str(path), "", "the top level must be a mapping with 'hosts:'.")
    return validate_document(path, raw)


def _check_groups_and_roles(path: Path, document: dict[str, Any],
                            known_roles: set[str]) -> None:
    groups = document["groups"]
    for group_name, group in groups.items():
        _check_role_names(path, f"groups.{group_name}.roles", group["roles"], known_roles)
    for name, host in document["hosts"].items():
        if not _NAME.match(name):
            raise InventoryError(str(path), f"hosts.{name}", "host names may contain letters, "
                                 "digits, '.', '_' and '-' only.")
        for group_name in host["groups"]:
            if group_name not in groups:
                raise InventoryError(str(path), f"hosts.{name}.groups",
                                     f"group {group_name!r} is not defined under 'groups:'.")
        _check_role_names(path, f"hosts.{name}.roles", host["roles"], known_roles)
        if not host["roles"] and not any(groups[g]["roles"] for g in host["groups"]):
            raise InventoryError(str(path), f"hosts.{name}", "this host has no roles: put it in "
                                 "a group with roles, or give it 'roles:'.")


def _check_role_names(path: Path, key: str, names: list[str], known: set[str]) -> None:
    for role in names:
        if role not in known:
            raise InventoryError(str(path), key, f"unknown role {role!r} (available: "
                                 f"{', '.join(sorted(known))}).")


def _host_config(path: Path, name: str, entry: dict[str, Any], document: dict[str, Any],
                 cli_vars: dict[str, Any]) -> HostConfig:
    defaults, groups = document["defaults"], document["groups"]
    layers = [("defaults.vars", defaults["vars"]),
              *((f"groups.{g}.vars", groups[g]["vars"]) for g in entry["groups"]),
              (f"hosts.{name}.vars", entry["vars"]), ("--set", cli_vars)]
    merged: dict[str, Any] = {}
    for key, layer in layers:
        merged.update(_resolve_secrets(path, key, layer))
    group_roles = [role for g in entry["groups"] for role in groups[g]["roles"]]
    roles = tuple(dict.fromkeys(group_roles + entry["roles"]))
    return HostConfig(
        name=name, address=entry["address"], port=entry["port"] or defaults["port"],
        user=entry["user"] or defaults["user"], groups=tuple(entry["groups"]), roles=roles,
        vars=merged,
        ssh=_ssh_settings(path, name, defaults["ssh"], entry["ssh"]),
    )


def _resolve_secrets(path: Path, key: str, values: dict[str, Any]) -> dict[str, Any]:
    return {var: _resolve_value(path, f"{key}.{var}", value) for var, value in values.items()}


def _resolve_value(path: Path, key: str, value: Any) -> Any:
    """Secret references anywhere in a value (lists and mappings too) become Secrets."""
    if isinstance(value, dict) and set(value) == {"secret"}:
        try:
            return resolve_reference(str(value["secret"]), path.parent)
        except ValueError as error:
            raise InventoryError(str(path), key, f"{error}.") from None
    if isinstance(value, dict):
        return {item: _resolve_value(path, f"{key}.{item}", inner) for item, inner in value.items()}
    if isinstance(value, list):
        return [_resolve_value(path, f"{key}[{i}]", inner) for i, inner in enumerate(value)]
    return value


def _ssh_settings(path: Path, host: str, defaults: dict[str, Any],
                  own: dict[str, Any]) -> SshSettings:
    merged = {key: value for layer in (defaults, own) for key, value in layer.items()
              if value is not None}
    base = path.parent

    def local_path(value: str) -> Path:
        return (base / Path(value).expanduser()).resolve()

    password = merged.get("sudo_password")
    secret: Secret | None = None
    if password is not None:
        resolved = _resolve_secrets(path, f"hosts.{host}.ssh", {"sudo_password": password})
        if not isinstance(resolved["sudo_password"], Secret):
            raise InventoryError(str(path), f"hosts.{host}.ssh.sudo_password",
                                 "must be a secret reference like {secret: env:SUDO_PASSWORD}.")
        secret = resolved["sudo_password"]
    return SshSettings(
        identity_file=local_path(merged["identity_file"]) if "identity_file" in merged else None,
        known_hosts=local_path(merged.get("known_hosts", "~/.ssh/known_hosts")),
        trust_on_first_use=merged.get("trust_on_first_use", False),
        jump_host=merged.get("jump_host"),
        connect_timeout=merged.get("connect_timeout", 10.0),
        command_timeout=merged.get("command_timeout", 1800.0),
        sudo_password=secret,
        control_persist=merged.get("control_persist", 300.0),
    )
