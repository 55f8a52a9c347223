"""The drop-in's settings: PGTune's for this host, the logging set, the inventory's overrides.

Pure functions of the variables, the facts and the PostgreSQL major version read on the host:
the role writes what ``desired_settings`` gives, the spec and the integration test compare
pg_settings with it (``same_value``, which reads a value the way PostgreSQL does: a number
without a unit is in the parameter's own unit, ``1s`` equals ``1000`` milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.errors import RoleError
from provisioner.facts import Facts
from roles.pgbouncer.settings import auth_users, databases
from roles.postgres.tuning import DISKS, Machine, tune

DROPIN_NAME = "50-provisioner.conf"
_HEADER = ("# Managed by provisioner (role postgres): PGTune @7caef27c for this host, the\n"
           "# logging set and the inventory's postgres_settings. Edits here are overwritten.\n")
_LINE = re.compile(r"^([a-z_][a-z0-9_.]*) = '((?:[^']|'')*)'$")
#: Memory units in kB and time units in ms, as postgresql.conf reads them.
_MEMORY = {"B": 1 / 1024, "kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}
_TIME = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


def disk_kind(facts: Facts, setting: str, when_unknown: str) -> str:
    """``setting`` unless it is ``auto``; then ssd when every disk says it is not rotational,
    hdd when every one says it is, else (none, or a mix) ``when_unknown``."""
    if setting != "auto":
        return setting
    flags = {disk.rotational for disk in facts.disks}
    if flags == {False}:
        return "ssd"
    if flags == {True}:
        return "hdd"
    return when_unknown


def connections(variables: Mapping[str, Any]) -> int | None:
    """max_connections: the inventory's; else, with the pgbouncer role on this host, what its
    pools can open (pgbouncer_connections); else sized for a PgBouncer elsewhere
    (postgres_pool_size x postgres_pools); each plus postgres_reserved_connections; else None
    (PGTune's default for the workload)."""
    if variables["postgres_max_connections"]:
        return int(variables["postgres_max_connections"])
    pooled = pgbouncer_connections(variables)
    if pooled is not None:
        return pooled + int(variables["postgres_reserved_connections"])
    if variables["postgres_pool_size"]:
        return int(variables["postgres_pool_size"]) * int(variables["postgres_pools"]) + \
            int(variables["postgres_reserved_connections"])
    return None


def pgbouncer_connections(variables: Mapping[str, Any]) -> int | None:
    """Server connections the pgbouncer role of this host can open (None: it is not here): a
    pool per database and user that logs in through it (the userlist's users), each up to its
    pool size plus the reserve pool, capped per database by max_db_connections."""
    if "pgbouncer_default_pool_size" not in variables:
        return None
    users = max(len(auth_users(variables)), 1)
    total = 0
    for database in databases(variables):
        options = database.options
        size = int(options.get("pool_size", variables["pgbouncer_default_pool_size"]))
        reserve = int(options.get("reserve_pool", variables["pgbouncer_reserve_pool_size"]))
        opened = (size + reserve) * users
        limit = int(options.get("max_db_connections", variables["pgbouncer_max_db_connections"]))
        total += min(opened, limit) if limit else opened
    return total


def machine_of(variables: Mapping[str, Any], facts: Facts, version: int) -> Machine:
    """PGTune's inputs for this host: its RAM times the share, rounded down to whole MB."""
    share = float(variables["postgres_memory_share"])
    memory_mb = int(facts.memory_bytes * share) // (1024 * 1024)
    disk = disk_kind(facts, str(variables["postgres_disk"]),
                     str(variables["postgres_disk_when_unknown"]))
    return Machine(max(memory_mb, 1) * 1024, max(facts.cpus, 1), disk,
                   str(variables["postgres_workload"]), connections(variables), version)


def conf_value(value: object) -> str:
    """A YAML scalar as postgresql.conf text: booleans as on/off, the rest as written."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def desired_settings(variables: Mapping[str, Any], facts: Facts, version: int,
                     listen: Sequence[str]) -> dict[str, str]:
    """Every setting of the drop-in, in order: the connection basics, PGTune's, the logging
    set, then postgres_settings (each of which wins over what came before)."""
    settings = {"listen_addresses": ",".join(listen),
                "port": str(variables["postgres_port"]),
                "password_encryption": "scram-sha-256"}
    if variables["postgres_tuning"]:
        settings.update(tune(machine_of(variables, facts, version)))
    for source in (variables["postgres_log_settings"], variables["postgres_settings"]):
        settings.update({str(name): conf_value(value) for name, value in source.items()})
    return settings


def check_fits_memory(variables: Mapping[str, Any], memory_bytes: int) -> None:
    """RoleError, once the host's RAM is known and before anything changes, when the
    inventory's shared_buffers is more than all of it: PostgreSQL could not start with it
    (``postgres -C`` accepts it; only the start fails)."""
    value = variables["postgres_settings"].get("shared_buffers")
    if value is None or isinstance(value, bool) or memory_bytes <= 0:
        return
    pages = in_unit(str(value), "8kB")
    if pages is not None and pages * 8192 > memory_bytes:
        raise RoleError(f"postgres_settings.shared_buffers is {value}, more than this host's "
                        f"{memory_bytes / (1 << 30):.1f} GB of RAM, so PostgreSQL could not "
                        "start with it; nothing was changed: give a smaller value (PGTune's "
                        "own is a quarter of the RAM share: leave shared_buffers out of "
                        "postgres_settings to get it).")


def render_dropin(settings: Mapping[str, str]) -> str:
    """The drop-in's text: one ``name = 'value'`` per line (quoted: any value is then one
    token, ``%`` and ``#`` included)."""
    lines = [f"{name} = '{value.replace(chr(39), chr(39) * 2)}'"
             for name, value in settings.items()]
    return _HEADER + "\n".join(lines) + "\n"


def parse_dropin(text: str) -> dict[str, str]:
    """The settings of a drop-in render_dropin wrote (other lines are ignored)."""
    found = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match:
            found[match.group(1)] = match.group(2).replace("''", "'")
    return found


def changed_names(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Settings added, removed or given another value (a removed one falls back to its default,
    which is a change too)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def _base(unit: str) -> tuple[Mapping[str, float], float] | None:
    """The unit table and the size of pg_settings' ``unit`` (``8kB``, ``ms``...) in it."""
    match = re.fullmatch(r"^(\d*)([A-Za-z]+)$", unit or "")
    if match is None:
        return None
    for table in (_MEMORY, _TIME):
        if match.group(2) in table:
            return table, int(match.group(1) or 1) * table[match.group(2)]
    return None


def in_unit(wanted: str, unit: str) -> float | None:
    """``wanted`` (``2GB``, ``1s``, ``100``) as a number of pg_settings' ``unit``; a number
    without a unit is in that unit already, as postgresql.conf reads it."""
    match = _NUMBER.fullmatch(wanted)
    if match is None:
        return None
    number, suffix = float(match.group(1)), match.group(2)
    if not suffix:
        return number
    base = _base(unit)
    if base is None or suffix not in base[0]:
        return None
    return number * base[0][suffix] / base[1]


def same_value(wanted: str, setting: str, unit: str = "", vartype: str = "string") -> bool:
    """Whether pg_settings' ``setting`` (in ``unit``) is ``wanted`` as postgresql.conf says it."""
    if vartype == "bool":
        return _boolean(wanted) is not None and _boolean(wanted) == _boolean(setting)
    if vartype in ("integer", "real"):
        value = in_unit(wanted, unit)
        try:
            current = float(setting)
        except ValueError:
            return False
        if value is None:
            return False
        return round(value) == round(current) if vartype == "integer" else \
            abs(value - current) <= 1e-9 * max(1.0, abs(current))
    if vartype == "enum":
        return wanted.strip().lower() == setting.lower()
    return wanted == setting


def _boolean(text: str) -> bool | None:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


#: Which disk kinds the inventory may name, besides auto.
DISK_CHOICES = ("auto", *DISKS)
