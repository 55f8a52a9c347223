"""pgbouncer: Debian's PgBouncer in front of the local PostgreSQL, SCRAM end to end.

Implements controls.md §7: pgbouncer.ini on Debian's layout from the inventory (127.0.0.1:6432,
plus the private address for remote app groups; transaction pooling; pool sizes), and a
userlist holding the server's own SCRAM verifiers for ``auth_type = scram-sha-256``.

Why a userlist and not ``auth_query``: auth_query needs a login role for PgBouncer itself (its
password in the userlist anyway), and, to avoid giving it superuser, a SECURITY DEFINER function
over pg_authid installed into every database, since the query runs in the target database. A
userlist needs neither: the roles are the inventory's, so the list of users is known here, and
their verifiers are copied from pg_authid as they are (hashed again they would not let
PgBouncer log in to the server). The price is that PgBouncer learns of a new password only
from a run: the postgres role changes it on the server, and this role's userlist step, probed
again after that change, rewrites the file and reloads, in the same run.

A change reloads PgBouncer (SIGHUP: same PID, clients stay connected) except to a setting 1.18
reads only when it starts (settings.RESTART_ONLY: listen_addr, listen_port, unix_socket_dir,
...), which a reload would ignore without a word; only those restart it. PgBouncer has no config
test (no ``-t``): the values are checked before contact (settings.py), and the reload handler
reads PgBouncer's log after the SIGHUP and fails with its words when it refused the file (it
then keeps running the old one). pgbouncer.socket is left as Debian ships it, disabled:
socket activation would make systemd hold port 6432 on every address (its ListenStream=6432),
whatever listen_addr says, and the service does not need it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_file
from provisioner.ops.path_state import parse_path_state, probe_path
from provisioner.ops.systemd import ensure_service
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from provisioner.step import Handler, Plan, Probed, Refused, Step
from roles.pgbouncer.handlers import reload_handler, restart_handler, save_previous_command
from roles.pgbouncer.settings import (
    auth_users,
    check_variables,
    databases,
    extra_lines,
    listen_addresses,
    restart_settings_changed,
    secret_setting_refusal,
)
from roles.pgbouncer.userlist import ensure_userlist, ensure_userlist_attributes
from roles.postgres.listening import ADDRESSES_PROBE, foreign_addresses, host_addresses

INI = "/etc/pgbouncer/pgbouncer.ini"
UNIT = "pgbouncer.service"
RELOAD, RESTART = "pgbouncer:reload", "pgbouncer:restart"

HANDLERS: tuple[Handler, ...] = (restart_handler(RESTART, supersedes=(RELOAD,)),
                                 reload_handler(RELOAD))

TEMPLATE_ARGUMENTS = {"etc/pgbouncer/pgbouncer.ini.j2":
                      {"database_lines", "listen_addr", "extra_lines"}}


def steps(host: Host) -> Iterator[Step]:
    validate_inventory(host.vars, host.inventory)
    yield ensure_packages(host, host.vars["pgbouncer_packages"])
    yield listen_addresses_on_host(host)
    yield pgbouncer_ini(host)
    yield ensure_userlist_attributes(host)
    yield ensure_userlist(host, auth_users(host.vars), notify=[RELOAD])
    yield ensure_service(host, UNIT, label=f"service {UNIT} enabled and running")


def validate(variables: Mapping[str, Any]) -> None:
    """Refuse, before contact, what PgBouncer could not use, and a port the host's PostgreSQL
    already listens on (one of them would fail to bind it)."""
    check_variables(variables)
    port = variables["pgbouncer_listen_port"]
    if "postgres_port" in variables and port == variables["postgres_port"]:
        raise RoleError(f"pgbouncer_listen_port is {port}, the port this host's PostgreSQL "
                        "listens on (postgres_port): only one of them can bind it; give "
                        "PgBouncer another (6432 is its usual one).")


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Not about the login: the one hook that sees the inventory's own values (``config.vars``),
    where a secret reference is still one. pgbouncer.ini is no place for a secret: PgBouncer
    shows every setting to its stats users (SHOW CONFIG) and the engine keeps a copy of the
    file; the passwords PgBouncer needs are the verifiers of the userlist, copied from the
    server."""
    port = variables.get("pgbouncer_listen_port")
    if port == config.port:
        raise RoleError(f"pgbouncer_listen_port is {port}, the port this host's SSH server "
                        "listens on (the inventory logs in there): PgBouncer could not bind it; "
                        "give PgBouncer another (6432 is its usual one).")
    extra = config.vars.get("pgbouncer_extra_settings")
    for name, value in (extra.items() if isinstance(extra, Mapping) else ()):
        if isinstance(value, Secret | HostSecret):
            raise RoleError(secret_setting_refusal(name))


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """Refuse a remote group the inventory does not have (RoleError naming the groups it has,
    and only that: PgBouncer would listen for hosts that are not there), then a firewall that
    would keep an existing group out."""
    for group in variables["pgbouncer_remote_groups"]:
        inventory.hosts(group)
    if "ufw_rules" in variables:
        check_firewall_rules(variables)


def check_firewall_rules(variables: Mapping[str, Any]) -> None:
    """Each remote group needs a ufw rule opening PgBouncer's port to it (ufw drops the rest)."""
    port = variables["pgbouncer_listen_port"]
    for group in variables["pgbouncer_remote_groups"]:
        if not any(_opens(rule, port, group) for rule in variables["ufw_rules"]):
            raise RoleError(f"pgbouncer_remote_groups names {group!r} but ufw_rules has no rule "
                            f"opening PgBouncer's port to it, so the firewall would drop its "
                            f"hosts' connections: add {{port: {port}, proto: tcp, from_group: "
                            f"{group}}} to ufw_rules.")


def _opens(rule: Any, port: int, group: str) -> bool:
    return isinstance(rule, Mapping) and str(rule.get("port")) == str(port) and \
        rule.get("proto", "tcp") == "tcp" and rule.get("from_group") == group and \
        rule.get("action", "allow") in ("allow", "limit")


def listen_addresses_on_host(host: Host) -> Step:
    """Refused before the ini changes: a listen address that is none of the host's (PgBouncer
    would fail to bind it at its next start; a reload ignores listen_addr altogether)."""
    wanted = listen_addresses(host.vars, host.config.address)

    def decide(probed: Probed) -> Plan:
        addresses = host_addresses(probed.output)
        missing = foreign_addresses(wanted, addresses)
        if missing:
            raise Refused(f"PgBouncer would listen on {', '.join(missing)}, which is not an "
                          f"address of this host (it has {', '.join(sorted(addresses))}); "
                          "nothing was changed: set pgbouncer_private_address (or "
                          "pgbouncer_listen_addresses) to one of them")
        if not addresses:
            return Plan("this host's addresses could not be read (/proc/net/fib_trie)")
        return Plan(f"{', '.join(wanted)} {'is' if len(wanted) == 1 else 'are'} this host's")

    return Step("PgBouncer listen addresses are this host's", ADDRESSES_PROBE, decide)


def pgbouncer_ini(host: Host) -> Step:
    """pgbouncer.ini, root:postgres 0640 (PgBouncer reads it as postgres and cannot change it);
    a change restarts only for a start-only setting, else reloads."""
    content = rendered_ini(host)
    step = ensure_file(host, INI, content, owner="root", group="postgres", mode=0o640,
                       notify=[RESTART, RELOAD], label=f"template {INI} [controls §7.2]")

    def decide(probed: Probed) -> Plan:
        plan = step.decide(probed)
        current = parse_path_state(probed.output)
        live = current.content.decode(errors="replace") if current and current.content else None
        if plan.action is None or live == content:
            return replace(plan, notify=())
        plan = replace(plan, action=f"{save_previous_command()}\n{plan.action}")
        changed = restart_settings_changed(live, content)
        if not changed:
            return replace(plan, notify=(RELOAD,))
        return replace(plan, notify=(RESTART,),
                       reason=f"{plan.reason} (restart: {', '.join(changed)} changed)")

    # The live file's content decides restart or reload, so this probe reads it (not grouped).
    return replace(step, probe=probe_path(INI, with_content=True), decide=decide, grouped=None)


def rendered_ini(host: Host) -> str:
    """pgbouncer.ini as the inventory describes it for this host."""
    return host.render("etc/pgbouncer/pgbouncer.ini.j2",
                       database_lines=[entry.line() for entry in databases(host.vars)],
                       listen_addr=",".join(listen_addresses(host.vars, host.config.address)),
                       extra_lines=extra_lines(host.vars))
