"""backup_target: the backup host that database hosts copy their archives to (controls.md §10).

One account (``backup_target_user``) whose authorized_keys accepts each client's key only from
that client's inventory address (``from=``), with every forwarding, pty and rc file off
(``restrict``), and only to run ``provisioner-backup-target receive``: rrsync write-only in the
client's own directory with ``-no-del`` (every --delete and --remove option refused) and
``--ignore-existing`` put first in the server's options (no file already here is replaced). A
database host can only add archives: it can neither delete nor overwrite one, read them back,
reach another client's, nor get a shell, so a compromised database host cannot erase its
backups (a breaker's ``rsync --delete`` with the client key did). Retention is this host's
own: a timer runs ``provisioner-backup-target prune``, the backups role's rule with this host's
counts, applied to the times archives arrived (a ledger only the forced command writes, outside
the client's directory), never to the names the client chose: a breaker's uploads named 2099
made the prune delete every real copy. The forced command takes one archive directory per
upload, refuses a name that does not parse or is dated in the future, and refuses any write into
an archive that arrived complete; a half upload is no archive until it completes. The home and
its ``.ssh`` belong to root, so no client can change the keys. With age on
the database host's side, what lands here is ciphertext only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.commands import quote
from provisioner.content.templates import MANAGED_BANNER
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_directory, ensure_file, ensure_template
from provisioner.ops.systemd import daemon_reload, ensure_service
from provisioner.ops.users import ensure_user
from provisioner.step import Handler, Step
from roles.backup_target.clients import (
    ABSOLUTE_PATH,
    STATE,
    USER_NAME,
    authorized_line,
    client_address,
    read_clients,
)
from roles.backups.schedule import parse_schedule

PROGRAM = "/usr/local/sbin/provisioner-backup-target"
CONFIG = "/etc/provisioner-backup-target/config"
PRUNE_UNIT = "provisioner-backup-target-prune"
DAEMON_RELOAD = "backup_target:daemon-reload"
HANDLERS = (Handler(DAEMON_RELOAD, daemon_reload()),)
#: Names the role passes to its unit templates on each render.
TEMPLATE_ARGUMENTS = {
    f"etc/systemd/system/{PRUNE_UNIT}.timer.j2": {"on_calendar"},
}


def steps(host: Host) -> Iterator[Step]:
    user, home = host.vars["backup_target_user"], host.vars["backup_target_directory"]
    clients = read_clients(host.vars["backup_target_clients"])
    yield ensure_packages(host, host.vars["backup_target_packages"])
    yield ensure_user(host, user, shell="/bin/sh", home=home, groups=account_groups(host.vars))
    yield ensure_directory(host, home, mode=0o755)
    yield ensure_directory(host, f"{home}/.ssh", mode=0o755)
    lines = [authorized_line(client, client_address(host.inventory, client.host), host.vars)
             for client in clients]
    yield ensure_file(host, f"{home}/.ssh/authorized_keys", "".join(lines), mode=0o644,
                      label=f"file {home}/.ssh/authorized_keys [controls §10]")
    yield ensure_directory(host, STATE, mode=0o755)
    for client in clients:
        yield ensure_directory(host, f"{home}/{client.host}", owner=user, group=user,
                               mode=0o700)
        yield ensure_directory(host, f"{STATE}/{client.host}", owner=user, group=user,
                               mode=0o700)
    yield from pruning_steps(host, [client.host for client in clients])


def pruning_steps(host: Host, clients: list[str]) -> Iterator[Step]:
    """The program (forced command and pruning), its settings and the pruning timer."""
    yield ensure_template(host, PROGRAM, "usr/local/sbin/provisioner-backup-target.j2",
                          mode=0o755, label=f"program {PROGRAM} [controls §10]")
    yield ensure_file(host, CONFIG, render_config(host.vars, clients), mode=0o640)
    calendar = parse_schedule("backup_target_prune_schedule",
                              host.vars["backup_target_prune_schedule"]).on_calendar
    unit = f"etc/systemd/system/{PRUNE_UNIT}"
    yield ensure_template(host, f"/{unit}.service", f"{unit}.service.j2", notify=[DAEMON_RELOAD])
    yield ensure_template(host, f"/{unit}.timer", f"{unit}.timer.j2", notify=[DAEMON_RELOAD],
                          on_calendar=calendar)
    yield ensure_service(host, f"{PRUNE_UNIT}.timer",
                         label=f"timer {PRUNE_UNIT}.timer [controls §10]")


def render_config(variables: Mapping[str, Any], clients: list[str]) -> str:
    """The pruning's settings as shell assignments, every value quoted (the program sources
    them as root)."""
    values: dict[str, str | int] = {
        "ROOT": variables["backup_target_directory"], "CLIENTS": " ".join(clients),
        "KEEP_DAILY": variables["backup_target_keep_daily"],
        "KEEP_WEEKLY": variables["backup_target_keep_weekly"],
        "KEEP_ON_DEMAND": variables["backup_target_keep_on_demand"],
    }
    lines = [f"# {MANAGED_BANNER}", *(f"{name}={quote(value)}" for name, value in values.items())]
    return "\n".join(lines) + "\n"


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse a malformed client list, account or directory before any contact."""
    if not USER_NAME.fullmatch(str(variables["backup_target_user"])):
        raise RoleError(f"backup_target_user is {variables['backup_target_user']!r}; it must be "
                        "a user name (lower-case letters, digits, '_' and '-').")
    for name in ("backup_target_directory", "backup_target_rrsync"):
        if not ABSOLUTE_PATH.fullmatch(str(variables[name])):
            raise RoleError(f"{name} is {variables[name]!r}; it must be an absolute path of "
                            "letters, digits, '_', '.' and '-'.")
    for name, least in (("backup_target_keep_daily", 1), ("backup_target_keep_weekly", 0),
                        ("backup_target_keep_on_demand", 1)):
        value = variables[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise RoleError(f"{name} is {value!r}; it must be a whole number, at least {least}.")
    parse_schedule("backup_target_prune_schedule", variables["backup_target_prune_schedule"])
    read_clients(variables["backup_target_clients"])


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse a client the inventory does not have, before any contact."""
    for client in read_clients(variables["backup_target_clients"]):
        client_address(inventory, client.host)


def account_groups(variables: Mapping[str, Any]) -> list[str]:
    """The extra groups, and the hardening role's SSH group when that role is here too (its
    AllowGroups would refuse the account otherwise)."""
    groups = [str(group) for group in variables["backup_target_groups"]]
    ssh_group = variables.get("hardening_ssh_allow_group")
    if ssh_group and ssh_group not in groups:
        groups.append(str(ssh_group))
    return groups


