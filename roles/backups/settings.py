"""The backups role's variables, judged before any contact: databases, retention, the off-host copy.

Every mistake is one RoleError naming the variable and the fix, raised from the role's
``validate`` hook, so a bad inventory costs exit 2 and no half-configured host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError
from provisioner.ops.backups import BACKUP_ROOT
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from roles.backups.age_keys import age_recipient_problem
from roles.backups.schedule import Schedule, parse_schedule

#: A database name the host program handles: it becomes a file name (``<name>.dump``) and a
#: word of a shell list, so no blank, slash, quote or leading dot; PostgreSQL's 63 bytes at most.
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$")
_ABSOLUTE_PATH = re.compile(r"^(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
#: The backup program's own scratch databases (the restore test's provisioner_restore_test and
#: a restore's temporary copy): dropped WITH (FORCE) by the program, so no managed database may
#: be called so (a breaker's provisioner_restore_test was dropped by backup.verify).
SCRATCH_PREFIX = "provisioner_restore_"
OFFHOST_KEYS = frozenset({"host", "user", "port", "private_key", "host_key", "age_recipient"})


@dataclass(frozen=True)
class Offhost:
    """Where the off-host copy goes and how the db host knows the backup host."""

    host: str
    user: str
    port: int
    private_key: str
    host_key: str
    age_recipient: str


@dataclass(frozen=True)
class Settings:
    databases: tuple[str, ...]
    schedule: Schedule
    verify_schedule: Schedule
    offhost: Offhost | None


def read_settings(variables: Mapping[str, Any]) -> Settings:
    """The role's variables as Settings; RoleError for the first one that is wrong."""
    for name, least in (("backups_keep_daily", 1), ("backups_keep_weekly", 0),
                        ("backups_keep_on_demand", 1), ("backups_verify_tables", 1),
                        ("backups_grace_hours", 0), ("backups_offhost_timeout", 10),
                        ("backups_run_timeout_hours", 1)):
        _whole_number(name, variables[name], least)
    check_directory(variables["backups_directory"])
    return Settings(
        databases=database_names(variables),
        schedule=parse_schedule("backups_schedule", variables["backups_schedule"]),
        verify_schedule=parse_schedule("backups_verify_schedule",
                                       variables["backups_verify_schedule"]),
        offhost=read_offhost(variables["backups_offhost"]))


def database_names(variables: Mapping[str, Any]) -> tuple[str, ...]:
    """backups_databases, or else the names of the postgres role's postgres_databases."""
    chosen: Sequence[Any] = variables["backups_databases"]
    origin = "backups_databases"
    if not chosen:
        chosen = [entry.get("name") if isinstance(entry, Mapping) else entry
                  for entry in variables.get("postgres_databases") or []]
        origin = "postgres_databases"
    if not chosen:
        raise RoleError("backups_databases is empty and no postgres_databases are managed on this "
                        "host: there is nothing to back up. List the databases in "
                        "backups_databases, or apply the postgres role with postgres_databases.")
    managed = [entry.get("name") if isinstance(entry, Mapping) else entry
               for entry in variables.get("postgres_databases") or []]
    for origin_name, names in ((origin, chosen), ("postgres_databases", managed)):
        for name in names:
            if isinstance(name, str) and name.startswith(SCRATCH_PREFIX):
                raise RoleError(f"{origin_name} holds the database {name!r}; names beginning "
                                f"{SCRATCH_PREFIX} are the backup program's scratch databases, "
                                "which its restore test and restores drop: rename it.")
    for name in chosen:
        if not isinstance(name, str) or not DATABASE_NAME.fullmatch(name):
            raise RoleError(f"{origin} holds the database name {name!r}, which the backup "
                            "program cannot store as a file: use letters, digits, '_', '.' and "
                            "'-' (not first), at most 63 characters.")
    return tuple(dict.fromkeys(chosen))


def read_offhost(value: Mapping[str, Any]) -> Offhost | None:
    """backups_offhost as an Offhost; an empty mapping switches the off-host copy off."""
    if not value:
        return None
    unknown = set(value) - OFFHOST_KEYS
    if unknown:
        raise RoleError(f"backups_offhost has unknown key(s) {', '.join(sorted(unknown))}; it "
                        f"takes {', '.join(sorted(OFFHOST_KEYS))}.")
    if isinstance(value.get("private_key"), HostSecret):
        raise RoleError("backups_offhost.private_key names a host secret, which is a random "
                        "value the host generates, never an SSH key pair; keep the key on the "
                        f"controller and reference it: {KEY_REFERENCE}.")
    offhost = Offhost(host=str(value.get("host", "")), user=str(value.get("user", "pgbackup")),
                      port=value.get("port", 22),
                      private_key=str(value.get("private_key", "")),
                      host_key=str(value.get("host_key", "")).strip(),
                      age_recipient=str(value.get("age_recipient", "")).strip())
    _check_offhost(offhost)
    return offhost


def _check_offhost(offhost: Offhost) -> None:
    checks = (
        ("host", _HOST_NAME.fullmatch(offhost.host), "the inventory name of the backup host"),
        ("user", _USER.fullmatch(offhost.user), "the backup host's account (backup_target_user)"),
        ("port", isinstance(offhost.port, int) and not isinstance(offhost.port, bool)
         and 1 <= offhost.port <= 65535, "the backup host's SSH port, 1 to 65535"),
        ("private_key", "PRIVATE KEY-----" in offhost.private_key,
         f"the private half of the key pair, as a secret: {KEY_REFERENCE}"),
        ("host_key", not offhost.host_key or _PUBLIC_KEY.fullmatch(offhost.host_key),
         "empty (accept the key on first contact) or the backup host's public host key, "
         "'ssh-ed25519 AAAA...' from its /etc/ssh/ssh_host_ed25519_key.pub"),
    )
    for key, good, what in checks:
        if not good:
            shown = "(not shown)" if key == "private_key" else repr(getattr(offhost, key))
            raise RoleError(f"backups_offhost.{key} is {shown}; it must be {what}.")
    problem = offhost.age_recipient and age_recipient_problem(offhost.age_recipient)
    if problem:
        raise RoleError(f"backups_offhost.age_recipient is {offhost.age_recipient!r}, which is "
                        f"no age recipient: {problem}. Copy the public key age-keygen printed "
                        "('age1...', 62 characters), or leave it empty for no encryption.")


#: How the private key is given: a controller-side secret, never its text in the inventory.
KEY_REFERENCE = "{secret: file:keys/db1_backup} (or {secret: env:NAME})"


def check_key_is_a_secret(inventory_vars: Mapping[str, Any]) -> None:
    """Refuse backups_offhost.private_key written into the inventory as text.

    Needs the inventory's own values (HostConfig.vars), where a reference is still a Secret: the
    ``validate`` hook sees the revealed text and cannot tell. A key in plain text would be in
    every copy of the inventory, and nothing would mask it in --diff or a report."""
    offhost = inventory_vars.get("backups_offhost")
    if not isinstance(offhost, Mapping) or not offhost:
        return
    key = offhost.get("private_key")
    if key is not None and not isinstance(key, Secret | HostSecret):
        raise RoleError("backups_offhost.private_key is written in the inventory as text (not "
                        "shown); a private key must be a secret reference, so it is never in "
                        f"the inventory's file and is masked in every diff and report: "
                        f"{KEY_REFERENCE}, the file holding the key ssh-keygen wrote.")


#: Where a dump directory may be: the role chowns it to postgres, so /etc, a home or the secret
#: store given here would be handed over (a breaker locked the admin out with /home/admin).
BACKUP_PARENTS = ("/var/backups/", "/srv/", "/mnt/", "/opt/", "/data/")


def check_directory(path: object) -> None:
    """An absolute path of plain names, and not the engine's own backup tree (whose files are
    earlier versions of the files runs change, 0700 root)."""
    text = str(path)
    if not _ABSOLUTE_PATH.fullmatch(text):
        raise RoleError(f"backups_directory is {path!r}; it must be an absolute path of letters, "
                        "digits, '_', '.' and '-', such as /var/backups/postgresql-dumps.")
    if not text.startswith(BACKUP_PARENTS) or text.rstrip("/") in {p.rstrip("/") for p in
                                                                   BACKUP_PARENTS}:
        raise RoleError(f"backups_directory is {text}; the role makes it postgres's (0750), so "
                        "it must be a directory of its own below "
                        f"{', '.join(BACKUP_PARENTS)} (such as /var/backups/postgresql-dumps), "
                        "never a system directory or a home.")
    if text == BACKUP_ROOT or text.startswith(BACKUP_ROOT + "/"):
        raise RoleError(f"backups_directory is {text}, inside {BACKUP_ROOT}, where provisioner "
                        "keeps the earlier versions of the files it changes; choose another "
                        "directory, such as /var/backups/postgresql-dumps.")


def _whole_number(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RoleError(f"{name} is {value!r}; it must be a whole number, at least {least}.")
