"""The postgres role refuses what would fail on the server, before contact or before any change.

Breakers' findings of issue 16: plain-text passwords, reserved names, objects naming objects the
inventory lacks, a schedule cron cannot run, a listen address that is no address, an unknown
remote group advised about the firewall, a remote network that is no network or that nothing
listens for or the firewall drops, shared_buffers beyond the host's RAM, settings
ALTER SYSTEM overrides, an extension the host does not have, a cluster stuck "activating".
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from provisioner.content.roles import PROJECT_ROOT
from provisioner.errors import RoleError
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from provisioner.step import Probed, Refused
from roles.postgres import validation
from roles.postgres.cluster import (
    Applying,
    ensure_cluster_running,
    ensure_settings_in_effect,
    plan_config,
    plan_in_effect,
)
from roles.postgres.handlers import PREVIOUS, START_SECONDS, restart_action
from roles.postgres.objects import plan_extensions
from roles.postgres.settings import check_fits_memory, render_dropin
from tests.unit.fakes import host_config, make_host

DEFAULTS = yaml.safe_load((PROJECT_ROOT / "roles/postgres/defaults.yml").read_text())
INVENTORY = InventoryView.of_hosts([host_config("db1", "10.0.2.10", groups=["db"]),
                                    host_config("api1", "10.0.1.10", groups=["api"])])
APP = {"name": "app", "password": HostSecret("app_password")}
SECRETS = {"host_secrets": {"app_password": {"kind": "password", "length": 32}}}


def variables(**overrides: Any) -> dict[str, Any]:
    return {**DEFAULTS, **SECRETS, "postgres_roles": [APP], **overrides}


def refusal(**overrides: Any) -> str:
    with pytest.raises(RoleError) as refused:
        validation.validate(variables(**overrides))
    return str(refused.value)


def test_a_plain_text_password_is_refused_saying_how_to_declare_a_host_secret() -> None:
    config = host_config("db1", variables={"postgres_roles": [{"name": "app",
                                                                "password": "hunter2"}]})

    with pytest.raises(RoleError) as refused:
        validation.validate_login(config, {})

    assert "postgres_roles[0] (app) has its password in plain text" in str(refused.value)
    assert "password: {secret: host:NAME}" in str(refused.value)
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("password", [HostSecret("app_password"),
                                      Secret("e" * 20, "env:APP_PASSWORD"),
                                      Secret("f" * 40, "file:secrets/app")])
def test_every_secret_reference_is_accepted_as_a_password(password: object) -> None:
    config = host_config("db1", variables={"postgres_roles": [{"name": "app",
                                                                "password": password}]})
    validation.validate_login(config, {})


@pytest.mark.parametrize(("value", "said"), [("", "which is empty"),
                                             ("short-one", "which has only 9 characters"),
                                             ("x" * 19, "which has only 19 characters")])
def test_a_short_or_empty_controller_password_is_refused_naming_the_variable(
        value: str, said: str) -> None:
    config = host_config("db1", variables={"postgres_roles": [
        {"name": "app", "password": Secret(value, "env:APP_PASSWORD")}]})

    with pytest.raises(RoleError) as refused:
        validation.validate_login(config, {})

    message = str(refused.value)
    assert f"postgres_roles[0] (app) takes its password from env:APP_PASSWORD, {said}" in message
    assert "at least 20 characters" in message
    assert value == "" or value not in message


def _checked_before_contact(inventory_vars: dict[str, Any]) -> str:
    """The engine's order: the role's variables merged and validated, then validate_login."""
    from provisioner.content.roles import load_role
    from provisioner.content.variables import check_login_kept, merge_role_variables

    role = load_role(PROJECT_ROOT / "roles" / "postgres")
    config = host_config("db1", variables=inventory_vars, roles=("postgres",))
    with pytest.raises(RoleError) as refused:
        merged = merge_role_variables([role], inventory_vars, "host db1")
        check_login_kept([role], config, merged)
    return str(refused.value)


@pytest.mark.parametrize("secret", [Secret("password=s3cret-in-the-conninfo", "env:CONNINFO"),
                                    HostSecret("conninfo")])
def test_a_secret_in_postgres_settings_is_refused_before_contact(secret: object) -> None:
    message = _checked_before_contact({"postgres_settings": {"primary_conninfo": secret}})

    assert "postgres_settings.primary_conninfo is a secret reference, but PostgreSQL's " \
        "settings are no place for a secret" in message
    assert "s3cret" not in message
    assert "ensure_template" not in message and "secret_store" not in message


def test_a_privileged_or_the_ssh_port_for_postgresql_is_refused_before_contact() -> None:
    assert "postgres_port is 22, a privileged port (below 1024)" in refusal(postgres_port=22)
    config = host_config("db1", port=2222)
    with pytest.raises(RoleError, match="postgres_port is 2222, the port this host's SSH"):
        validation.validate_login(config, {"postgres_port": 2222})


@pytest.mark.parametrize("name", ["postgres", "public", "none", "pg_monitor", "session_user"])
def test_a_reserved_role_name_is_refused(name: str) -> None:
    assert f"postgres_roles[0].name is {name!r}, a name PostgreSQL reserves" in refusal(
        postgres_roles=[{"name": name}])


@pytest.mark.parametrize("name", ["postgres", "template0", "template1"])
def test_a_system_database_is_refused_as_a_managed_one(name: str) -> None:
    assert "one of PostgreSQL's own databases" in refusal(postgres_databases=[{"name": name}])


def test_a_database_owner_that_is_not_a_declared_role_is_refused() -> None:
    message = refusal(postgres_databases=[{"name": "app", "owner": "ap"}])

    assert "postgres_databases[0] (app) has the owner 'ap', which is not a role of " \
        "postgres_roles (app) nor postgres" in message


def test_postgres_may_own_a_database() -> None:
    validation.validate(variables(postgres_databases=[{"name": "app", "owner": "postgres"}]))


@pytest.mark.parametrize(("grant", "message"), [
    ({"role": "ap", "database": "app", "privileges": ["CONNECT"]},
     "postgres_grants[0].role is 'ap', which is not a role of postgres_roles (app)"),
    ({"role": "app", "database": "ap", "privileges": ["CONNECT"]},
     "postgres_grants[0].database is 'ap', which is not a database of postgres_databases "
     "(app)")])
def test_a_grant_naming_an_undeclared_object_is_refused(grant: dict[str, Any],
                                                        message: str) -> None:
    assert message in refusal(postgres_databases=[{"name": "app", "owner": "app"}],
                              postgres_grants=[grant])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"postgres_roles": [APP, APP]}, "postgres_roles names app more than once"),
    ({"postgres_databases": [{"name": "app"}, {"name": "app"}]},
     "postgres_databases names app more than once"),
    ({"postgres_databases": [{"name": "app", "extensions": ["pgcrypto", "pgcrypto"]}]},
     "postgres_databases[0].extensions names pgcrypto more than once")])
def test_a_duplicate_is_refused(overrides: dict[str, Any], message: str) -> None:
    assert message in refusal(**overrides)


@pytest.mark.parametrize(("schedule", "message"), [
    ("0 25 * * *", "its hour field '25': 25 is outside 0-23"),
    ("61 2 * * *", "its minute field '61': 61 is outside 0-59"),
    ("0 2 * * 8", "its day of week field '8': 8 is outside 0-7"),
    ("0 5-2 * * *", "the range 5-2 runs backwards"),
    ("*/0 2 * * *", "a step of 0 never runs"),
    ("0 2 * *", "it needs cron's five time fields")])
def test_a_maintenance_schedule_cron_would_not_run_as_written_is_refused(schedule: str,
                                                                         message: str) -> None:
    assert message in refusal(postgres_maintenance_schedule=schedule)


@pytest.mark.parametrize("schedule", ["0 2 * * *", "*/15 1-5 * * 0,6", "30 3 1 */2 7"])
def test_a_maintenance_schedule_cron_runs_is_accepted(schedule: str) -> None:
    validation.validate(variables(postgres_maintenance_schedule=schedule))


@pytest.mark.parametrize("address", ["db.internal", "10.0.2.300", "10.0.2.10,10.0.2.11"])
def test_a_listen_address_that_is_no_ip_address_is_refused(address: str) -> None:
    assert f"postgres_listen_address is {address!r}, which is not an IP address" in refusal(
        postgres_listen_address=address)


@pytest.mark.parametrize("address", ["", "*", "localhost", "10.0.2.10", "fd00::5"])
def test_an_ip_address_star_or_localhost_is_a_listen_address(address: str) -> None:
    validation.validate(variables(postgres_listen_address=address))


@pytest.mark.parametrize("network", ["172.17.0.0/33", "docker0", "172.17.0.0/16 10.0.0.0/8",
                                     "fd00::/129", 17216, None])
def test_a_remote_network_that_is_not_a_network_is_refused_naming_the_variable(
        network: object) -> None:
    message = refusal(postgres_remote_networks=[network], postgres_listen_address="*")

    assert message == (f"postgres_remote_networks has {network!r}, which is not a network: "
                       "write it as ADDRESS/PREFIX with a prefix of 0-32 (IPv4) or 0-128 "
                       "(IPv6), e.g. 172.17.0.0/16.")


def test_a_remote_network_with_host_bits_is_refused_naming_its_network() -> None:
    message = refusal(postgres_remote_networks=["172.17.0.1/16"], postgres_listen_address="*")

    assert message == ("postgres_remote_networks has '172.17.0.1/16', an address with its host "
                       "bits set, not a network: the network it lies in is 172.17.0.0/16; "
                       "write that.")


def test_remote_networks_that_are_not_a_list_are_refused() -> None:
    assert refusal(postgres_remote_networks="172.17.0.0/16", postgres_listen_address="*") == (
        "postgres_remote_networks is '172.17.0.0/16': it must be a list of networks in CIDR "
        "form, e.g. [172.17.0.0/16] (Docker's default bridge).")


@pytest.mark.parametrize("address", ["", "localhost"])
def test_remote_networks_without_a_listen_address_they_reach_are_refused(address: str) -> None:
    message = refusal(postgres_remote_networks=["172.17.0.0/16"],
                      postgres_listen_address=address)

    assert message.startswith(f"postgres_remote_networks is set but postgres_listen_address "
                              f"is {address!r}")
    assert 'set postgres_listen_address: "*"' in message


def test_remote_networks_are_refused_by_the_engine_before_contact() -> None:
    message = _checked_before_contact({"postgres_remote_networks": ["172.17.0.0/33"],
                                       "postgres_listen_address": "*"})

    assert "postgres_remote_networks has '172.17.0.0/33', which is not a network:" in message


@pytest.mark.parametrize("networks", [[], ["172.17.0.0/16"], ["10.0.5.7"], ["fd00:172::/64"]])
def test_remote_networks_with_a_listen_address_are_accepted(networks: list[str]) -> None:
    validation.validate(variables(postgres_remote_networks=networks, postgres_listen_address="*"))


def test_a_remote_network_without_its_ufw_rule_is_refused_with_the_rule_to_add() -> None:
    unopened = variables(postgres_remote_networks=["172.17.0.0/16"],
                         postgres_listen_address="*",
                         ufw_rules=[{"port": 5432, "proto": "tcp", "from": "10.0.0.0/8"},
                                    {"port": 5433, "proto": "tcp", "from": "172.17.0.0/16"},
                                    {"port": 5432, "from": "172.17.0.0/16", "action": "deny"}])

    with pytest.raises(RoleError) as refused:
        validation.validate_inventory(unopened, INVENTORY)

    assert str(refused.value) == (
        "postgres_remote_networks has 172.17.0.0/16, but ufw_rules has no rule opening port "
        "5432 to it, so the firewall would drop its connections; add to ufw_rules: {port: "
        "5432, proto: tcp, from: 172.17.0.0/16}.")


@pytest.mark.parametrize("source", ["172.17.0.0/16", "172.16.0.0/12", "any"])
def test_a_ufw_rule_from_the_network_or_a_wider_one_opens_it(source: str) -> None:
    opened = variables(postgres_remote_networks=["172.17.0.0/16"], postgres_listen_address="*",
                       ufw_rules=[{"port": 5432, "proto": "tcp", "from": source}])

    validation.validate_inventory(opened, INVENTORY)


def test_remote_networks_need_no_ufw_rule_without_the_ufw_role() -> None:
    validation.validate_inventory(variables(postgres_remote_networks=["172.17.0.0/16"],
                                            postgres_listen_address="*"), INVENTORY)


def test_an_unknown_remote_group_is_named_as_unknown_without_firewall_advice() -> None:
    unknown = variables(postgres_remote_groups=["apii"], ufw_rules=[])
    validation.validate(unknown)

    with pytest.raises(RoleError) as refused:
        validation.validate_inventory(unknown, INVENTORY)

    assert str(refused.value) == ("postgres_remote_groups names 'apii', which is not a group of "
                                  "the inventory (groups: api, db).")


def test_shared_buffers_beyond_the_hosts_ram_is_refused_before_anything_changes() -> None:
    with pytest.raises(RoleError, match=r"shared_buffers is 100GB, more than this host's "
                                        r"8\.0 GB of RAM"):
        check_fits_memory(variables(postgres_settings={"shared_buffers": "100GB"}), 8 << 30)


@pytest.mark.parametrize("value", ["2GB", "262144", 262144])
def test_shared_buffers_within_the_ram_passes(value: object) -> None:
    check_fits_memory(variables(postgres_settings={"shared_buffers": value}), 8 << 30)


def test_the_roles_steps_refuse_shared_buffers_beyond_the_ram() -> None:
    from roles.postgres import role

    host = make_host(variables=variables(postgres_settings={"shared_buffers": "64TB"}),
                     config=host_config("db1", roles=("postgres",)))
    with pytest.raises(RoleError, match="more than this host's"):
        list(role.steps(host))


def config_output(dropin: str, auto: tuple[str, ...] = ()) -> str:
    """config_probe's output for a host whose drop-in holds ``dropin`` and whose
    postgresql.auto.conf sets ``auto``."""
    import base64

    path = "/etc/postgresql/15/main/conf.d/50-provisioner.conf"
    encoded = base64.b64encode(dropin.encode()).decode()
    return ("pg-version 15\npg-restart shared_buffers\n"
            + "".join(f"pg-auto {name}\n" for name in auto)
            + f"pg-config\n=\0{path}\0{encoded}\0=\0{path}\0regular file|postgres|postgres|644"
            "\0\0\0")


def test_every_alter_system_override_of_a_managed_setting_is_refused_before_a_restart() -> None:
    old = render_dropin({"shared_buffers": "1GB", "work_mem": "4MB"})

    with pytest.raises(Refused) as refused:
        plan_config(config_output(old, auto=("shared_buffers", "work_mem", "jit")),
                    lambda version: {"shared_buffers": "2GB", "work_mem": "4MB"}, "hba\n", False)

    message = str(refused.value)
    assert "postgresql.auto.conf (ALTER SYSTEM) sets shared_buffers, work_mem" in message
    assert "ALTER SYSTEM RESET shared_buffers; ALTER SYSTEM RESET work_mem;" in message
    assert "jit" not in message  # not ours: ALTER SYSTEM may keep it
    # shared_buffers is computed (PGTune): the inventory has nothing to drop
    assert "drop them from the inventory" not in message


def test_a_listen_address_that_is_not_the_hosts_is_refused_before_anything_changes() -> None:
    old = render_dropin({"listen_addresses": "localhost"})
    output = config_output(old).replace("pg-config\n", "host-addr 10.0.2.10\nhost-addr "
                                        "127.0.0.1\nhost-addr 00000000000000000000000000000001"
                                        "\npg-config\n")

    with pytest.raises(Refused) as refused:
        plan_config(output, lambda version: {"listen_addresses": "localhost,10.77.0.99"},
                    "hba\n", False)
    assert "listen_addresses holds 10.77.0.99, which is not an address of this host (it has " \
        "10.0.2.10, 127.0.0.1, ::1); nothing was changed" in str(refused.value)
    assert plan_config(output, lambda version: {"listen_addresses": "localhost,10.0.2.10"},
                       "hba\n", False).action is not None


def test_an_alter_system_setting_we_do_not_manage_is_not_refused() -> None:
    old = render_dropin({"work_mem": "4MB"})

    plan = plan_config(config_output(old, auto=("max_wal_senders",)),
                       lambda version: {"work_mem": "8MB"}, "hba\n", False)

    assert plan.notify == ("postgresql:reload",)


def test_a_config_change_saves_the_live_files_before_it_swaps_them() -> None:
    old = render_dropin({"shared_buffers": "1GB"})

    plan = plan_config(config_output(old), lambda version: {"shared_buffers": "2GB"}, "hba\n",
                       False)

    assert plan.action is not None
    assert plan.action.startswith(f"rm -rf {PREVIOUS} && ")
    assert "cp -p /etc/postgresql/15/main/conf.d/50-provisioner.conf" in plan.action


def test_a_restart_the_settings_step_asks_for_forgets_an_older_save() -> None:
    row = ("shared_buffers", "1", "8kB", "integer", "true",
           "/etc/postgresql/15/main/conf.d/50-provisioner.conf")

    plan = plan_in_effect((row,), {"shared_buffers": "2GB"})

    assert plan.action == f"rm -rf {PREVIOUS}"


def test_a_later_conf_d_file_overriding_managed_settings_is_refused_before_any_reload(
        ) -> None:
    ours = ("work_mem", "4096", "kB", "integer", "false",
            "/etc/postgresql/15/main/conf.d/50-provisioner.conf")
    hand = [("@file", name, f"/etc/postgresql/15/main/conf.d/99-hand.conf:{line}", "", "", "")
            for line, name in ((1, "max_connections"), (2, "work_mem"))]

    with pytest.raises(Refused) as refused:
        plan_in_effect((*hand, ours), {"work_mem": "4MB", "max_connections": "200"})

    assert "max_connections (/etc/postgresql/15/main/conf.d/99-hand.conf:1), work_mem (/etc/" \
        "postgresql/15/main/conf.d/99-hand.conf:2) override the drop-in" in str(refused.value)


def test_the_settings_probe_reads_the_files_on_disk_for_later_overrides() -> None:
    step = ensure_settings_in_effect(make_host(), lambda version: {}, ["work_mem"],
                                     Applying())

    assert step.grouped is not None
    assert "FROM pg_file_settings WHERE name IN ('work_mem')" in \
        step.grouped.item


def test_a_restart_someone_elses_change_waits_for_is_reported_not_made() -> None:
    ours = ("work_mem", "4096", "kB", "integer", "false",
            "/etc/postgresql/15/main/conf.d/50-provisioner.conf")
    theirs = ("max_wal_senders", "10", "", "integer", "true", "")

    plan = plan_in_effect((theirs, ours), {"work_mem": "4MB"})

    assert not plan.changes and not plan.notify
    assert "max_wal_senders wait for a restart that is not ours (not restarted)" in plan.reason


def test_the_restart_is_queued_and_polled_for_a_bounded_time_then_rolled_back() -> None:
    action = restart_action()

    assert "systemctl restart --no-block" in action
    assert f"-lt {START_SECONDS * 2} ]" in action and "sleep 0.5" in action
    assert action.index("pg_log_tail\nif pg_restore_previous") < action.rindex("exit 1")
    assert "systemctl restart postgresql" not in action


def running_step_output(active_state: str) -> str:
    return (f"pg-version 15\nLoadState=loaded\nUnitFileState=enabled-runtime\n"
            f"ActiveState={active_state}\n")


@pytest.mark.parametrize("state", ["activating", "failed", "inactive"])
def test_a_cluster_that_is_not_active_gets_the_bounded_start(state: str) -> None:
    step = ensure_cluster_running(make_host())

    plan = step.decide(Probed(running_step_output(state)))

    assert plan.action is not None and "systemctl restart --no-block" in plan.action
    assert f"{state} -> running" in plan.reason


def test_an_active_cluster_is_left_alone() -> None:
    assert not ensure_cluster_running(make_host()).decide(
        Probed(running_step_output("active"))).changes


AVAILABLE = (("plpgsql", "available"), ("plpgsql", "installed"), ("uuid-ossp", "available"),
             ("pgcrypto", "available"))


def test_an_extension_the_host_lacks_is_refused_naming_close_matches_before_any_is_made(
        ) -> None:
    with pytest.raises(Refused) as refused:
        plan_extensions(AVAILABLE, "app", ["pgcrypto", "uuid-osp"])

    assert "extension(s) uuid-osp (did you mean uuid-ossp?) not available on this host" in \
        str(refused.value)


def test_available_extensions_missing_from_the_database_are_created() -> None:
    plan = plan_extensions(AVAILABLE, "app", ["plpgsql", "uuid-ossp"])

    assert plan.action is not None and 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"' in \
        plan.action
    assert "plpgsql" not in plan.reason
