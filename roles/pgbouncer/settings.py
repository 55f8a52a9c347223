"""What pgbouncer.ini says, decided from the inventory: pure functions, checked before contact.

PgBouncer has no ``-t``: a file it cannot read surfaces only when it loads it (a reload keeps
the old configuration and logs why; a start fails). So every value is judged here, before any
host is contacted, with one sentence naming the variable: what remains for the host to refuse
is what cannot be known here (the reload handler shows PgBouncer's words for it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError
from provisioner.secrets.host_store import HostSecret

POOL_MODES = ("session", "transaction", "statement")
#: A name this role puts in the ini or the userlist unquoted: PostgreSQL's plain identifier,
#: which needs no quoting in pgbouncer.ini, the userlist or SQL, and which PostgreSQL does not cut
#: short (63 bytes).
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: Options a [databases] entry may carry. user, password and auth_user are left out on purpose.
DATABASE_OPTIONS = ("host", "port", "dbname", "pool_size", "min_pool_size", "reserve_pool",
                    "max_db_connections", "pool_mode")
_SIZE_OPTIONS = ("pool_size", "min_pool_size", "reserve_pool", "max_db_connections")
#: [pgbouncer] settings read only at start (SHOW CONFIG: changeable = no; 1.24 adds the last); a
#: reload ignores a change to them, silently, so changing one restarts the service.
RESTART_ONLY = frozenset({
    "disable_pqexec", "job_name", "listen_addr", "listen_backlog", "listen_port", "pidfile",
    "pkt_buf", "resolv_conf", "so_reuseport", "unix_socket_dir", "unix_socket_group",
    "unix_socket_mode", "user", "track_extra_parameters"})
#: [pgbouncer] settings the template writes; pgbouncer_extra_settings may not repeat them.
MANAGED_SETTINGS = frozenset({
    "logfile", "pidfile", "listen_addr", "listen_port", "unix_socket_dir", "auth_type",
    "auth_file", "admin_users", "stats_users", "pool_mode", "max_client_conn",
    "default_pool_size", "min_pool_size", "reserve_pool_size", "reserve_pool_timeout",
    "max_db_connections", "ignore_startup_parameters"})
_SETTING_NAME = re.compile(r"^[a-z_]+$")


@dataclass(frozen=True)
class Database:
    """One [databases] entry: the name clients ask for, and where PgBouncer takes them."""

    name: str
    options: Mapping[str, str | int]

    def line(self) -> str:
        return f"{self.name} = " + " ".join(f"{key}={value}" for key, value in
                                            self.options.items())


def check_variables(variables: Mapping[str, Any]) -> None:
    """RoleError naming the first variable PgBouncer could not use (or would misuse)."""
    if variables["pgbouncer_pool_mode"] not in POOL_MODES:
        raise RoleError(f"pgbouncer_pool_mode is {variables['pgbouncer_pool_mode']!r}; it must "
                        f"be one of {', '.join(POOL_MODES)} (transaction for a web app).")
    for name in ("max_client_conn", "default_pool_size"):
        _check_count(f"pgbouncer_{name}", variables[f"pgbouncer_{name}"], minimum=1)
    for name in ("min_pool_size", "reserve_pool_size", "max_db_connections"):
        _check_count(f"pgbouncer_{name}", variables[f"pgbouncer_{name}"], minimum=0)
    _check_seconds("pgbouncer_reserve_pool_timeout", variables["pgbouncer_reserve_pool_timeout"])
    _check_port("pgbouncer_listen_port", variables["pgbouncer_listen_port"])
    if variables["pgbouncer_listen_port"] < 1024:
        raise RoleError(f"pgbouncer_listen_port is {variables['pgbouncer_listen_port']}, a "
                        "privileged port (below 1024) that PgBouncer, running as postgres, "
                        "cannot bind; give it one from 1024 up (6432 is its usual one).")
    _check_port("pgbouncer_server_port", server_port(variables))
    for address in variables["pgbouncer_listen_addresses"]:
        _check_address("pgbouncer_listen_addresses", address)
    if variables["pgbouncer_private_address"]:
        _check_address("pgbouncer_private_address", variables["pgbouncer_private_address"])
    _check_groups(variables["pgbouncer_remote_groups"])
    for name in ("admin_users", "stats_users", "auth_users"):
        _check_names(f"pgbouncer_{name}", variables[f"pgbouncer_{name}"])
    _check_names("pgbouncer_ignore_startup_parameters",
                 variables["pgbouncer_ignore_startup_parameters"])
    databases(variables)
    check_auth_users(variables)
    check_stats_users(variables)
    extra_lines(variables)


def _check_count(variable: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a whole number above 0" if minimum else "a whole number, 0 or more"
        raise RoleError(f"{variable} is {value!r}; it must be {wanted}.")


def _check_seconds(variable: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RoleError(f"{variable} is {value!r}; it must be a number of seconds, 0 or more.")


def _check_port(variable: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise RoleError(f"{variable} is {value!r}; it must be a TCP port from 1 to 65535.")


def _check_address(variable: str, value: Any) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise RoleError(f"{variable} holds {value!r}, which is not an IP address; PgBouncer "
                        "listens on addresses, e.g. 127.0.0.1 or 10.0.0.5.") from None


def _check_groups(groups: Sequence[Any]) -> None:
    """Group names only: whether the inventory has them is known once a host's steps are built
    (host.inventory), since a role's validate sees variables only."""
    for group in groups:
        if not isinstance(group, str) or not group:
            raise RoleError(f"pgbouncer_remote_groups holds {group!r}; it must list the names "
                            "of inventory groups, e.g. [api].")


def _check_names(variable: str, names: Sequence[Any]) -> None:
    for name in names:
        if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
            raise RoleError(f"{variable} holds {name!r}, which is not a plain identifier (a "
                            "letter or _, then letters, digits or _, at most 63): PgBouncer "
                            "and PostgreSQL would read it differently; rename it.")


def databases(variables: Mapping[str, Any]) -> list[Database]:
    """The [databases] entries: the inventory's, else one per database the postgres role
    manages, each pointing at the local server under its own name and naming no user."""
    entries = variables["pgbouncer_databases"] or {
        name: {} for name in postgres_database_names(variables)}
    return [_database(name, options or {}, variables) for name, options in entries.items()]


def server_port(variables: Mapping[str, Any]) -> Any:
    """The server's port: the inventory's, else the postgres role's, else PostgreSQL's 5432."""
    return variables["pgbouncer_server_port"] or variables.get("postgres_port", 5432)


def postgres_database_names(variables: Mapping[str, Any]) -> list[str]:
    """The names in postgres_databases (mappings with a name, as the postgres role has them)."""
    names = []
    for entry in variables.get("postgres_databases") or []:
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if isinstance(name, str):
            names.append(name)
    return names


def _database(name: Any, options: Any, variables: Mapping[str, Any]) -> Database:
    where = f"pgbouncer_databases entry {name!r}"
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise RoleError(f"{where}: the database name is not a plain identifier (a letter or _, "
                        "then letters, digits or _, at most 63); rename it.")
    if name == "pgbouncer":
        raise RoleError(f"{where}: pgbouncer is the name of PgBouncer's own admin console "
                        "database, which PgBouncer refuses in [databases] (and would then keep "
                        "running its old file until a restart takes it down); give the "
                        "database another name.")
    if not isinstance(options, Mapping):
        raise RoleError(f"{where} must map to options (a mapping, {{}} for none), got "
                        f"{options!r}.")
    unknown = sorted(set(options) - set(DATABASE_OPTIONS))
    if unknown:
        raise RoleError(f"{where} has option(s) {', '.join(map(str, unknown))}, which this role "
                        f"does not write (it knows {', '.join(DATABASE_OPTIONS)}); a user or "
                        "password would stop SCRAM passing through to the server.")
    merged = {"host": variables["pgbouncer_server_host"], "port": server_port(variables),
              "dbname": name, **options}
    _check_names(f"{where} dbname", [merged["dbname"]])
    _check_address(f"{where} host", merged["host"])
    _check_port(f"{where} port", merged["port"])
    for option in _SIZE_OPTIONS:
        if option in merged:
            _check_count(f"{where} {option}", merged[option], minimum=0)
    if "pool_mode" in merged and merged["pool_mode"] not in POOL_MODES:
        raise RoleError(f"{where} pool_mode is {merged['pool_mode']!r}; it must be one of "
                        f"{', '.join(POOL_MODES)}.")
    ordered = {key: merged[key] for key in DATABASE_OPTIONS if key in merged}
    return Database(name, ordered)


def auth_users(variables: Mapping[str, Any]) -> list[str]:
    """Whose verifiers the userlist holds: the inventory's list, else the postgres role's login
    roles that have a password (a role without one has no verifier to copy)."""
    if variables["pgbouncer_auth_users"]:
        return list(dict.fromkeys(variables["pgbouncer_auth_users"]))
    found = []
    for entry in variables.get("postgres_roles") or []:
        if isinstance(entry, Mapping) and entry.get("login", True) and \
                entry.get("password") is not None and isinstance(entry.get("name"), str):
            found.append(entry["name"])
    return list(dict.fromkeys(found))


def check_auth_users(variables: Mapping[str, Any]) -> None:
    """pgbouncer_auth_users are login roles the postgres role declares (when it runs on this
    host), never postgres: the superuser logs in by peer only and has no verifier to copy, and
    an undeclared role has none either, so the userlist step could never converge."""
    users = variables["pgbouncer_auth_users"]
    if "postgres" in users:
        raise RoleError("pgbouncer_auth_users names postgres, the superuser, which logs in by "
                        "peer only and has no password for PgBouncer to pass on; name the "
                        "application's roles (postgres_roles) instead.")
    if "postgres_roles" not in variables:
        return
    declared = [str(role.get("name")) for role in variables["postgres_roles"]
                if isinstance(role, Mapping) and role.get("password") is not None]
    missing = [name for name in users if name not in declared]
    if missing:
        raise RoleError(f"pgbouncer_auth_users names {', '.join(missing)}, which postgres_roles "
                        f"does not declare with a password (roles with one: "
                        f"{', '.join(declared) or 'none'}); declare it there with a password, "
                        "or leave it out of pgbouncer_auth_users.")


def check_stats_users(variables: Mapping[str, Any]) -> None:
    """A stats user must be in the userlist: PgBouncer authenticates the console from it."""
    users = auth_users(variables)
    missing = [name for name in variables["pgbouncer_stats_users"] if name not in users]
    if missing:
        raise RoleError(f"pgbouncer_stats_users names {', '.join(missing)}, which the userlist "
                        f"would not hold (its users: {', '.join(users) or 'none'}): add them to "
                        "pgbouncer_auth_users, or they could never log in to the console.")


def listen_addresses(variables: Mapping[str, Any], host_address: str) -> list[str]:
    """Loopback (or the inventory's list), plus the private address once remote groups use it."""
    addresses = [str(address) for address in variables["pgbouncer_listen_addresses"]]
    if variables["pgbouncer_remote_groups"]:
        addresses.append(str(variables["pgbouncer_private_address"] or host_address))
    return list(dict.fromkeys(addresses))


def extra_lines(variables: Mapping[str, Any]) -> list[str]:
    """``name = value`` lines of pgbouncer_extra_settings, in the inventory's order."""
    lines = []
    for name, value in variables["pgbouncer_extra_settings"].items():
        if not isinstance(name, str) or not _SETTING_NAME.fullmatch(name):
            raise RoleError(f"pgbouncer_extra_settings has the key {name!r}, which is not a "
                            "PgBouncer setting name (lower-case letters and _).")
        if name in MANAGED_SETTINGS:
            raise RoleError(f"pgbouncer_extra_settings sets {name}, which this role writes "
                            "itself: use its pgbouncer_ variable (see roles/pgbouncer/"
                            "defaults.yml) instead.")
        if isinstance(value, HostSecret):
            raise RoleError(secret_setting_refusal(name))
        if isinstance(value, bool) or not isinstance(value, str | int | float) or \
                "\n" in str(value):
            raise RoleError(f"pgbouncer_extra_settings {name} is {value!r}; a setting's value "
                            "must be one line of text or a number.")
        lines.append(f"{name} = {value}")
    return lines


def secret_setting_refusal(name: str) -> str:
    """Why pgbouncer_extra_settings cannot hold a secret reference (host:, env:, file:)."""
    return (f"pgbouncer_extra_settings.{name} is a secret reference, but pgbouncer.ini is no "
            "place for a secret (PgBouncer shows every setting to its stats users, SHOW "
            "CONFIG); leave it out: PgBouncer logs in to PostgreSQL with the verifiers of its "
            "userlist, which this role copies from the server.")


def ini_settings(text: str) -> dict[str, str]:
    """The [pgbouncer] section's ``key = value`` pairs (the last one wins, as in PgBouncer)."""
    settings: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
        elif section == "pgbouncer" and "=" in line:
            key, _, value = line.partition("=")
            settings[key.strip().lower()] = value.strip()
    return settings


def restart_settings_changed(current: str | None, desired: str) -> list[str]:
    """The start-only settings whose value differs between the live ini and the new one; a
    missing live file counts as every one of them changed (PgBouncer must start on it)."""
    wanted = ini_settings(desired)
    if current is None:
        return sorted(key for key in RESTART_ONLY if key in wanted)
    live = ini_settings(current)
    return sorted(key for key in RESTART_ONLY if live.get(key) != wanted.get(key))
