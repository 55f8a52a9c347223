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
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import DECLARATIONS, HostSecret
from provisioner.secrets.values import Secret
from roles.postgres.access_checks import (
    check_firewall,
    check_listen_address,
    check_remote_groups,
    check_remote_networks,
)
from roles.postgres.settings import DISK_CHOICES
from roles.postgres.tuning import DISKS, WORKLOADS

NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EXTENSION = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,62}$")
SETTING = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DATABASE_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY", "TEMP", "ALL")
SCHEMA_PRIVILEGES = ("USAGE", "CREATE", "ALL")
#: Role names PostgreSQL reserves or that name its superuser, whose password we never touch.
RESERVED_ROLES = ("public", "none", "postgres", "current_user", "current_role", "session_user")
#: Databases of every cluster: never created, owned or dropped by this role.
SYSTEM_DATABASES = ("postgres", "template0", "template1")
_NAME_RULE = "a lower-case SQL identifier (letters a-z, digits, '_', not starting with a digit, " \
    "at most 63)"


def check_name(variable: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
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
    if port < 1024:
        raise RoleError(f"postgres_port is {port}, a privileged port (below 1024) that "
                        "PostgreSQL, running as postgres, cannot bind; give it one from 1024 "
                        "up (5432 is its usual one).")


def check_settings(variable: str, settings: Any) -> None:
    if not isinstance(settings, Mapping):
        raise RoleError(f"{variable} must be a mapping of setting name -> value, e.g. "
                        "{work_mem: 16MB}.")
    for name, value in settings.items():
        if not isinstance(name, str) or not SETTING.fullmatch(name):
            raise RoleError(f"{variable} has the key {name!r}, which is not a PostgreSQL "
                            "setting name (lower-case letters, digits and '_').")
        if isinstance(value, HostSecret):
            raise RoleError(secret_setting_refusal(variable, str(name)))
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
        if name in RESERVED_ROLES or name.startswith("pg_"):
            raise RoleError(f"postgres_roles[{index}].name is {name!r}, a name PostgreSQL "
                            "reserves (public, none, the pg_ prefix, current_user and its kin) "
                            "or its own superuser (postgres, whose password this role never "
                            "changes: it logs in by peer only); choose another name.")
        password = role.get("password")
        if isinstance(password, HostSecret) and password.name not in declared:
            raise RoleError(f"postgres_roles[{index}] ({name}) takes its password from the host "
                            f"secret {password.name!r}, which host_secrets does not declare; "
                            f"add it there, e.g. host_secrets: {{{password.name}: "
                            "{kind: password, length: 32}}.")
        if "login" in role and not isinstance(role["login"], bool):
            raise RoleError(f"postgres_roles[{index}].login must be true or false.")


def check_databases(variables: Mapping[str, Any]) -> None:
    roles = declared_roles(variables)
    for index, database in enumerate(_entries(variables, "postgres_databases", {
            "name", "owner", "encoding", "locale", "extensions"})):
        where = f"postgres_databases[{index}]"
        name = check_name(f"{where}.name", database.get("name"))
        if name in SYSTEM_DATABASES:
            raise RoleError(f"{where}.name is {name!r}, one of PostgreSQL's own databases "
                            f"({', '.join(SYSTEM_DATABASES)}), which this role never manages; "
                            "give your database its own name.")
        owner = database.get("owner")
        if owner is not None:
            check_name(f"{where}.owner", owner)
            if owner not in roles and owner != "postgres":
                raise RoleError(f"{where} ({name}) has the owner {owner!r}, which is not a "
                                f"role of postgres_roles ({_listed(roles)}) nor postgres; "
                                "declare it there or name one of those.")
        extensions = database.get("extensions", [])
        if not isinstance(extensions, list):
            raise RoleError(f"{where}.extensions must be a list, e.g. [uuid-ossp, pgcrypto].")
        for extension in extensions:
            if not isinstance(extension, str) or not EXTENSION.fullmatch(extension):
                raise RoleError(f"{where}.extensions has {extension!r}, which is not an "
                                "extension name (lower-case letters, digits, '_' and '-').")
        _check_unique(f"{where}.extensions", extensions)
        for key in ("encoding", "locale"):
            if not re.fullmatch(r"^[A-Za-z0-9_.@-]*$", str(database.get(key) or "")):
                raise RoleError(f"{where}.{key} is {database[key]!r}: not an encoding or "
                                "locale name.")


def check_grants(variables: Mapping[str, Any]) -> None:
    roles, databases = declared_roles(variables), declared_databases(variables)
    for index, grant in enumerate(_entries(variables, "postgres_grants", {
            "role", "database", "schema", "privileges"})):
        where = f"postgres_grants[{index}]"
        role = check_name(f"{where}.role", grant.get("role"))
        database = check_name(f"{where}.database", grant.get("database"))
        if role not in roles:
            raise RoleError(f"{where}.role is {role!r}, which is not a role of postgres_roles "
                            f"({_listed(roles)}); declare it there or grant to one of those.")
        if database not in databases:
            raise RoleError(f"{where}.database is {database!r}, which is not a database of "
                            f"postgres_databases ({_listed(databases)}); declare it there or "
                            "name one of those.")
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


#: Cron's five time fields: name, lowest, highest value (day of week 7 is Sunday too).
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
               ("day of week", 0, 7))
_CRON_ITEM = re.compile(r"^(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def cron_field_problem(text: str, low: int, high: int) -> str | None:
    """Why one cron time field is not one cron runs as written (None: it is)."""
    for item in text.split(","):
        match = _CRON_ITEM.fullmatch(item)
        if match is None:
            return f"{item!r} is not *, a number, a range a-b, or one of them with /step"
        first, last, step = match.group(2), match.group(3), match.group(4)
        for number in (first, last):
            if number is not None and not low <= int(number) <= high:
                return f"{number} is outside {low}-{high}"
        if first is not None and last is not None and int(first) > int(last):
            return f"the range {first}-{last} runs backwards"
        if step is not None and int(step) == 0:
            return "a step of 0 never runs"
    return None


def check_schedule(variables: Mapping[str, Any]) -> None:
    schedule = variables["postgres_maintenance_schedule"]
    fields = str(schedule).split()
    problem = "it needs cron's five time fields" if len(fields) != 5 else None
    for field, (what, low, high) in zip(fields, CRON_FIELDS, strict=False):
        if problem is None and (found := cron_field_problem(field, low, high)):
            problem = f"its {what} field {field!r}: {found}"
    if problem:
        raise RoleError(f"postgres_maintenance_schedule is {schedule!r}: {problem}; give "
                        "minute hour day-of-month month day-of-week as numbers, e.g. "
                        "'0 2 * * *' (daily at 02:00).")


def declared_roles(variables: Mapping[str, Any]) -> list[str]:
    return [str(role.get("name")) for role in variables["postgres_roles"]
            if isinstance(role, Mapping)]


def declared_databases(variables: Mapping[str, Any]) -> list[str]:
    return [str(database.get("name")) for database in variables["postgres_databases"]
            if isinstance(database, Mapping)]


def _listed(names: list[str]) -> str:
    return ", ".join(names) or "none declared"


def _check_unique(variable: str, names: list[Any]) -> None:
    twice = sorted({str(name) for name in names if names.count(name) > 1})
    if twice:
        raise RoleError(f"{variable} names {', '.join(twice)} more than once; list each once.")


def check_unique_objects(variables: Mapping[str, Any]) -> None:
    _check_unique("postgres_roles", declared_roles(variables))
    _check_unique("postgres_databases", declared_databases(variables))


def validate(variables: Mapping[str, Any]) -> None:
    """Every check above, in the order a reader of defaults.yml meets the variables."""
    check_tuning(variables)
    check_settings("postgres_log_settings", variables["postgres_log_settings"])
    check_settings("postgres_settings", variables["postgres_settings"])
    check_remote_groups(variables)
    check_listen_address(variables)
    check_remote_networks(variables)
    check_roles(variables)
    check_unique_objects(variables)
    check_databases(variables)
    check_grants(variables)
    check_schedule(variables)


def check_passwords_are_references(inventory_vars: Mapping[str, Any]) -> None:
    """A role's password must be a secret reference (host:, env: or file:), never the password
    itself in the inventory: the inventory is a file in git, and its text is shown in diffs."""
    for index, role in enumerate(inventory_vars.get("postgres_roles") or []):
        if not isinstance(role, Mapping):
            continue
        password = role.get("password")
        if password is not None and not isinstance(password, Secret | HostSecret):
            raise RoleError(
                f"postgres_roles[{index}] ({role.get('name')}) has its password in plain text; "
                "a password must be a secret reference: declare a host secret, generated on "
                "the host and never leaving it (host_secrets: {NAME: {kind: password, length: "
                "32}}, then password: {secret: host:NAME}; README, Host secrets), or read it "
                "on the controller with {secret: env:VARIABLE} or {secret: file:PATH}.")


#: The shortest password a role may get from the controller (env:, file:): a host secret is
#: generated at its declared length, but an emptied variable or a truncated file would give the
#: role no password (or a guessable one) on every run.
MIN_PASSWORD_LENGTH = 20


def check_password_lengths(inventory_vars: Mapping[str, Any]) -> None:
    """A controller secret (env:, file:) used as a role's password has 20 characters or more;
    refused naming the reference, never the value (an empty one would leave the role with no
    password, and the run would never converge)."""
    for index, role in enumerate(inventory_vars.get("postgres_roles") or []):
        password = role.get("password") if isinstance(role, Mapping) else None
        if isinstance(password, Secret) and len(password.reveal()) < MIN_PASSWORD_LENGTH:
            size = len(password.reveal())
            what = "is empty" if size == 0 else f"has only {size} characters"
            raise RoleError(
                f"postgres_roles[{index}] ({role.get('name')}) takes its password from "
                f"{password.reference or 'a controller secret'}, which {what}; a role password "
                f"needs at least {MIN_PASSWORD_LENGTH} characters: set it to a long random value "
                "(e.g. openssl rand -base64 32), or use a host secret generated on the host "
                "(host_secrets: {NAME: {kind: password, length: 32}}, password: {secret: "
                "host:NAME}).")


def secret_setting_refusal(variable: str, name: str) -> str:
    """Why a server setting cannot hold a secret reference (host:, env:, file:)."""
    return (f"{variable}.{name} is a secret reference, but PostgreSQL's settings are no place "
            "for a secret: conf.d/50-provisioner.conf is readable by every user of the host "
            "and the server logs each changed value; leave the secret out of the setting (for "
            "primary_conninfo, put the password in the postgres user's ~/.pgpass on the host "
            "and keep only host, port and user here).")


def check_no_secret_settings(inventory_vars: Mapping[str, Any]) -> None:
    """No secret reference among the server's settings: the drop-in is world-readable (0644,
    and so is the copy the engine keeps of it), and the server logs every changed value
    ("parameter ... changed to ..."), so a secret there would be written and logged in clear."""
    for variable in ("postgres_settings", "postgres_log_settings"):
        settings = inventory_vars.get(variable)
        if not isinstance(settings, Mapping):
            continue
        for name, value in settings.items():
            if isinstance(value, Secret | HostSecret):
                raise RoleError(secret_setting_refusal(variable, str(name)))


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Not about the login: this is the one hook that sees the inventory's own values
    (``config.vars``), where a secret reference is still a Secret, not its text."""
    check_passwords_are_references(config.vars)
    if variables.get("postgres_port") == config.port:
        raise RoleError(f"postgres_port is {config.port}, the port this host's SSH server "
                        "listens on (the inventory logs in there): PostgreSQL could not bind "
                        "it; give it another (5432 is its usual one).")
    check_password_lengths(config.vars)
    check_no_secret_settings(config.vars)


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """The remote groups exist in the inventory (an unknown one would open PostgreSQL to no
    one, silently; a RoleError naming the groups there are, and only that), then each has its
    firewall rule."""
    for group in variables["postgres_remote_groups"]:
        if group not in inventory.groups:
            known = ", ".join(sorted(inventory.groups)) or "none"
            raise RoleError(f"postgres_remote_groups names {group!r}, which is not a group of "
                            f"the inventory (groups: {known}).")
    check_firewall(variables)
