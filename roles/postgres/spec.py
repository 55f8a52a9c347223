"""postgres spec: the cluster runs with the drop-in's values in effect, and the objects."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from provisioner.facts import FACTS_SCRIPT, parse_facts
from roles.postgres.hba import listen_addresses
from roles.postgres.listening import listening, listens
from roles.postgres.settings import DROPIN_NAME, desired_settings, same_value

FIELD = "\x1f"


def psql(host: Any, sql: str, database: str = "postgres") -> list[list[str]]:
    """Rows of a query run as postgres over the Unix socket (the SQL on stdin)."""
    command = ("sudo -u postgres psql -X -q -A -t -F $'\\x1f' -d " + database)
    out = host.run(f"printf '%s' {_shell_quote(sql)} | bash -c {_shell_quote(command)}")
    assert out.rc == 0, out.stderr
    return [line.split(FIELD) for line in out.stdout.splitlines()]


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def version(host: Any) -> str:
    rows = psql(host, "SELECT current_setting('server_version_num')::int / 10000")
    return rows[0][0]


def test_the_distributions_server_is_installed(host: Any, version: str) -> None:
    assert host.package(f"postgresql-{version}").is_installed
    assert host.file(f"/usr/lib/postgresql/{version}/bin/postgres").exists


def test_the_cluster_unit_runs(host: Any, version: str) -> None:
    assert host.service(f"postgresql@{version}-main").is_running
    assert host.service("postgresql").is_enabled


def test_the_drop_in_is_postgres_owned_and_world_readable(host: Any, version: str) -> None:
    dropin = host.file(f"/etc/postgresql/{version}/main/conf.d/{DROPIN_NAME}")
    assert (dropin.user, dropin.group, dropin.mode) == ("postgres", "postgres", 0o644)


def test_pg_hba_is_postgres_owned_and_not_world_readable(host: Any, version: str) -> None:
    hba = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf")
    assert (hba.user, hba.group, hba.mode) == ("postgres", "postgres", 0o640)


def test_pg_settings_equal_the_computed_settings(host: Any, role_vars: dict[str, Any],
                                                 version: str) -> None:
    facts = parse_facts(host.check_output(f"sh -c {_shell_quote(FACTS_SCRIPT)}"))
    address = role_vars["_host_address"]  # the inventory's address, as the role used it
    wanted = desired_settings(role_vars, facts, int(version),
                              listen_addresses(role_vars, address))
    rows = {row[0]: row for row in psql(
        host, "SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings")}
    differ = {name: (value, rows[name][1]) for name, value in wanted.items()
              if not same_value(value, rows[name][1], rows[name][2], rows[name][3])}
    assert not differ


def test_no_setting_waits_for_a_restart(host: Any) -> None:
    assert psql(host, "SELECT name FROM pg_settings WHERE pending_restart") == []


def test_the_config_files_have_no_errors(host: Any) -> None:
    assert psql(host, "SELECT name FROM pg_file_settings WHERE error IS NOT NULL") == []
    assert psql(host, "SELECT line_number FROM pg_hba_file_rules WHERE error IS NOT NULL") == []


def test_remote_access_only_from_the_named_groups_with_scram(host: Any) -> None:
    rules = psql(host, "SELECT type, coalesce(address, ''), auth_method FROM pg_hba_file_rules")
    assert all(method == "peer" for kind, _, method in rules if kind == "local")
    assert all(method == "scram-sha-256" for kind, _, method in rules if kind == "host")


def test_the_roles_exist_with_scram_passwords(host: Any, role_vars: dict[str, Any]) -> None:
    rows = {row[0]: row for row in psql(
        host, "SELECT rolname, rolcanlogin::text, coalesce(rolpassword, '') FROM pg_authid")}
    for role in role_vars["postgres_roles"]:
        assert role["name"] in rows
        if role.get("password") is not None:
            assert rows[role["name"]][2].startswith("SCRAM-SHA-256$")


def test_the_databases_exist_with_their_owners(host: Any, role_vars: dict[str, Any]) -> None:
    rows = dict(psql(host, "SELECT datname, pg_get_userbyid(datdba) FROM pg_database"))
    for database in role_vars["postgres_databases"]:
        assert rows.get(database["name"]) == (database.get("owner") or "postgres")


def test_the_extensions_exist(host: Any, role_vars: dict[str, Any]) -> None:
    for database in role_vars["postgres_databases"]:
        present = {row[0] for row in psql(host, "SELECT extname FROM pg_extension",
                                          database["name"])}
        assert set(database.get("extensions", [])) <= present


def test_each_remote_network_has_its_scram_line(host: Any, role_vars: dict[str, Any]) -> None:
    rows = psql(host, "SELECT type, address, netmask, auth_method FROM pg_hba_file_rules "
                      "WHERE netmask IS NOT NULL")
    present = {(kind, network_of(address, netmask), method)
               for kind, address, netmask, method in rows}
    for network in role_vars["postgres_remote_networks"]:
        assert ("host", str(ipaddress.ip_network(str(network))), "scram-sha-256") in present


def network_of(address: str, netmask: str) -> str:
    """A pg_hba_file_rules row's address and netmask as one CIDR network (172.17.0.0/16)."""
    prefix = bin(int(ipaddress.ip_address(netmask))).count("1")
    return str(ipaddress.ip_network(f"{address}/{prefix}"))


def test_it_listens_where_the_inventory_says(host: Any, role_vars: dict[str, Any]) -> None:
    port = role_vars["postgres_port"]
    sockets = listening(host)  # /proc/net/tcp: the minimal image has no ss nor netstat
    assert listens(sockets, "127.0.0.1", port)
    wanted = listen_addresses(role_vars, role_vars["_host_address"])
    if wanted == ["localhost"]:
        assert {address for address, bound in sockets if bound == port} <= {"127.0.0.1", "::1"}
    elif wanted == ["*"]:
        assert ("0.0.0.0", port) in sockets  # the IPv4 wildcard itself, not just localhost
    elif is_address(wanted[-1]):  # an inventory address may be a name the spec cannot bind-check
        assert listens(sockets, wanted[-1], port)


def is_address(text: str) -> bool:
    """Whether a listen address is an IP the socket table can show (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_the_maintenance_job_is_there_and_cron_runs_it(host: Any,
                                                      role_vars: dict[str, Any]) -> None:
    job = host.file("/etc/cron.d/postgres-maintenance")
    if not role_vars["postgres_maintenance"] or not role_vars["postgres_databases"]:
        assert not job.exists
        return
    assert job.exists and job.user == "root" and not job.mode & 0o022
    for database in role_vars["postgres_databases"]:
        assert f"--dbname {database['name']}" in job.content_string
    assert host.service("cron").is_running and host.service("cron").is_enabled
