"""backups: nightly dumps that prove they restore, kept by count and age, copied off the host.

Implements controls.md §10 with one host-side program, /usr/local/sbin/provisioner-backup (bash,
as the minimal image has no python): ``now`` dumps every managed database (pg_dump
--format=custom) and the globals (pg_dumpall --globals-only) as postgres into a hidden
directory, checks each archive with ``pg_restore --list`` and only then renames the directory to
its UTC start time, so a failed run leaves no half archive; ``flock -n`` keeps runs from
overlapping; ``verify`` restores the latest archive into a scratch database and compares the row
counts of its largest tables with those the dump's own snapshot had; ``restore`` refuses a live
database without ``--replace``. Every run leaves a status record the verify spec reads.

Design choices:

- **A systemd timer, not cron.d.** ``Persistent=true`` runs a backup missed while the host was
  down at the next boot, where a cron.d job is simply skipped (no anacron for cron.d, §10); the
  sandbox and minimal images have no cron at all; the journal keeps each run's output; and no
  file name rule (cron.d ignores names with a dot) or permission rule can silently disable it.
- **Schedules are checked on the controller** (schedule.py), since the controller may not run
  systemd: a documented subset of OnCalendar, from which the spec also knows how old the latest
  backup may be.
- **Off-host copy** (``backups_offhost``): rsync over SSH with a key pair the user provides, the
  private half a controller-side secret written here 0600, the public half authorized on the
  backup host by the backup_target role, where rrsync pins it to one write-only directory and
  ``from=`` to this host's address. The backup host's host key is pinned from the inventory
  (``host_key``), or accepted on first contact and pinned from then on when none is given. With
  ``age_recipient`` every file is encrypted before it leaves, so the backup host never holds a
  readable dump. The copy only adds: the backup host's forced command refuses deletions and
  keeps every file it has, and prunes by its own timer, so a compromised database host cannot
  erase its backups. The private key must be a secret reference (``validate_login``), so the
  engine masks it in every diff.
- **Two kinds of archive.** The timer's are scheduled (``20261202T020000Z``); ``invoke
  backup.now`` starts ``provisioner-backup-ondemand.service`` (``run-now`` waits for it), whose
  archives are ``...Z-ondemand`` and kept by their own count, so one never costs a scheduled
  archive its day (retention.py), and whose run is systemd's: a dropped SSH session cannot end
  it half way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.commands import quote
from provisioner.content.templates import MANAGED_BANNER
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_absent, ensure_directory, ensure_file, ensure_template
from provisioner.ops.systemd import daemon_reload, ensure_service
from provisioner.step import Handler, Step
from roles.backups.settings import Offhost, Settings, check_key_is_a_secret, read_settings

PROGRAM = "/usr/local/sbin/provisioner-backup"
CONFIG_DIR = "/etc/provisioner-backup"
STATUS_DIR = "/var/lib/provisioner-backup"
OFFHOST_KEY = f"{CONFIG_DIR}/offhost_key"
PINNED_KNOWN_HOSTS = f"{CONFIG_DIR}/known_hosts"
#: Where ssh records the backup host's key on first contact when the inventory pins none.
LEARNED_KNOWN_HOSTS = f"{STATUS_DIR}/known_hosts"
#: (unit, command) of the scheduled dump and the restore test; each service runs the program
#: once, started by its timer.
UNITS = (("provisioner-backup", "now"), ("provisioner-backup-verify", "verify"))
#: The dump ``invoke backup.now`` starts (no timer): a systemd service, so the run belongs to
#: systemd and finishes however the SSH session that asked for it ends (a breaker's Ctrl-C left
#: an archive unpruned, uncopied and unrecorded when the program died of SIGPIPE).
ON_DEMAND_UNIT = ("provisioner-backup-ondemand", "now --on-demand")
#: Where the on-demand run's output goes (the unit truncates it at each start), for the task.
ON_DEMAND_LOG = f"{STATUS_DIR}/ondemand.log"
DAEMON_RELOAD = "backups:daemon-reload"

HANDLERS = (Handler(DAEMON_RELOAD, daemon_reload()),)


def steps(host: Host) -> Iterator[Step]:
    settings = read_settings(host.vars)
    packages = list(host.vars["backups_packages"])
    if settings.offhost is not None and settings.offhost.age_recipient:
        packages.append("age")
    yield ensure_packages(host, packages)
    yield ensure_directory(host, CONFIG_DIR, mode=0o750)
    yield ensure_directory(host, STATUS_DIR, mode=0o750)
    yield ensure_directory(host, host.vars["backups_directory"], owner="postgres",
                           group="postgres", mode=0o750,
                           label=f"directory {host.vars['backups_directory']} [controls §10]")
    yield from offhost_steps(host, settings.offhost)
    yield ensure_file(host, f"{CONFIG_DIR}/config", render_config(host, settings), mode=0o640)
    yield ensure_template(host, PROGRAM, "usr/local/sbin/provisioner-backup.j2", mode=0o750,
                          label=f"program {PROGRAM} [controls §10]")
    yield from timer_steps(host, settings)


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse a schedule that does not parse, a database name the program cannot store, a
    malformed off-host copy or retention, before any contact."""
    read_settings(variables)


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse a private key written into the inventory as text, before any contact.

    Not about the login: this is the one hook that sees the inventory's own values
    (``config.vars``), where a secret reference is still a Secret, and this host's name (a copy
    to itself is refused here too)."""
    check_key_is_a_secret(config.vars)
    offhost = variables.get("backups_offhost")
    if isinstance(offhost, Mapping) and offhost.get("host") == config.name:
        raise RoleError(f"backups_offhost.host is {config.name!r}, this host itself: the copy "
                        "must go to another host of the inventory (one with the backup_target "
                        "role), or a lost host takes its copies with it.")


def offhost_steps(host: Host, offhost: Offhost | None) -> Iterator[Step]:
    """The key (0600, never shown) and the pinned host key, or neither when there is no copy."""
    if offhost is None:
        yield ensure_absent(host, OFFHOST_KEY)
        yield ensure_absent(host, PINNED_KNOWN_HOSTS)
        return
    key = offhost.private_key.rstrip("\n") + "\n"
    yield ensure_file(host, OFFHOST_KEY, key, mode=0o600, label=f"file {OFFHOST_KEY}")
    if offhost.host_key:
        address = offhost_address(host.inventory, offhost)
        yield ensure_file(host, PINNED_KNOWN_HOSTS, known_hosts_line(address, offhost) + "\n")
    else:
        yield ensure_absent(host, PINNED_KNOWN_HOSTS)


def timer_steps(host: Host, settings: Settings) -> Iterator[Step]:
    schedules = {"now": settings.schedule.on_calendar,
                 "verify": settings.verify_schedule.on_calendar}
    hours = host.vars["backups_run_timeout_hours"]
    for unit, command in UNITS:
        yield ensure_template(host, f"/etc/systemd/system/{unit}.service",
                              "etc/systemd/system/provisioner-backup.service.j2",
                              notify=[DAEMON_RELOAD], command=command, timeout_hours=hours)
        yield ensure_template(host, f"/etc/systemd/system/{unit}.timer",
                              "etc/systemd/system/provisioner-backup.timer.j2",
                              notify=[DAEMON_RELOAD], command=command,
                              on_calendar=schedules[command])
    unit, command = ON_DEMAND_UNIT
    yield ensure_template(host, f"/etc/systemd/system/{unit}.service",
                          "etc/systemd/system/provisioner-backup.service.j2",
                          notify=[DAEMON_RELOAD], command=command, timeout_hours=hours)
    for unit, _ in UNITS:
        yield ensure_service(host, f"{unit}.timer", label=f"timer {unit}.timer [controls §10]")


#: Names the role passes to its unit templates on each render.
TEMPLATE_ARGUMENTS = {
    "etc/systemd/system/provisioner-backup.service.j2": {"command", "timeout_hours"},
    "etc/systemd/system/provisioner-backup.timer.j2": {"command", "on_calendar"},
}


def render_config(host: Host, settings: Settings) -> str:
    """The program's settings as shell assignments, every value quoted (the program sources
    it): one place the role's decisions reach the host."""
    offhost = settings.offhost
    values: dict[str, str | int] = {
        "BACKUP_ROOT": host.vars["backups_directory"],
        "DATABASES": " ".join(settings.databases),
        "KEEP_DAILY": host.vars["backups_keep_daily"],
        "KEEP_WEEKLY": host.vars["backups_keep_weekly"],
        "KEEP_ON_DEMAND": host.vars["backups_keep_on_demand"],
        "VERIFY_TABLES": host.vars["backups_verify_tables"],
        "OFFHOST_TIMEOUT": host.vars["backups_offhost_timeout"],
        "OFFHOST_TARGET": "", "OFFHOST_PORT": 22, "AGE_RECIPIENT": "",
        "OFFHOST_KNOWN_HOSTS": LEARNED_KNOWN_HOSTS, "OFFHOST_CHECKING": "accept-new",
        "PGBOUNCER_PORT": pgbouncer_port(host),
    }
    if offhost is not None:
        address = offhost_address(host.inventory, offhost)
        values.update(OFFHOST_TARGET=f"{offhost.user}@{_bracketed(address)}",
                      OFFHOST_PORT=offhost.port, AGE_RECIPIENT=offhost.age_recipient)
        if offhost.host_key:
            values.update(OFFHOST_KNOWN_HOSTS=PINNED_KNOWN_HOSTS, OFFHOST_CHECKING="yes")
    lines = [f"# {MANAGED_BANNER}", *(f"{name}={quote(value)}" for name, value in values.items())]
    return "\n".join(lines) + "\n"


def pgbouncer_port(host: Host) -> str:
    """PgBouncer's port when the pgbouncer role is on this host too, else empty: a restore
    with --replace then tells PgBouncer, so its clients wait for the new database instead of
    failing to log in and waiting out server_login_retry (15 s)."""
    if "pgbouncer" not in host.config.roles:
        return ""
    return str(host.vars.get("pgbouncer_listen_port", 6432))


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse, before any contact, a backup host the inventory does not have, one without the
    backup_target role, or one that does not list this host as a client: the first sign would
    otherwise be a failed copy at the next night's backup."""
    offhost = read_settings(variables).offhost
    if offhost is None:
        return
    offhost_address(inventory, offhost)
    peer = inventory.host(offhost.host)
    if peer is None:
        return
    if "backup_target" not in peer.roles:
        raise RoleError(f"backups_offhost.host is {offhost.host!r}, which does not have the "
                        "backup_target role (its roles: "
                        f"{', '.join(peer.roles) or 'none'}): give it that role, or name the "
                        "backup host that has it.")
    clients = peer.vars.get("backup_target_clients")
    names = [entry.get("host") for entry in clients if isinstance(entry, Mapping)] \
        if isinstance(clients, list) else []
    this = variables.get("host_name")
    if this is not None and this not in names:
        raise RoleError(f"backups_offhost.host is {offhost.host!r}, whose backup_target_clients "
                        f"({', '.join(map(str, names)) or 'none'}) do not list {this}: add "
                        f"{{host: {this}, public_key: ...}} there, or its key is refused.")


def offhost_address(inventory: InventoryView, offhost: Offhost) -> str:
    """The backup host's address, from the inventory."""
    peer = inventory.host(offhost.host)
    if peer is None:
        raise RoleError(f"backups_offhost.host is {offhost.host!r}, which is no host of the "
                        "inventory: name the backup host as the inventory does (and give it the "
                        "backup_target role).")
    return peer.address


def known_hosts_line(address: str, offhost: Offhost) -> str:
    """The pinned key as ssh looks it up: ``[address]:port`` unless the port is 22."""
    name = address if offhost.port == 22 else f"[{address}]:{offhost.port}"
    return f"{name} {offhost.host_key}"


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address
