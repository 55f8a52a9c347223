"""The app role on a hand-made STET host: the steps it plans (the container uid's account, the
0600 environment, secret files 0400 owned by the app, the move program, the template unit, the
server list), what the inventory must hold around it (docker before, nginx after, a backup host
with backups), the container's ``docker run`` and nginx's include of the server list."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_inventory_references, merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.ops.secret_store import READS_MARKER
from provisioner.secrets.values import Secret
from provisioner.step import Plan, Probed, Refused, Step
from roles.app.accounts import ensure_uid_account, plan_uid_account
from roles.app.container import run_command, unit_spec
from roles.app.instances import (
    InstancesFound,
    parse_instances,
    plan_guard,
    plan_instances,
    table_step,
)
from roles.app.layout import OWNER
from roles.app.move import instances_table, move_program
from roles.app.role import REFRESH
from roles.app.servers import render_servers, server_options
from roles.app.settings import AppSettings, read_app
from roles.systemd.render import render_service
from tests.unit.fakes import host_config, make_host, no_facts
from tests.unit.roles.test_nginx import nginx_conf
from tests.unit.test_app_settings import STET, stet

ROLE = load_role(PROJECT_ROOT / "roles" / "app")
ROLES = ("docker", "app", "nginx")
PASSWORD = "pw-123"
#: A probe's answer for a file not there yet, with the host secret the template reads.
ABSENT_WITH_SECRET = (f"absent\n{READS_MARKER}\nsecret stet_db_password "
                      f"{base64.b64encode(PASSWORD.encode()).decode()}\n")
OPTIONS = "max_fails=0 fail_timeout=30s"  # an app upstream's defaults


def app_host(roles: tuple[str, ...] = ROLES, **overrides: Any) -> Host:
    """The STET host (app1) as a run builds it: role defaults merged and checked."""
    variables = merge_role_variables([ROLE], {**STET, **overrides}, "host app1")
    return unchecked_host(variables, roles)


def unchecked_host(variables: dict[str, Any], roles: tuple[str, ...] = ROLES) -> Host:
    host = make_host(variables=variables, facts=no_facts, show_diff=True,
                     config=host_config("app1", roles=roles, variables=variables))
    return host.for_role(ROLE.template_dir)


def app_steps(**overrides: Any) -> list[Step]:
    return list(ROLE.steps(app_host(**overrides)))


def step_named(steps: list[Step], start: str) -> Step:
    [step] = [step for step in steps if step.label.startswith(start)]
    return step


def labels(steps: list[Step]) -> list[str]:
    return [step.label for step in steps]


def content_of(plan: Plan) -> str:
    """The bytes a write plan puts in the file (its base64 in the action)."""
    assert plan.action is not None
    [encoded] = re.findall(r"printf '%s' (\S+) \| base64 -d", plan.action)
    return base64.b64decode(encoded).decode()


def decided(start: str, probe: str = "absent\n", **overrides: Any) -> Plan:
    return step_named(app_steps(**overrides), start).decide(Probed(probe))


# --- the steps of a typical host -------------------------------------------------------------

def test_the_steps_come_account_environment_secrets_program_unit_servers() -> None:
    found = labels(app_steps())
    starts = ["packages curl", "system user stet", "environment /etc/stet/container.env",
              "directory /etc/stet/secrets", "secret file /etc/stet/secrets/db_password",
              "program /var/lib/provisioner/apps/stet/move", "units stet@.service",
              "nginx servers /etc/nginx/apps/stet.servers"]
    positions = [next(index for index, label in enumerate(found) if label.startswith(start))
                 for start in starts]
    assert positions == sorted(positions), found


def test_the_containers_uid_gets_a_system_account_named_after_the_app() -> None:
    step = step_named(app_steps(), "system user stet (10001:10001, the container's)")
    plan = step.decide(Probed("==\n==\n==\n"))
    assert plan.action is not None
    assert "useradd --system --uid 10001 --gid 10001" in plan.action


def test_the_environment_file_is_roots_and_0600_and_moves_the_instances_when_it_changes(
        ) -> None:
    step = step_named(app_steps(), "environment /etc/stet/container.env")
    plan = step.decide(Probed(ABSENT_WITH_SECRET))
    assert plan.action is not None
    assert 'chown root:root "$tmp"' in plan.action and 'chmod 0600 "$tmp"' in plan.action
    assert step.notify == (REFRESH,)


def test_the_environment_names_each_secret_file_and_holds_no_secret() -> None:
    text = content_of(decided("environment ", ABSENT_WITH_SECRET))
    assert "LOG_LEVEL=info\nDB_PASSWORD_FILE=/run/secrets/db_password\n" in text
    assert PASSWORD not in text


def test_each_secret_is_a_0400_file_owned_by_the_containers_account() -> None:
    step = step_named(app_steps(), "secret file /etc/stet/secrets/db_password")
    plan = step.decide(Probed(ABSENT_WITH_SECRET))
    assert plan.action is not None
    assert 'chown stet:stet "$tmp"' in plan.action and 'chmod 0400 "$tmp"' in plan.action
    assert content_of(plan) == PASSWORD  # the value alone, as Docker gives a secret file
    assert plan.secrets == (Secret(PASSWORD),)
    assert step.notify == (REFRESH,)


def test_the_secrets_directory_is_the_apps_and_0500() -> None:
    plan = decided("directory /etc/stet/secrets")
    assert plan.action is not None
    assert "mkdir -m 0500 /etc/stet/secrets" in plan.action
    assert "chown stet:stet /etc/stet/secrets" in plan.action


def test_secrets_given_as_environment_leave_no_secrets_directory_and_no_files() -> None:
    steps = app_steps(app_secrets_as="environment")
    assert "absent /etc/stet/secrets" in labels(steps)
    assert not [label for label in labels(steps) if label.startswith(("secret file",
                                                                      "directory /etc/stet/s"))]


def test_secrets_given_as_environment_are_in_the_0600_file() -> None:
    plan = decided("environment ", ABSENT_WITH_SECRET, app_secrets_as="environment")
    assert plan.action is not None and 'chmod 0600 "$tmp"' in plan.action
    assert content_of(plan).endswith("LOG_LEVEL=info\nDB_PASSWORD=pw-123\n")


def test_without_secrets_there_is_no_secrets_directory() -> None:
    found = labels(app_steps(app_secrets={}))
    assert "absent /etc/stet/secrets" in found
    assert not [label for label in found if label.startswith("secret file")]


def test_a_secret_from_this_machine_becomes_a_0400_file_with_its_value() -> None:
    variables = {**ROLE.defaults, **STET, "app_secrets": {"API_KEY": Secret("k3y", "env:KEY")}}
    steps = list(ROLE.steps(unchecked_host(variables)))
    plan = step_named(steps, "secret file /etc/stet/secrets/api_key").decide(Probed("absent\n"))
    assert content_of(plan) == "k3y"


def test_the_inventorys_own_values_are_judged_before_contact() -> None:
    """validate_login sees the references themselves (validate and the steps see their values):
    a secret in app_environment, or one written as text in app_secrets, is refused there."""
    @dataclass(frozen=True)
    class Config:
        vars: dict[str, Any]

    assert ROLE.validate_login is not None
    for given, refused in (({"app_environment": {"TOKEN": Secret("s3cret", "env:T")}},
                            "app_environment: TOKEN is a secret"),
                           ({"app_secrets": {"DB_PASSWORD": "hunter2"}},
                            "DB_PASSWORD is written in the inventory as text")):
        with pytest.raises(RoleError, match=refused):
            ROLE.validate_login(Config(given), {})  # type: ignore[arg-type]


def test_the_move_program_is_roots_0700_and_the_one_move_py_writes() -> None:
    host = app_host()
    step = step_named(list(ROLE.steps(host)), "program /var/lib/provisioner/apps/stet/move")
    plan = step.decide(Probed("absent\n"))
    assert plan.action is not None and 'chmod 0700 "$tmp"' in plan.action
    assert content_of(plan) == move_program(read_app(host.vars), OPTIONS)
    assert step.notify == (REFRESH,)


def test_the_template_unit_goes_through_the_systemd_machinery_and_moves_on_change() -> None:
    step = step_named(app_steps(), "units stet@.service in /etc/systemd/system")
    assert step.notify == (REFRESH,)


def test_the_template_unit_runs_the_container_and_takes_its_image_from_the_slot() -> None:
    text = render_service(unit_spec(stet()), OWNER).splitlines()
    assert f"ExecStart={run_command(stet())}" in text
    assert "EnvironmentFile=/var/lib/provisioner/apps/stet/slots/%i.env" in text
    assert "ExecStop=/usr/bin/docker stop --time 10 stet-%i" in text


def test_before_any_deploy_the_server_list_has_each_instance_on_its_own_port() -> None:
    step = step_named(app_steps(), "nginx servers /etc/nginx/apps/stet.servers")
    plan = step.decide(Probed("live 8000 \nlive 8001 \n==servers==\nabsent\n"))
    assert content_of(plan) == render_servers(stet(), {}, OPTIONS)
    assert step.notify == ("nginx:reload",)


def test_the_server_list_keeps_the_ports_deploys_made_live() -> None:
    plan = decided("nginx servers ", "live 8000 18000 v2\nlive 8001 8001 v2\n==servers==\nabsent\n")
    assert content_of(plan) == render_servers(stet(), {8000: 18000, 8001: 8001}, OPTIONS)


def test_a_writable_volumes_host_directory_belongs_to_the_containers_account() -> None:
    plan = decided("directory /srv/stet/data", app_volumes=["/srv/stet/data:/data"])
    assert plan.action is not None
    assert "mkdir -m 0750 /srv/stet/data" in plan.action
    assert "chown stet:stet /srv/stet/data" in plan.action


def test_a_read_only_volume_is_mounted_as_it_is() -> None:
    steps = app_steps(app_volumes=["/etc/stet-static:/static:ro"])
    assert not [label for label in labels(steps) if "stet-static" in label]


# --- the inventory around the role -----------------------------------------------------------

def inventory_check(roles: tuple[str, ...] = ROLES, backup_roles: tuple[str, ...] = (
        "postgres", "backups"), **overrides: Any) -> None:
    variables = merge_role_variables([ROLE], {**STET, **overrides}, "host app1")
    config = host_config("app1", roles=roles, variables=variables)
    view = InventoryView.of_hosts([config, host_config("db1", "192.0.2.20", roles=backup_roles),
                                   host_config("web2", "192.0.2.30", roles=("nginx",))])
    check_inventory_references([ROLE], config, variables, view)


def test_docker_before_and_nginx_after_with_a_backed_up_database_pass() -> None:
    inventory_check()


@pytest.mark.parametrize("roles", [("app", "nginx"), ("app", "docker", "nginx"),
                                   ("nginx", "app", "docker")],
                         ids=["no-docker", "docker-after", "docker-after-nginx-before"])
def test_a_host_without_docker_before_the_app_is_refused(roles: tuple[str, ...]) -> None:
    with pytest.raises(RoleError, match="host app1: role app: host app1: the app role needs "
                                        "docker before it in the roles"):
        inventory_check(roles)


@pytest.mark.parametrize("roles", [("docker", "app"), ("docker", "nginx", "app")],
                         ids=["no-nginx", "nginx-before"])
def test_a_host_without_nginx_after_the_app_is_refused(roles: tuple[str, ...]) -> None:
    with pytest.raises(RoleError, match="the app role needs nginx after it in the roles"):
        inventory_check(roles)


def test_a_backup_host_that_is_not_a_host_of_the_inventory_is_refused() -> None:
    with pytest.raises(RoleError, match="app_backup_host 'db9' is not a host of the inventory"):
        inventory_check(app_backup_host="db9")


def test_a_backup_host_without_the_backups_role_is_refused() -> None:
    with pytest.raises(RoleError, match=r"app_backup_host 'web2' has no backups role \(its "
                                        r"roles: nginx\)"):
        inventory_check(app_backup_host="web2")


def test_a_backup_host_without_a_migration_is_refused() -> None:
    with pytest.raises(RoleError, match="app_backup_host is set but app_migration_command is "
                                        "empty"):
        inventory_check(app_migration_command="")


def test_no_backup_host_needs_no_backups_role_anywhere() -> None:
    inventory_check(backup_roles=("postgres",), app_backup_host="")


def test_a_host_without_an_upstream_naming_the_app_is_refused() -> None:
    with pytest.raises(RoleError, match="no nginx upstream takes its servers from app 'stet'"):
        inventory_check(nginx_upstreams=[{"name": "api", "servers": ["127.0.0.1:8000"]}])


# --- the container's docker run ----------------------------------------------------------------

def docker_run(settings: AppSettings | None = None) -> list[str]:
    return shlex.split(run_command(settings or stet()))


def values_of(argv: list[str], option: str) -> list[str]:
    return [argv[index + 1] for index, word in enumerate(argv) if word == option]


def test_the_container_is_published_on_loopback_only() -> None:
    argv = docker_run()
    assert values_of(argv, "--publish") == ["127.0.0.1:%i:8080"]
    assert not {"-p", "-P", "--publish-all", "--network", "--net"} & set(argv)


def test_the_container_runs_as_the_configured_uid() -> None:
    assert values_of(docker_run(), "--user") == ["10001:10001"]


def test_the_container_has_no_capabilities_and_gains_no_privileges() -> None:
    argv = docker_run()
    assert values_of(argv, "--cap-drop") == ["ALL"]
    assert values_of(argv, "--security-opt") == ["no-new-privileges"]
    assert "--cap-add" not in argv and "--privileged" not in argv


def test_the_container_has_the_memory_and_cpu_limits() -> None:
    argv = docker_run(stet(app_memory="2g", app_cpus=0.5))
    assert (values_of(argv, "--memory"), values_of(argv, "--cpus")) == (["2g"], ["0.5"])


def test_the_container_never_pulls_and_runs_the_image_its_slot_names() -> None:
    argv = docker_run()
    assert values_of(argv, "--pull") == ["never"]
    assert argv[:2] == ["/usr/bin/docker", "run"] and argv[-1] == "${IMAGE}"
    assert values_of(argv, "--name") == ["stet-%i"]


def test_the_container_reads_the_environment_file_and_the_secrets_read_only() -> None:
    argv = docker_run()
    assert values_of(argv, "--env-file") == ["/etc/stet/container.env"]
    assert values_of(argv, "--volume") == ["/etc/stet/secrets:/run/secrets:ro"]


def test_secrets_as_environment_mount_no_secrets_directory() -> None:
    assert values_of(docker_run(stet(app_secrets_as="environment")), "--volume") == []


def test_the_inventorys_volumes_are_mounted_as_written() -> None:
    argv = docker_run(stet(app_volumes=["/srv/stet/data:/data", "/srv/stet/static:/static:ro"]))
    assert values_of(argv, "--volume")[1:] == ["/srv/stet/data:/data",
                                               "/srv/stet/static:/static:ro"]


# --- the container uid's host account ------------------------------------------------------------

def getent(by_name: str = "", by_uid: str = "", group_by_name: str = "",
           group_by_gid: str = "") -> str:
    """What ensure_uid_account's probe prints: the four getent answers between '=='."""
    answers = (by_name, by_uid, group_by_name, group_by_gid)
    return "==\n".join(f"{answer}\n" if answer else "" for answer in answers)


STET_USER = "stet:x:10001:10001::/nonexistent:/usr/sbin/nologin"
STET_GROUP = "stet:x:10001:"


def test_a_new_account_gets_its_group_and_user_with_exactly_the_uid_and_gid() -> None:
    plan = plan_uid_account("stet", 10001, 10001, getent())
    assert plan.action == (
        "groupadd --system --gid 10001 stet && useradd --system --uid 10001 --gid 10001 "
        "--no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin stet")
    assert plan.reason == "created (system user 10001:10001, no login)"


def test_a_group_already_there_with_the_gid_gets_only_the_user() -> None:
    plan = plan_uid_account("stet", 10001, 10001, getent(group_by_name=STET_GROUP,
                                                          group_by_gid=STET_GROUP))
    assert plan.action is not None and plan.action.startswith("useradd --system --uid 10001")


def test_the_account_already_there_with_the_uid_and_gid_needs_nothing() -> None:
    plan = plan_uid_account("stet", 10001, 10001,
                            getent(STET_USER, STET_USER, STET_GROUP, STET_GROUP))
    assert (plan.reason, plan.action) == ("exists", None)


@pytest.mark.parametrize(("output", "said"), [
    (getent("stet:x:2000:2000::/home/stet:/bin/bash"),
     r"user stet exists with uid:gid 2000:2000, not 10001:10001 \(app_user\)"),
    (getent("stet:x:10001:2000::/home/stet:/bin/bash"),
     r"user stet exists with uid:gid 10001:2000, not 10001:10001"),
    (getent(by_uid="alice:x:10001:10001::/home/alice:/bin/bash"),
     r"uid 10001 \(app_user\) belongs to user alice on this host"),
    (getent(group_by_name="stet:x:3000:"),
     r"group stet exists with gid 3000, not 10001 \(app_user\)"),
    (getent(group_by_gid="staff:x:10001:"),
     r"gid 10001 \(app_user\) belongs to group staff on this host"),
], ids=["name-with-another-uid", "name-with-another-gid", "uid-held-by-another-user",
        "group-name-with-another-gid", "gid-held-by-another-group"])
def test_a_name_or_id_held_otherwise_is_refused(output: str, said: str) -> None:
    with pytest.raises(Refused, match=said):
        plan_uid_account("stet", 10001, 10001, output)


def test_the_probe_on_a_host_without_the_account_plans_its_creation() -> None:
    step = ensure_uid_account("provisioner-nobody", 3999999, 3999998)
    done = subprocess.run(["sh", "-c", step.probe], capture_output=True, text=True, check=True)
    plan = step.decide(Probed(done.stdout))
    assert plan.action is not None
    assert plan.action.startswith("groupadd --system --gid 3999998 provisioner-nobody && ")


# --- nginx's upstream includes the server list ------------------------------------------------

def upstream_block(text: str, name: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index(f"upstream {name} {{")
    return lines[start + 1:lines.index("}", start)]


APP_UPSTREAMS = [{"name": "api", "app": "stet", "max_fails": 5},
                 {"name": "web", "servers": ["127.0.0.1:9000"]}]


def test_an_upstream_naming_the_app_includes_its_server_list() -> None:
    block = upstream_block(nginx_conf(nginx_upstreams=APP_UPSTREAMS), "api")
    assert "include /etc/nginx/apps/stet.servers;" in block
    assert not [line for line in block if line.startswith("server ")]
    assert "keepalive 16;" in block


def test_an_upstream_with_servers_still_lists_them_and_includes_nothing() -> None:
    block = upstream_block(nginx_conf(nginx_upstreams=APP_UPSTREAMS), "web")
    assert "server 127.0.0.1:9000 max_fails=3 fail_timeout=30s;" in block
    assert not [line for line in block if line.startswith("include")]


def test_the_server_list_carries_the_options_of_the_upstream_that_includes_it() -> None:
    options = server_options({"nginx_upstreams": APP_UPSTREAMS}, "stet")
    assert render_servers(stet(), {}, options).splitlines()[1] == \
        "server 127.0.0.1:8000 max_fails=5 fail_timeout=30s;"


def found(settings: AppSettings, text: str) -> InstancesFound:
    return parse_instances(settings, text)


def test_an_instance_taken_out_leaves_nginx_then_stops_and_its_live_file_goes() -> None:
    settings = read_app({**ROLE.defaults, **STET, "app_instances": [8000]})
    host = found(settings, "unit stet@18000.service\nunit stet@8001.service\n"
                           "live 8000 18000 v2\nlive 8001 8001 v2\n")

    plan = plan_instances(settings, host)

    assert plan.reason == ("retired stet@8001 (no configured instance uses its port), "
                           "forgot instance 8001 (no longer in app_instances)")
    assert plan.action is not None
    assert plan.action.index("systemctl reload nginx.service") < plan.action.index(
        "disable --now --quiet stet@8001.service")
    assert "/var/lib/provisioner/apps/stet/live/8001" in plan.action


def test_an_instance_on_a_port_the_new_offset_does_not_give_stays_for_the_handler() -> None:
    settings = read_app({**ROLE.defaults, **STET, "app_alternate_port_offset": 20000})
    host = found(settings, "unit stet@18000.service\nunit stet@18001.service\n"
                           "live 8000 18000 v2\nlive 8001 18001 v2\n")

    assert plan_instances(settings, host).action is None


def test_an_instance_added_starts_with_the_version_the_others_serve() -> None:
    settings = read_app({**ROLE.defaults, **STET, "app_instances": [8000, 8001, 8002]})
    host = found(settings, "unit stet@8000.service\nunit stet@8001.service\n"
                           "live 8000 8000 v2\nlive 8001 8001 v2\n")

    plan = plan_instances(settings, host)

    assert plan.reason == "started instance 8002 with v2"
    assert plan.action is not None and "/var/lib/provisioner/apps/stet/move 8002 v2" in plan.action


def test_nothing_starts_before_the_first_deploy() -> None:
    settings = read_app({**ROLE.defaults, **STET})
    assert plan_instances(settings, found(settings, "")).action is None


def test_a_host_runs_one_app_and_etc_only_when_it_is_the_roles_own() -> None:
    settings = read_app({**ROLE.defaults, **STET})

    with pytest.raises(Refused, match="this host runs app shop"):
        plan_guard(settings, "app shop\netc absent\n")
    with pytest.raises(Refused, match="/etc/stet exists and is not the app role's"):
        plan_guard(settings, "etc foreign\n")
    assert plan_guard(settings, "app stet\netc ours\n").action is None
    claim = plan_guard(settings, "etc absent\n").action
    assert claim is not None and "/etc/stet/.provisioner-app" in claim


def test_an_instance_added_changes_the_table_but_moves_no_other_instance() -> None:
    settings = read_app({**ROLE.defaults, **STET, "app_instances": [8000, 8001, 8002]})
    step = table_step(settings, REFRESH)

    plan = step.decide(Probed("8000 8000 18000\n8001 8001 18001\n"))

    assert plan.reason == "instances added or taken out" and plan.notify == ()
    assert plan.action is not None and "8002 8002 18002" in plan.action


def test_a_new_offset_changes_the_table_and_moves_the_instances() -> None:
    settings = read_app({**ROLE.defaults, **STET, "app_alternate_port_offset": 20000})
    step = table_step(settings, REFRESH)

    plan = step.decide(Probed("8000 8000 18000\n8001 8001 18001\n"))

    assert plan.reason == "ports of instance 8000, 8001 changed" and plan.notify == (REFRESH,)
    assert step.decide(Probed(instances_table(settings))).action is None
