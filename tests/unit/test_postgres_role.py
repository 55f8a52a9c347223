"""The postgres role's decisions: settings, pg_hba, reload or restart, objects, bad input."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from provisioner.content.roles import PROJECT_ROOT
from provisioner.errors import RoleError
from provisioner.facts import Disk
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.scram import scram_verifier
from provisioner.secrets.values import Secret
from provisioner.step import ProbeUnreadable, Refused
from roles.postgres import validation
from roles.postgres.cluster import RELOAD, RESTART, plan_config, plan_in_effect
from roles.postgres.hba import listen_addresses, remote_hosts, render_hba
from roles.postgres.objects import missing_grants, plan_databases, plan_roles
from roles.postgres.settings import (
    desired_settings,
    disk_kind,
    parse_dropin,
    render_dropin,
    same_value,
)
from tests.unit.fakes import DEBIAN12_FACTS, host_config

DEFAULTS = yaml.safe_load((PROJECT_ROOT / "roles/postgres/defaults.yml").read_text())
FACTS_8GB = replace(DEBIAN12_FACTS, cpus=4, memory_bytes=8 << 30,
                    disks=(Disk("vda", 100 << 30, False),))
INVENTORY = InventoryView.of_hosts([host_config("db1", "10.0.2.10", groups=["db"]),
                                    host_config("api1", "10.0.1.10", groups=["api"])])


def variables(**overrides: Any) -> dict[str, Any]:
    return {**DEFAULTS, **overrides}


def test_stet_host_with_all_its_ram_gets_pgtunes_8gb_row() -> None:
    settings = desired_settings(variables(postgres_memory_share=1.0), FACTS_8GB, 15,
                                ["localhost"])

    assert (settings["shared_buffers"], settings["work_mem"], settings["max_connections"]) == (
        "2GB", "10280kB", "200")


def test_the_default_share_gives_postgresql_half_the_ram() -> None:
    assert desired_settings(variables(), FACTS_8GB, 15, ["localhost"])["shared_buffers"] == "1GB"


def test_pgbouncer_in_front_sizes_max_connections() -> None:
    settings = desired_settings(variables(postgres_pool_size=25, postgres_pools=2), FACTS_8GB,
                                15, ["localhost"])

    assert settings["max_connections"] == "60"


def test_pgbouncer_on_the_host_sizes_max_connections_from_its_pools_and_reserve() -> None:
    pgbouncer = yaml.safe_load((PROJECT_ROOT / "roles/pgbouncer/defaults.yml").read_text())
    two_users = [{"name": "app", "password": "x"}, {"name": "reporting", "password": "y"}]
    sized = {**pgbouncer, "postgres_roles": two_users,
             "postgres_databases": [{"name": "app"}, {"name": "reports"}]}

    settings = desired_settings(variables(**sized), FACTS_8GB, 15, ["localhost"])
    capped = desired_settings(variables(**{**sized, "pgbouncer_max_db_connections": 40,
                                           "postgres_pool_size": 100}),
                              FACTS_8GB, 15, ["localhost"])

    # 2 databases x 2 users x (25 + 5 reserve) + 10 reserved
    assert settings["max_connections"] == "130"
    # each database's pools capped at 40 by max_db_connections; postgres_pool_size is for a
    # PgBouncer elsewhere
    assert capped["max_connections"] == "90"


def test_an_inventory_setting_wins_over_the_computed_one() -> None:
    settings = desired_settings(variables(postgres_settings={"work_mem": "16MB", "jit": True}),
                                FACTS_8GB, 15, ["localhost"])

    assert (settings["work_mem"], settings["jit"]) == ("16MB", "on")


def test_the_stet_logging_set_is_on_by_default() -> None:
    settings = desired_settings(variables(), FACTS_8GB, 15, ["localhost"])

    assert {name: settings[name] for name in (
        "log_min_duration_statement", "log_checkpoints", "log_connections",
        "log_disconnections", "log_lock_waits", "log_statement", "log_line_prefix")} == {
        "log_min_duration_statement": "1000", "log_checkpoints": "on", "log_connections": "on",
        "log_disconnections": "on", "log_lock_waits": "on", "log_statement": "ddl",
        "log_line_prefix": "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h "}


@pytest.mark.parametrize(("rotational", "setting", "kind"), [
    ((False,), "auto", "ssd"), ((True,), "auto", "hdd"), ((True, False), "auto", "nvme"),
    ((), "auto", "nvme"), ((True,), "san", "san")])
def test_disk_kind_from_the_facts_or_the_variable(rotational: tuple[bool, ...], setting: str,
                                                  kind: str) -> None:
    facts = replace(FACTS_8GB, disks=tuple(Disk(f"d{i}", 1, flag)
                                           for i, flag in enumerate(rotational)))
    assert disk_kind(facts, setting, "nvme") == kind


def test_the_drop_in_reads_back_as_the_settings_it_holds() -> None:
    settings = {"log_line_prefix": "%t [%p]: it's ", "work_mem": "16MB"}

    assert parse_dropin(render_dropin(settings)) == settings


@pytest.mark.parametrize(("wanted", "setting", "unit", "vartype"), [
    ("2GB", "262144", "8kB", "integer"), ("10280kB", "10280", "kB", "integer"),
    ("1000", "1000", "ms", "integer"), ("1s", "1000", "ms", "integer"),
    ("on", "on", "", "bool"), ("true", "on", "", "bool"), ("0.9", "0.9", "", "real"),
    ("LZ4", "lz4", "", "enum"), ("4GB", "4096", "MB", "integer")])
def test_same_value_reads_a_value_as_postgresql_does(wanted: str, setting: str, unit: str,
                                                     vartype: str) -> None:
    assert same_value(wanted, setting, unit, vartype)


@pytest.mark.parametrize(("wanted", "setting", "unit", "vartype"), [
    ("2GB", "16384", "8kB", "integer"), ("off", "on", "", "bool"),
    ("banana", "4096", "kB", "integer"), ("%t ", "%m ", "", "string")])
def test_same_value_tells_different_values_apart(wanted: str, setting: str, unit: str,
                                                 vartype: str) -> None:
    assert not same_value(wanted, setting, unit, vartype)


def test_pg_hba_lets_in_only_the_remote_groups_hosts_with_scram() -> None:
    text = render_hba(remote_hosts(variables(postgres_remote_groups=["api"]), INVENTORY))
    hosts = [line.split() for line in text.splitlines() if line.startswith("host")]

    assert [(words[3], words[4]) for words in hosts] == [
        ("127.0.0.1/32", "scram-sha-256"), ("::1/128", "scram-sha-256"),
        ("10.0.1.10/32", "scram-sha-256")]
    assert text.splitlines()[1].split() == ["local", "all", "postgres", "peer"]


def test_listen_addresses_are_localhost_without_remote_groups() -> None:
    assert listen_addresses(variables(), "10.0.2.10") == ["localhost"]
    assert listen_addresses(variables(postgres_remote_groups=["api"]), "10.0.2.10") == [
        "localhost", "10.0.2.10"]


def test_pg_hba_lets_in_each_remote_network_with_scram_after_the_groups_hosts() -> None:
    remote = remote_hosts(variables(postgres_remote_groups=["api"]), INVENTORY)
    text = render_hba(remote, ["172.17.0.0/16", "fd00:172::/64"])
    hosts = [line.split() for line in text.splitlines() if line.startswith("host")]

    assert [(words[3], words[4]) for words in hosts[2:]] == [
        ("10.0.1.10/32", "scram-sha-256"), ("172.17.0.0/16", "scram-sha-256"),
        ("fd00:172::/64", "scram-sha-256")]
    assert hosts[3][:3] == ["host", "all", "all"]


def test_remote_networks_alone_make_postgresql_listen_on_the_listen_address() -> None:
    networks = variables(postgres_remote_networks=["172.17.0.0/16"],
                         postgres_listen_address="172.17.0.1")

    assert listen_addresses(networks, "10.0.2.10") == ["localhost", "172.17.0.1"]


def test_every_address_is_star_alone_since_localhost_first_would_take_the_ipv4_wildcard() -> None:
    for remote in ({"postgres_remote_networks": ["172.17.0.0/16"]},
                   {"postgres_remote_groups": ["api"]}):
        assert listen_addresses(variables(postgres_listen_address="*", **remote),
                                "10.0.2.10") == ["*"]


def config_output(dropin: str | None, restart_names: tuple[str, ...] = ("shared_buffers",)
                  ) -> str:
    """What config_probe printed for a host whose drop-in holds ``dropin``."""
    import base64

    root = "/etc/postgresql/15/main"
    contents = f"{root}/conf.d/50-provisioner.conf\0{base64.b64encode(dropin.encode()).decode()}" \
        "\0" if dropin is not None else ""
    stat = f"{root}/conf.d/50-provisioner.conf\0regular file|postgres|postgres|644\0" \
        if dropin is not None else ""
    return ("pg-version 15\n" + "".join(f"pg-restart {name}\n" for name in restart_names)
            + f"pg-config\n=\0{contents}=\0{stat}\0\0")


def test_a_changed_restart_setting_notifies_the_restart() -> None:
    old = render_dropin({"shared_buffers": "1GB", "work_mem": "4MB"})

    plan = plan_config(config_output(old), lambda version: {"shared_buffers": "2GB",
                                                            "work_mem": "4MB"}, "hba\n", False)

    assert plan.notify == (RESTART,)
    assert "restart for shared_buffers" in plan.reason


def test_any_other_change_notifies_the_reload_only() -> None:
    old = render_dropin({"shared_buffers": "1GB", "work_mem": "4MB"})

    plan = plan_config(config_output(old), lambda version: {"shared_buffers": "1GB",
                                                            "work_mem": "8MB"}, "hba\n", False)

    assert plan.notify == (RELOAD,)


def test_the_config_set_is_checked_by_the_hosts_own_server_binary() -> None:
    plan = plan_config(config_output(None), lambda version: {"work_mem": "8MB"}, "hba\n", False)

    assert plan.action is not None
    assert "/usr/lib/postgresql/15/bin/postgres -D /etc/postgresql/15/main -C" in plan.action


def test_no_postgresql_installed_reads_as_unreadable() -> None:
    with pytest.raises(ProbeUnreadable, match="not installed"):
        plan_config("", lambda version: {}, "", False)


def settings_row(name: str, setting: str, pending: str = "false",
                 source: str = "/etc/postgresql/15/main/conf.d/50-provisioner.conf"
                 ) -> tuple[str, ...]:
    return (name, setting, "kB", "integer", pending, source)


def test_settings_in_effect_when_pg_settings_shows_them() -> None:
    assert not plan_in_effect((settings_row("work_mem", "4096"),), {"work_mem": "4MB"}).changes


def test_a_setting_waiting_for_a_restart_notifies_it() -> None:
    plan = plan_in_effect((settings_row("shared_buffers", "1", "true"),),
                          {"shared_buffers": "2GB"})

    assert plan.notify == (RESTART,)


def test_a_setting_overridden_by_alter_system_is_refused_naming_the_file() -> None:
    auto = "/var/lib/postgresql/15/main/postgresql.auto.conf"
    with pytest.raises(Refused, match=r"postgresql\.auto\.conf"):
        plan_in_effect((settings_row("work_mem", "1024", source=auto),), {"work_mem": "4MB"})


ROLE = [{"name": "app", "password": HostSecret("app_password")}]


def test_a_missing_role_is_created_with_a_scram_verifier_never_the_password() -> None:
    plan = plan_roles((), ROLE, {"app": Secret("hunter2hunter2hunter2")})

    assert plan.action is not None
    assert "hunter2" not in plan.action
    assert "SCRAM-SHA-256$4096:" in plan.action
    assert "log_statement = " in plan.action
    assert Secret("hunter2hunter2hunter2") in plan.secrets


def test_a_role_whose_verifier_matches_its_password_is_left_alone() -> None:
    row = ("app", "true", scram_verifier("hunter2hunter2hunter2"))

    assert not plan_roles((row,), ROLE, {"app": Secret("hunter2hunter2hunter2")}).changes


def test_a_role_with_another_password_gets_a_new_verifier() -> None:
    row = ("app", "true", scram_verifier("old-password-old-password"))

    plan = plan_roles((row,), ROLE, {"app": Secret("hunter2hunter2hunter2")})

    assert plan.action is not None and "ALTER ROLE \"app\"" in plan.action


def test_a_missing_database_is_created_from_template0_with_its_owner() -> None:
    plan = plan_databases((), [{"name": "app", "owner": "app"}])

    assert plan.action is not None
    assert "CREATE DATABASE \"app\" OWNER \"app\" ENCODING" in plan.action


def test_a_database_with_another_encoding_is_refused() -> None:
    with pytest.raises(Refused, match="dump and restore"):
        plan_databases((("app", "app", "SQL_ASCII", "C"),), [{"name": "app", "owner": "app"}])


def test_only_the_grants_the_acls_lack_are_granted() -> None:
    rows = (("app", "app", "CONNECT"),)
    wanted = [{"role": "app", "database": "app", "privileges": ["connect", "temporary"]}]

    assert missing_grants(rows, wanted, "database") == [("app", "app", "TEMPORARY")]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"postgres_memory_share": 0}, r"postgres_memory_share is 0: it must be a number in \(0, 1\]"),
    ({"postgres_memory_share": 1.5}, "postgres_memory_share is 1.5"),
    ({"postgres_workload": "desktop"}, "postgres_workload is 'desktop'"),
    ({"postgres_databases": [{"name": "App-DB"}]}, r"postgres_databases\[0\].name is 'App-DB'"),
    ({"postgres_roles": [{"name": "1app"}]}, r"postgres_roles\[0\].name is '1app'"),
    ({"postgres_databases": [{"name": "app", "extensions": ["uuid ossp"]}]},
     "not an extension name"),
    ({"postgres_settings": {"work_mem": {"a": 1}}}, "postgres_settings.work_mem must be a single"),
    ({"postgres_settings": ["work_mem"]}, "postgres_settings must be a mapping"),
    ({"postgres_roles": [{"name": "app", "password": HostSecret("nope")}]},
     "host secret 'nope', which host_secrets does not declare"),
])
def test_bad_input_is_refused_before_contact(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RoleError, match=message):
        validation.validate(variables(**overrides))


def test_a_remote_group_without_its_ufw_rule_is_refused_with_the_rule_to_add() -> None:
    with pytest.raises(RoleError, match=r"add to ufw_rules: \{port: 5432, proto: tcp, "
                                        r"from_group: api\}"):
        validation.validate_inventory(variables(postgres_remote_groups=["api"], ufw_rules=[]),
                                      INVENTORY)


def test_a_remote_group_with_its_ufw_rule_is_accepted() -> None:
    accepted = variables(postgres_remote_groups=["api"],
                         ufw_rules=[{"port": 5432, "from_group": "api"}])
    validation.validate(accepted)
    validation.validate_inventory(accepted, INVENTORY)


def test_a_remote_group_the_inventory_lacks_is_refused_naming_it() -> None:
    with pytest.raises(RoleError, match="'apii', which is not a group of the inventory"):
        validation.validate_inventory(variables(postgres_remote_groups=["apii"]), INVENTORY)
