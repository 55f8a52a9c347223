"""pgbouncer spec: PgBouncer runs on the inventory's addresses and values, SCRAM only, with a
userlist only root may change that holds the server's own verifiers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from roles.pgbouncer.settings import auth_users, databases, listen_addresses
from roles.postgres.listening import listening, listens

USERLIST = "/etc/pgbouncer/userlist.txt"


def console(host: Any, port: int, command: str) -> dict[str, str]:
    """A SHOW command on the admin console, first column -> second (as the OS user postgres,
    who needs no password there as user pgbouncer over the Unix socket)."""
    output = host.check_output(
        f"cd / && runuser -u postgres -- psql -X -A -t -F '|' -h /var/run/postgresql -p {port} "
        f"-U pgbouncer -d pgbouncer -c '{command}'")
    rows = (line.split("|") for line in output.splitlines() if "|" in line)
    return {row[0]: row[1] for row in rows}


def test_pgbouncer_is_running_and_enabled(host: Any) -> None:
    service = host.service("pgbouncer")
    assert service.is_running and service.is_enabled


def test_pgbouncer_listens_on_every_configured_address(host: Any,
                                                       role_vars: dict[str, Any]) -> None:
    port = role_vars["pgbouncer_listen_port"]
    sockets = listening(host)  # /proc/net/tcp: the minimal image has no ss nor netstat
    for address in listen_addresses(role_vars, role_vars["_host_address"]):
        assert listens(sockets, address, port), address


def test_nothing_else_listens_on_the_pgbouncer_port(host: Any, role_vars: dict[str, Any]) -> None:
    port = role_vars["pgbouncer_listen_port"]
    wanted = set(listen_addresses(role_vars, role_vars["_host_address"]))
    assert {address for address, bound in listening(host) if bound == port} == wanted


def test_clients_must_authenticate_with_scram(host: Any, role_vars: dict[str, Any]) -> None:
    config = console(host, role_vars["pgbouncer_listen_port"], "SHOW CONFIG")
    assert config["auth_type"] == "scram-sha-256"
    assert config["auth_file"] == USERLIST


@pytest.mark.parametrize("setting", ["pool_mode", "max_client_conn", "default_pool_size",
                                     "min_pool_size", "reserve_pool_size",
                                     "max_db_connections"])
def test_pgbouncer_runs_the_inventory_value(host: Any, role_vars: dict[str, Any],
                                            setting: str) -> None:
    config = console(host, role_vars["pgbouncer_listen_port"], "SHOW CONFIG")
    assert config[setting] == str(role_vars[f"pgbouncer_{setting}"])


def test_admin_and_stats_users_are_the_inventorys(host: Any, role_vars: dict[str, Any]) -> None:
    config = console(host, role_vars["pgbouncer_listen_port"], "SHOW CONFIG")
    assert config["admin_users"] == ",".join(role_vars["pgbouncer_admin_users"])
    assert config["stats_users"] == ",".join(role_vars["pgbouncer_stats_users"])


def test_every_inventory_database_is_served(host: Any, role_vars: dict[str, Any]) -> None:
    served = console(host, role_vars["pgbouncer_listen_port"], "SHOW DATABASES")
    assert {entry.name for entry in databases(role_vars)} <= set(served)


def test_userlist_is_readable_by_pgbouncer_and_changeable_only_by_root(host: Any) -> None:
    userlist = host.file(USERLIST)
    assert (userlist.user, userlist.group, userlist.mode) == ("root", "postgres", 0o640)


def test_userlist_holds_the_servers_own_verifiers(host: Any, role_vars: dict[str, Any]) -> None:
    users = auth_users(role_vars)
    names = ", ".join(f"'{user}'" for user in users) or "NULL"
    rows = host.check_output(
        "cd / && runuser -u postgres -- psql -X -A -t -F ' ' -c \"SELECT rolname, rolpassword "
        f"FROM pg_authid WHERE rolname IN ({names})\"")
    verifiers = dict(line.split(" ", 1) for line in rows.splitlines() if " " in line)
    expected = "".join(f'"{user}" "{verifiers.get(user, "")}"\n' for user in users)
    content = host.file(USERLIST).content_string
    # Digests only: a failed assertion must not print a verifier.
    assert hashlib.sha256(content.encode()).hexdigest() == \
        hashlib.sha256(expected.encode()).hexdigest(), f"userlist differs for {users}"
