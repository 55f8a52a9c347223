"""The pgbouncer role on a hand-made host: bad input refused before contact, pgbouncer.ini from
the inventory, restart only for start-only settings, the handlers' shell."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.path_state import probe_path
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from provisioner.step import Probed, Refused, Step
from roles.pgbouncer.handlers import save_previous_command
from roles.pgbouncer.role import rendered_ini, validate_inventory
from roles.pgbouncer.settings import ini_settings, restart_settings_changed
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "pgbouncer")
UFW = load_role(PROJECT_ROOT / "roles" / "ufw")
POSTGRES_VARS: dict[str, Any] = {
    "postgres_databases": [{"name": "app"}, {"name": "reports"}],
    "postgres_roles": [{"name": "app", "password": "x"}, {"name": "readonly", "login": False,
                                                           "password": "y"},
                       {"name": "nopass"}]}
INVENTORY = InventoryView.of_hosts([
    host_config("db1", "10.0.0.5", groups=("db",)),
    host_config("api1", "10.0.0.7", groups=("api",))])


def merged(*, with_ufw: bool = False, **overrides: Any) -> dict[str, Any]:
    roles = [UFW, ROLE] if with_ufw else [ROLE]
    return merge_role_variables(roles, {"pgbouncer_auth_users": ["app"], **overrides}, "test")


def make_host(**overrides: Any) -> Host:
    config = host_config("db1", "10.0.0.5", groups=("db",), roles=("pgbouncer",))
    host = Host(config, merged(**overrides), gather_facts=lambda: pytest.fail("no facts"),
                inventory=INVENTORY)
    return host.for_role(ROLE.template_dir)


def steps_of(host: Host) -> list[Step]:
    return list(ROLE.steps(host))


def ini_step(host: Host) -> Step:
    (step,) = [step for step in steps_of(host) if "pgbouncer.ini" in step.label]
    return step


def written_ini(**overrides: Any) -> dict[str, str]:
    """The [pgbouncer] settings of the file the role writes."""
    return ini_settings(rendered_ini(make_host(**overrides)))


def written_databases(**overrides: Any) -> list[str]:
    text = rendered_ini(make_host(**overrides))
    section = text.split("[databases]\n", 1)[1].split("[pgbouncer]", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


# --- bad input, before contact -------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    ({"pgbouncer_pool_mode": "sessions"}, r"pgbouncer_pool_mode is 'sessions'; it must be one "
                                          r"of session, transaction, statement"),
    ({"pgbouncer_max_client_conn": 0}, r"pgbouncer_max_client_conn is 0; it must be a whole "
                                       r"number above 0"),
    ({"pgbouncer_default_pool_size": -5}, r"pgbouncer_default_pool_size is -5"),
    ({"pgbouncer_default_pool_size": 2.5}, r"pgbouncer_default_pool_size is 2.5"),
    ({"pgbouncer_reserve_pool_size": -1}, r"pgbouncer_reserve_pool_size is -1; it must be a "
                                          r"whole number, 0 or more"),
    ({"pgbouncer_reserve_pool_timeout": -1}, r"pgbouncer_reserve_pool_timeout is -1"),
    ({"pgbouncer_listen_port": 70000}, r"pgbouncer_listen_port is 70000; it must be a TCP port"),
    ({"pgbouncer_listen_addresses": ["localhost"]}, r"pgbouncer_listen_addresses holds "
                                                    r"'localhost', which is not an IP address"),
    ({"pgbouncer_databases": {"my-app": {}}}, r"pgbouncer_databases entry 'my-app': the "
                                              r"database name is not a plain identifier"),
    ({"pgbouncer_databases": {"app": {"dbname": "x;y"}}}, r"entry 'app' dbname holds 'x;y'"),
    ({"pgbouncer_databases": {"app": {"user": "app"}}}, r"has option\(s\) user, which this role "
                                                        r"does not write.*SCRAM passing"),
    ({"pgbouncer_databases": {"app": {"pool_mode": "tx"}}}, r"entry 'app' pool_mode is 'tx'"),
    ({"pgbouncer_databases": {"app": {"pool_size": 0.5}}}, r"entry 'app' pool_size is 0.5"),
    ({"pgbouncer_databases": {"app": "app"}}, r"entry 'app' must map to options"),
    ({"pgbouncer_auth_users": ["app", "Robert'); DROP"]}, r"pgbouncer_auth_users holds "
                                                           r"\"Robert'\); DROP\""),
    ({"pgbouncer_stats_users": ["monitor"]}, r"pgbouncer_stats_users names monitor, which the "
                                             r"userlist would not hold \(its users: app\)"),
    ({"pgbouncer_remote_groups": [7]}, r"pgbouncer_remote_groups holds 7; it must list the "
                                       r"names of inventory groups"),
    ({"pgbouncer_extra_settings": {"auth_type": "md5"}}, r"pgbouncer_extra_settings sets "
                                                         r"auth_type, which this role writes"),
    ({"pgbouncer_extra_settings": {"Server Idle": 1}}, r"has the key 'Server Idle'"),
    ({"pgbouncer_extra_settings": {"server_reset_query": HostSecret("reset")}},
     r"pgbouncer_extra_settings.server_reset_query is a secret reference, but pgbouncer.ini is "
     r"no place for a secret"),
    ({"pgbouncer_databases": {"pgbouncer": {}}}, r"entry 'pgbouncer': pgbouncer is the name of "
                                                 r"PgBouncer's own admin console database"),
    ({"postgres_databases": [{"name": "pgbouncer"}]}, r"entry 'pgbouncer': pgbouncer is the "
                                                      r"name of PgBouncer's own admin console"),
    ({"pgbouncer_listen_port": 22}, r"pgbouncer_listen_port is 22, a privileged port \(below "
                                    r"1024\) that PgBouncer, running as postgres, cannot bind"),
    ({"pgbouncer_auth_users": ["postgres"]}, r"pgbouncer_auth_users names postgres, the "
                                             r"superuser, which logs in by peer only"),
    ({**POSTGRES_VARS, "pgbouncer_auth_users": ["app", "reporting"]},
     r"pgbouncer_auth_users names reporting, which postgres_roles does not declare with a "
     r"password \(roles with one: app, readonly\)"),
    ({**POSTGRES_VARS, "pgbouncer_auth_users": ["nopass"]},
     r"pgbouncer_auth_users names nopass, which postgres_roles does not declare"),
    ({"pgbouncer_extra_settings": {"server_idle_timeout": "1\nauth_type = any"}},
     r"must be one line"),
])
def test_bad_input_is_refused_before_contact_naming_the_variable(overrides: dict[str, Any],
                                                                 message: str) -> None:
    with pytest.raises(RoleError, match=message):
        merged(**overrides)


def test_a_controller_secret_in_extra_settings_is_refused_before_contact() -> None:
    hidden = Secret("zq-hidden-zq", "env:RESET")
    overrides = {"pgbouncer_extra_settings": {"server_reset_query": hidden}}
    config = host_config("db1", "10.0.0.5", roles=("pgbouncer",),
                         variables={"pgbouncer_auth_users": ["app"], **overrides})

    with pytest.raises(RoleError) as refused:
        check_login_kept([ROLE], config, merged(**overrides))

    assert "pgbouncer_extra_settings.server_reset_query is a secret reference" in \
        str(refused.value)
    assert "zq-hidden-zq" not in str(refused.value)


def test_pgbouncer_on_the_hosts_ssh_port_is_refused_before_contact() -> None:
    config = host_config("db1", "10.0.0.5", port=2222, roles=("pgbouncer",))

    with pytest.raises(RoleError, match=r"pgbouncer_listen_port is 2222, the port this host's "
                                        r"SSH server listens on"):
        check_login_kept([ROLE], config, merged(pgbouncer_listen_port=2222))


def test_remote_groups_without_their_firewall_rule_are_refused_with_the_rule_to_add() -> None:
    with pytest.raises(RoleError, match=r"pgbouncer_remote_groups names 'api' but ufw_rules has "
                                        r"no rule opening PgBouncer's port to it.*add \{port: "
                                        r"6432, proto: tcp, from_group: api\} to ufw_rules"):
        validate_inventory(merged(with_ufw=True, pgbouncer_remote_groups=["api"],
                                  ufw_rules=[{"port": 6432}]), INVENTORY)


def test_remote_groups_with_their_firewall_rule_pass() -> None:
    variables = merged(with_ufw=True, pgbouncer_remote_groups=["api"],
                       ufw_rules=[{"port": 6432, "proto": "tcp", "from_group": "api"}])
    validate_inventory(variables, INVENTORY)
    assert variables["pgbouncer_remote_groups"] == ["api"]


def test_an_unknown_remote_group_is_named_as_unknown_not_given_firewall_advice() -> None:
    variables = merged(with_ufw=True, pgbouncer_remote_groups=["apis"], ufw_rules=[])

    with pytest.raises(RoleError) as refused:
        validate_inventory(variables, INVENTORY)

    assert "'apis' is not a group of the inventory (groups: api, db)" in str(refused.value)
    assert "ufw" not in str(refused.value)


def test_pgbouncer_on_postgresqls_port_is_refused_before_contact() -> None:
    with pytest.raises(RoleError, match=r"pgbouncer_listen_port is 5432, the port this host's "
                                        r"PostgreSQL listens on \(postgres_port\)"):
        merged(pgbouncer_listen_port=5432, postgres_port=5432)


def test_remote_groups_need_no_firewall_rule_on_a_host_without_ufw() -> None:
    assert merged(pgbouncer_remote_groups=["api"])["pgbouncer_remote_groups"] == ["api"]


def test_a_remote_group_the_inventory_lacks_is_a_role_error_naming_the_groups() -> None:
    with pytest.raises(RoleError, match=r"group 'apis' is not a group of the inventory \(groups: "
                                        r"api, db\)"):
        validate_inventory(merged(pgbouncer_remote_groups=["apis"]), INVENTORY)


def test_the_steps_refuse_a_remote_group_the_inventory_lacks_too() -> None:
    with pytest.raises(RoleError, match=r"group 'apis' is not a group of the inventory"):
        steps_of(make_host(pgbouncer_remote_groups=["apis"]))


# --- pgbouncer.ini --------------------------------------------------------------------------

def test_pgbouncer_listens_on_loopback_only_by_default() -> None:
    assert written_ini()["listen_addr"] == "127.0.0.1"
    assert written_ini()["listen_port"] == "6432"


def test_remote_groups_add_the_hosts_inventory_address() -> None:
    assert written_ini(pgbouncer_remote_groups=["api"])["listen_addr"] == "127.0.0.1,10.0.0.5"


def test_a_private_address_replaces_the_inventory_address_for_remote_groups() -> None:
    settings = written_ini(pgbouncer_remote_groups=["api"],
                           pgbouncer_private_address="192.168.1.5")
    assert settings["listen_addr"] == "127.0.0.1,192.168.1.5"


@pytest.mark.parametrize(("setting", "value"), [
    ("auth_type", "scram-sha-256"), ("auth_file", "/etc/pgbouncer/userlist.txt"),
    ("pool_mode", "transaction"), ("max_client_conn", "200"), ("default_pool_size", "25"),
    ("reserve_pool_size", "5"), ("ignore_startup_parameters", "extra_float_digits"),
    ("admin_users", "postgres"), ("logfile", "/var/log/postgresql/pgbouncer.log"),
    ("pidfile", "/var/run/postgresql/pgbouncer.pid"), ("unix_socket_dir", "/var/run/postgresql"),
])
def test_the_ini_holds_the_default(setting: str, value: str) -> None:
    assert written_ini()[setting] == value


def test_extra_settings_are_appended() -> None:
    settings = written_ini(pgbouncer_extra_settings={"server_idle_timeout": 300})
    assert settings["server_idle_timeout"] == "300"


def test_databases_default_to_the_postgres_roles_databases_on_the_local_server() -> None:
    assert written_databases(**POSTGRES_VARS) == [
        "app = host=127.0.0.1 port=5432 dbname=app",
        "reports = host=127.0.0.1 port=5432 dbname=reports"]


def test_databases_follow_the_postgres_roles_port() -> None:
    assert written_databases(postgres_databases=[{"name": "app"}], postgres_port=5433) == [
        "app = host=127.0.0.1 port=5433 dbname=app"]


def test_an_inventory_server_port_wins_over_the_postgres_roles() -> None:
    assert written_databases(postgres_databases=[{"name": "app"}], postgres_port=5433,
                             pgbouncer_server_port=6543) == [
        "app = host=127.0.0.1 port=6543 dbname=app"]


def test_an_inventory_database_entry_keeps_its_options_and_names_no_user() -> None:
    lines = written_databases(**POSTGRES_VARS, pgbouncer_databases={
        "reporting": {"dbname": "app", "pool_size": 5, "pool_mode": "session"}})
    assert lines == ["reporting = host=127.0.0.1 port=5432 dbname=app pool_size=5 "
                     "pool_mode=session"]


def test_the_ini_is_root_owned_and_readable_by_postgres_only() -> None:
    action = ini_step(make_host()).decide(Probed("absent")).action or ""
    assert "chown root:postgres" in action and "chmod 0640" in action


# --- restart or reload ----------------------------------------------------------------------

def probed_ini(text: str) -> Probed:
    """What the ini step's probe prints for a file with this content."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    encoded = base64.b64encode(text.encode()).decode()
    return Probed(f"regular file|root|postgres|640|{digest}  /etc/pgbouncer/pgbouncer.ini"
                  f"\ncontent:{encoded}\n")


def test_the_ini_probe_reads_the_live_content() -> None:
    assert ini_step(make_host()).probe == probe_path("/etc/pgbouncer/pgbouncer.ini",
                                                    with_content=True)


def test_a_pool_size_change_reloads() -> None:
    live = rendered_ini(make_host())
    plan = ini_step(make_host(pgbouncer_default_pool_size=30)).decide(probed_ini(live))
    assert plan.action is not None and plan.notify == ("pgbouncer:reload",)


def test_a_listen_address_change_restarts_and_says_why() -> None:
    live = rendered_ini(make_host())
    plan = ini_step(make_host(pgbouncer_remote_groups=["api"])).decide(probed_ini(live))
    assert plan.notify == ("pgbouncer:restart",)
    assert plan.reason == "content changed (restart: listen_addr changed)"


def test_debians_own_ini_restarts_on_first_converge() -> None:
    debian = ("[databases]\n[pgbouncer]\nlogfile = /var/log/postgresql/pgbouncer.log\n"
              "listen_addr = localhost\nlisten_port = 6432\n")
    assert ini_step(make_host()).decide(probed_ini(debian)).notify == ("pgbouncer:restart",)


def test_an_unchanged_ini_notifies_nothing() -> None:
    plan = ini_step(make_host()).decide(probed_ini(rendered_ini(make_host())))
    assert plan.action is None


def test_an_owner_change_alone_notifies_nothing() -> None:
    probed = probed_ini(rendered_ini(make_host()))
    probed = Probed(probed.output.replace("|root|postgres|640|", "|postgres|postgres|640|"))
    plan = ini_step(make_host()).decide(probed)
    assert plan.action is not None and plan.notify == ()


def test_comments_and_layout_do_not_count_as_a_start_only_change() -> None:
    live = "[pgbouncer]\n; a comment\nlisten_addr=127.0.0.1\n"
    assert restart_settings_changed(live, "[pgbouncer]\nlisten_addr = 127.0.0.1\n") == []


# --- the steps ------------------------------------------------------------------------------

def test_steps_install_configure_copy_the_verifiers_and_run_the_service() -> None:
    assert [step.label for step in steps_of(make_host())] == [
        "packages pgbouncer", "PgBouncer listen addresses are this host's",
        "template /etc/pgbouncer/pgbouncer.ini [controls §7.2]",
        "owner and mode of /etc/pgbouncer/userlist.txt",
        "userlist /etc/pgbouncer/userlist.txt [controls §7.2]",
        "service pgbouncer.service enabled and running"]


def test_the_restart_supersedes_the_reload() -> None:
    assert ROLE.handlers["pgbouncer:restart"].supersedes == ("pgbouncer:reload",)


HOST_ADDRESSES = ("host-addr 10.0.0.5\nhost-addr 127.0.0.1\n"
                  "host-addr 00000000000000000000000000000001\n")


def _addresses_step(**overrides: Any) -> Step:
    (step,) = [step for step in steps_of(make_host(**overrides)) if "listen addresses" in
               step.label]
    return step


def test_a_private_address_that_is_not_the_hosts_is_refused_before_the_ini_changes() -> None:
    step = _addresses_step(pgbouncer_remote_groups=["api"],
                           pgbouncer_private_address="10.77.0.99")

    with pytest.raises(Refused) as refused:
        step.decide(Probed(HOST_ADDRESSES))

    assert "PgBouncer would listen on 10.77.0.99, which is not an address of this host (it " \
        "has 10.0.0.5, 127.0.0.1, ::1)" in str(refused.value)


def test_the_hosts_own_addresses_pass() -> None:
    plan = _addresses_step(pgbouncer_remote_groups=["api"]).decide(Probed(HOST_ADDRESSES))

    assert plan.reason == "127.0.0.1, 10.0.0.5 are this host's" and plan.action is None


def test_a_refused_reload_puts_the_previous_ini_and_userlist_back_and_reloads_them() -> None:
    reload = ROLE.handlers["pgbouncer:reload"].action
    restart = ROLE.handlers["pgbouncer:restart"].action

    refused = reload.index("PgBouncer refused the new configuration")
    assert reload.index("if pgb_restore; then", refused) < reload.rindex("systemctl reload")
    assert "if pgb_restore && systemctl restart pgbouncer.service" in restart
    ini_action = ini_step(make_host(pgbouncer_default_pool_size=31)).decide(
        probed_ini(rendered_ini(make_host()))).action
    assert ini_action is not None and ini_action.startswith(save_previous_command())
