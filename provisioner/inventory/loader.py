"""Inventory: a YAML file of hosts, groups and defaults, validated before any host is contacted.

Format (documented in README.md and inventories/production.yml)::

    defaults: {user, port, ssh: {...}, vars: {...}}
    groups:   {NAME: {roles: [...], vars: {...}}}
    hosts:    {NAME: {address, port, user, groups: [...], roles: [...], vars: {...}, ssh: {...}}}

Variable precedence, lowest first: role defaults < inventory defaults < group vars (in the order
the host lists its groups) < host vars < CLI ``--set``. Role defaults are layered in by the engine;
this module merges the rest. Secrets appear as ``{secret: env:NAME}`` or ``{secret: file:PATH}``
and are resolved here into masked Secret values.

What this module checks runs on every load, cached validation or not: that a whole document
passed the schema says nothing about the roles installed now, the environment's secrets or the
command line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import InventoryError
from provisioner.inventory import validation_cache
from provisioner.inventory.hosts import (
    SECRET_REFERENCE_REQUIRED,
    HostConfig,
    Inventory,
    SshSettings,
)
from provisioner.inventory.yaml_loader import load_yaml_text
from provisioner.secrets.host_store import DECLARATIONS, HostSecret, parse_declaration
from provisioner.secrets.values import Secret, SecretNotAvailable, resolve_reference

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


#: The files whose code decides whether a document is valid and what the cache stores for it
#: (this one holds _validate, the function whose result is cached); part of the cache key.
VALIDATOR_SOURCES = (Path(__file__), Path(__file__).with_name("schema.py"),
                     Path(__file__).with_name("yaml_loader.py"))


#: Reads a secret reference such as "env:NAME"; raises ValueError saying what is wrong.
SecretResolver = Callable[[str, Path], Secret | HostSecret]


def load_inventory(path: Path, known_roles: Iterable[str],
                   cli_vars: Mapping[str, Any] | None = None, *,
                   resolve_secrets: bool = True) -> Inventory:
    """Read, validate and merge an inventory; every problem is an InventoryError naming the key.

    ``resolve_secrets=False`` reads no secret (each becomes an empty stand-in that keeps its
    reference): for commands that only select hosts, such as ``invoke disconnect``, which must
    work without the secrets' environment variables. Such an inventory is never run."""
    text = _read_text(path)
    document = validation_cache.validated(text, VALIDATOR_SOURCES,
                                          lambda: _validate(path, text))
    roles = set(known_roles)
    _check_groups_and_roles(path, document, roles)
    cli = dict(cli_vars or {})
    resolver = resolve_reference if resolve_secrets else _unread_secret
    hosts, unreadable = {}, {}
    for name, entry in document["hosts"].items():
        try:
            hosts[name] = _host_config(path, name, entry, document, cli, resolver)
        except SecretUnreadable as error:
            # Only a run that selects this host needs its secrets (the web hosts' deploy needs
            # no database key file): the error waits for Inventory.select.
            unreadable[name] = error
            hosts[name] = _host_config(path, name, entry, document, cli, _unread_secret)
    _check_one_entry_per_machine(path, hosts)
    groups = {name: tuple(group["roles"]) for name, group in document["groups"].items()}
    origins = {name: {var: origin for origin, layer in _variable_layers(name, entry, document, cli)
                      for var in layer}
               for name, entry in document["hosts"].items()}
    return Inventory(path=path, hosts=hosts, groups=groups, variable_origins=origins,
                     file_variables=_file_variables(document), cli_variables=cli,
                     unreadable_secrets=unreadable)


class SecretUnreadable(InventoryError):
    """A secret reference that is well formed but cannot be read here (a variable not set, a
    file not there): an error only for a run that selects its host."""


def forget_validation(path: Path) -> None:
    """The inventory at path was refused by a check after the schema: keep no cached copy."""
    try:
        validation_cache.forget(path.read_text(encoding="utf-8"), VALIDATOR_SOURCES)
    except (OSError, UnicodeDecodeError):
        return


def _unread_secret(reference: str, base_dir: Path) -> Secret:
    return Secret("", reference)


def _read_text(path: Path) -> str:
    if path.is_dir():
        inside = sorted(p.name for p in (*path.glob("*.yml"), *path.glob("*.yaml")))
        files = f" (YAML files in it: {', '.join(inside)})" if inside else ""
        raise InventoryError(str(path), "", f"this is a directory, not an inventory file{files}."
                             " Pass the file itself: --inventory PATH/TO/FILE.yml.")
    if not path.is_file():
        raise InventoryError(str(path), "", "the file does not exist. Pass --inventory PATH, or "
                             "run `invoke sandbox.up` to create the sandbox inventory.")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InventoryError(str(path), "", f"cannot be read ({error}).") from None


def _validate(path: Path, text: str) -> dict[str, Any]:
    """Parse and check the document against the schema (pydantic is imported only here)."""
    from provisioner.inventory.schema import validate_document

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
        if not _NAME.fullmatch(name):
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


def _variable_layers(name: str, entry: dict[str, Any], document: dict[str, Any],
                     cli_vars: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A host's variable sections, lowest precedence first, each named as the user wrote it."""
    groups = document["groups"]
    return [("defaults.vars", document["defaults"]["vars"]),
            *((f"groups.{g}.vars", groups[g]["vars"]) for g in entry["groups"]),
            (f"hosts.{name}.vars", entry["vars"]), ("--set", cli_vars)]


def _file_variables(document: dict[str, Any]) -> frozenset[str]:
    sections = [document["defaults"]["vars"],
                *(group["vars"] for group in document["groups"].values()),
                *(host["vars"] for host in document["hosts"].values())]
    return frozenset(name for section in sections for name in section)


def _host_config(path: Path, name: str, entry: dict[str, Any], document: dict[str, Any],
                 cli_vars: dict[str, Any], resolver: SecretResolver) -> HostConfig:
    defaults, groups = document["defaults"], document["groups"]
    merged: dict[str, Any] = {}
    declared: dict[str, Any] = {}
    for key, layer in _variable_layers(name, entry, document, cli_vars):
        merged.update(_resolve_secrets(path, key, layer, resolver))
        declared.update(_declared_secrets(path, key, layer))
    if declared:
        merged[DECLARATIONS] = declared
    _check_host_secrets_declared(path, name, entry, document, cli_vars, declared)
    group_roles = [role for g in entry["groups"] for role in groups[g]["roles"]]
    roles = tuple(dict.fromkeys(group_roles + entry["roles"]))
    return HostConfig(
        name=name, address=entry["address"], port=entry["port"] or defaults["port"],
        user=entry["user"] or defaults["user"], groups=tuple(entry["groups"]), roles=roles,
        vars=merged,
        ssh=_ssh_settings(path, name, defaults["ssh"], entry["ssh"], resolver),
    )


def _check_one_entry_per_machine(path: Path, hosts: Mapping[str, HostConfig]) -> None:
    """Two entries for one address and port (through the same jump host) are one machine run
    twice at once: their steps would race (apt's lock, the same files) and each would undo the
    other's roles. Behind different jump hosts one private address can be two machines."""
    seen: dict[tuple[str, int, str | None], str] = {}
    for config in hosts.values():
        where = (_comparable_address(config.address), config.port, config.ssh.jump_host)
        if where in seen:
            through = f" through {config.ssh.jump_host}" if config.ssh.jump_host else ""
            raise InventoryError(
                str(path), f"hosts.{config.name}.address",
                f"hosts {seen[where]!r} and {config.name!r} are both {config.address} port "
                f"{config.port}{through}, one machine listed twice. Keep one entry and give it "
                "the groups and roles of both; if they really are two machines behind one "
                "address, give each its own port.")
        seen[where] = config.name


def _comparable_address(address: str) -> str:
    """One spelling per address: DNS names ignore case, IPv6 has many spellings."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.lower().rstrip(".")


def _resolve_secrets(path: Path, key: str, values: dict[str, Any],
                     resolver: SecretResolver) -> dict[str, Any]:
    return {var: _resolve_value(path, f"{key}.{var}", value, resolver)
            for var, value in values.items()}


def _resolve_value(path: Path, key: str, value: Any, resolver: SecretResolver) -> Any:
    """Secret references anywhere in a value (lists and mappings too) become Secrets."""
    if isinstance(value, dict) and set(value) == {"secret"}:
        try:
            return resolver(str(value["secret"]), path.parent)
        except SecretNotAvailable as error:
            raise SecretUnreadable(str(path), key, f"{error}.") from None
        except ValueError as error:
            raise InventoryError(str(path), key, f"{error}.") from None
    if isinstance(value, dict):
        return {item: _resolve_value(path, f"{key}.{item}", inner, resolver)
                for item, inner in value.items()}
    if isinstance(value, list):
        return [_resolve_value(path, f"{key}[{i}]", inner, resolver)
                for i, inner in enumerate(value)]
    return value


def _declared_secrets(path: Path, key: str, layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's ``host_secrets``, checked; the layers' declarations add up name by name, so a
    group can declare the database password and the host its own keys."""
    raw = layer.get(DECLARATIONS)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InventoryError(str(path), f"{key}.{DECLARATIONS}", "give a mapping of secret "
                             "name -> {kind: hex|base64|password, bits: N | length: N}.")
    for secret_name, spec in raw.items():
        try:
            parse_declaration(secret_name, spec)
        except ValueError as error:
            raise InventoryError(str(path), f"{key}.{DECLARATIONS}", f"{error}.") from None
    return dict(raw)


def _check_host_secrets_declared(path: Path, name: str, entry: dict[str, Any],
                                 document: dict[str, Any], cli_vars: dict[str, Any],
                                 declared: dict[str, Any]) -> None:
    """A ``{secret: host:NAME}`` whose NAME the host does not declare would have nothing to
    read on the host: refused here, naming where it is used."""
    for key, layer in _variable_layers(name, entry, document, cli_vars):
        for var, value in layer.items():
            for secret_name in _host_references(value):
                if secret_name not in declared:
                    raise InventoryError(
                        str(path), f"{key}.{var}",
                        f"host secret {secret_name!r} is used but host {name!r} does not "
                        f"declare it; add it under {DECLARATIONS} (e.g. {DECLARATIONS}: "
                        f"{{{secret_name}: {{kind: password, length: 32}}}}) in defaults.vars, "
                        "one of the host's groups or the host.")


def _host_references(value: Any) -> list[str]:
    if isinstance(value, dict) and set(value) == {"secret"}:
        kind, _, target = str(value["secret"]).partition(":")
        return [target] if kind == "host" else []
    if isinstance(value, dict):
        return [found for inner in value.values() for found in _host_references(inner)]
    if isinstance(value, list):
        return [found for inner in value for found in _host_references(inner)]
    return []


def _ssh_settings(path: Path, host: str, defaults: dict[str, Any],
                  own: dict[str, Any], resolver: SecretResolver) -> SshSettings:
    merged = {key: value for layer in (defaults, own) for key, value in layer.items()
              if value is not None}
    base = path.parent

    def local_path(value: str) -> Path:
        return (base / Path(value).expanduser()).resolve()

    password = merged.get("sudo_password")
    secret: Secret | None = None
    if password is not None:
        resolved = _resolve_secrets(path, f"hosts.{host}.ssh", {"sudo_password": password},
                                    resolver)
        if not isinstance(resolved["sudo_password"], Secret):
            raise InventoryError(str(path), f"hosts.{host}.ssh.sudo_password",
                                 SECRET_REFERENCE_REQUIRED + ".")
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
