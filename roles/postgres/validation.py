"""The postgres role's variables checked before any host is contacted: one clear sentence each.

Names we create (databases, roles) must be plain lower-case SQL identifiers,
``^[a-z_][a-z0-9_]{0,62}$``: they then mean the same quoted or not, in psql, in a DSN, in
pg_hba and in cron, and PostgreSQL keeps all 63 bytes. Extension names are those contrib and
PGXN use: lower-case letters, digits, ``_`` and ``-`` (uuid-ossp).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import DECLARATIONS, HostSecret
from roles.postgres.settings import DISK_CHOICES
from roles.postgres.tuning import DISKS, WORKLOADS

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EXTENSION = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,62}$")
SETTING = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DATABASE_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY", "TEMP", "ALL")
SCHEMA_PRIVILEGES = ("USAGE", "CREATE", "ALL")
_NAME_RULE = "a lower-case SQL identifier (letters a-z, digits, '_', not starting with a digit, " \
    "at most 63)"


def check_name(variable: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise RoleError(f"{variable} is {value!r}, which is not {_NAME_RULE}; rename it.")
    return value


def check_tuning(variables: Mapping[str, Any]) -> None:
    share = variables["postgres_memory_share"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise RoleError(f"postgres_memory_share is {share!r}: it must be a number in (0, 1], "
                        "the share of the host's RAM PostgreSQL may use (0.5 leaves half to "
                        "the app and Docker; 1.0 on a dedicated database host).")
    if variables["postgres_workload"] not in WORKLOADS:
        raise RoleError(f"postgres_workload is {variables['postgres_workload']!r}: use one of "
                        f"{', '.join(WORKLOADS)} (PGTune's server workloads).")
    if variables["postgres_disk"] not in DISK_CHOICES:
        raise RoleError(f"postgres_disk is {variables['postgres_disk']!r}: use one of "
                        f"{', '.join(DISK_CHOICES)}.")
    if variables["postgres_disk_when_unknown"] not in DISKS:
        raise RoleError(f"postgres_disk_when_unknown is {variables['postgres_disk_when_unknown']!r}"
                        f": use one of {', '.join(DISKS)}.")
    for name in ("postgres_max_connections", "postgres_pool_size", "postgres_pools",
                 "postgres_reserved_connections"):
        value = variables[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RoleError(f"{name} is {value!r}: it must be a whole number, 0 or more.")
    port = variables["postgres_port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RoleError(f"postgres_port is {port!r}: it must be a port number (1-65535).")


def check_settings(variable: str, settings: Any) -> None:
    if not isinstance(settings, Mapping):
        raise RoleError(f"{variable} must be a mapping of setting name -> value, e.g. "
                        "{work_mem: 16MB}.")
    for name, value in settings.items():
        if not isinstance(name, str) or not SETTING.match(name):
            raise RoleError(f"{variable} has the key {name!r}, which is not a PostgreSQL "
                            "setting name (lower-case letters, digits and '_').")
        if isinstance(value, dict | list) or value is None:
            raise RoleError(f"{variable}.{name} must be a single value (a string, number or "
                            f"boolean), got {value!r}.")
        if "\n" in str(value) or "\0" in str(value):
            raise RoleError(f"{variable}.{name} cannot hold a line break.")


def check_roles(variables: Mapping[str, Any]) -> None:
    declared = variables.get(DECLARATIONS) or {}
    for index, role in enumerate(_entries(variables, "postgres_roles", {"name", "password",
                                                                       "login"})):
        name = check_name(f"postgres_roles[{index}].name", role.get("name"))
        password = role.get("password")
        if isinstance(password, HostSecret) and password.name not in declared:
            raise RoleError(f"postgres_roles[{index}] ({name}) takes its password from the host "
                            f"secret {password.name!r}, which host_secrets does not declare; "
                            f"add it there, e.g. host_secrets: {{{password.name}: "
                            "{kind: password, length: 32}}.")
        if "login" in role and not isinstance(role["login"], bool):
            raise RoleError(f"postgres_roles[{index}].login must be true or false.")


def check_databases(variables: Mapping[str, Any]) -> None:
    for index, database in enumerate(_entries(variables, "postgres_databases", {
            "name", "owner", "encoding", "locale", "extensions"})):
        where = f"postgres_databases[{index}]"
        check_name(f"{where}.name", database.get("name"))
        if database.get("owner") is not None:
            check_name(f"{where}.owner", database["owner"])
        extensions = database.get("extensions", [])
        if not isinstance(extensions, list):
            raise RoleError(f"{where}.extensions must be a list, e.g. [uuid-ossp, pgcrypto].")
        for extension in extensions:
            if not isinstance(extension, str) or not EXTENSION.match(extension):
                raise RoleError(f"{where}.extensions has {extension!r}, which is not an "
                                "extension name (lower-case letters, digits, '_' and '-').")
        for key in ("encoding", "locale"):
            if not re.match(r"^[A-Za-z0-9_.@-]*$", str(database.get(key) or "")):
                raise RoleError(f"{where}.{key} is {database[key]!r}: not an encoding or "
                                "locale name.")


def check_grants(variables: Mapping[str, Any]) -> None:
    for index, grant in enumerate(_entries(variables, "postgres_grants", {
            "role", "database", "schema", "privileges"})):
        where = f"postgres_grants[{index}]"
        check_name(f"{where}.role", grant.get("role"))
        check_name(f"{where}.database", grant.get("database"))
        allowed: tuple[str, ...] = DATABASE_PRIVILEGES
        if grant.get("schema") is not None:
            check_name(f"{where}.schema", grant["schema"])
            allowed = SCHEMA_PRIVILEGES
        privileges = grant.get("privileges")
        if not isinstance(privileges, list) or not privileges or any(
                str(privilege).upper() not in allowed for privilege in privileges):
            raise RoleError(f"{where}.privileges must be a list of {', '.join(allowed)}, got "
                            f"{privileges!r}.")


def _entries(variables: Mapping[str, Any], variable: str, keys: set[str]
             ) -> list[Mapping[str, Any]]:
    entries = variables[variable]
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise RoleError(f"{variable}[{index}] must be a mapping with "
                            f"{', '.join(sorted(keys))}.")
        unknown = sorted(set(entry) - keys)
        if unknown:
            raise RoleError(f"{variable}[{index}] has unknown key(s) {', '.join(unknown)}; it "
                            f"may have {', '.join(sorted(keys))}.")
    return list(entries)


def check_firewall(variables: Mapping[str, Any]) -> None:
    """With the ufw role on the host, each remote group needs its rule opening the port."""
    groups = variables["postgres_remote_groups"]
    if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
        raise RoleError("postgres_remote_groups must be a list of inventory group names.")
    if "ufw_rules" not in variables:
        return
    port = str(variables["postgres_port"])
    opened = {str(rule.get("from_group")) for rule in variables["ufw_rules"]
              if isinstance(rule, Mapping) and str(rule.get("port")) == port
              and rule.get("action", "allow") == "allow"}
    for group in groups:
        if group not in opened:
            raise RoleError(f"postgres_remote_groups names {group!r}, but ufw_rules has no rule "
                            f"opening port {port} to it, so the firewall would drop its "
                            f"connections; add to ufw_rules: {{port: {port}, proto: tcp, "
                            f"from_group: {group}}}.")


def check_schedule(variables: Mapping[str, Any]) -> None:
    fields = str(variables["postgres_maintenance_schedule"]).split()
    if len(fields) != 5 or not all(re.match(r"^[0-9*/,-]+$", field) for field in fields):
        raise RoleError(f"postgres_maintenance_schedule is "
                        f"{variables['postgres_maintenance_schedule']!r}: give cron's five time "
                        "fields, e.g. '0 2 * * *' (daily at 02:00).")


def validate(variables: Mapping[str, Any]) -> None:
    """Every check above, in the order a reader of defaults.yml meets the variables."""
    check_tuning(variables)
    check_settings("postgres_log_settings", variables["postgres_log_settings"])
    check_settings("postgres_settings", variables["postgres_settings"])
    check_firewall(variables)
    check_roles(variables)
    check_databases(variables)
    check_grants(variables)
    check_schedule(variables)


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """The remote groups exist in the inventory (an unknown one would open PostgreSQL to no
    one, silently); a RoleError naming the groups there are."""
    for group in variables["postgres_remote_groups"]:
        if group not in inventory.groups:
            known = ", ".join(sorted(inventory.groups)) or "none"
            raise RoleError(f"postgres_remote_groups names {group!r}, which is not a group of "
                            f"the inventory (groups: {known}).")
