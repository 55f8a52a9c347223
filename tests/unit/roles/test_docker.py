"""The docker role on hand-made hosts: daemon.json from the inventory, what is refused before
contact (each field named), the forwarding agreement with hardening and with the host's sysctl
files, and the packages per release."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_inventory_references, merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.step import Probed, ProbeUnreadable, Refused, Step
from roles.docker.daemon import PATH
from roles.docker.forwarding import SYSCTL_FILE, decide_lasting, last_word
from tests.unit.fakes import host_config
from tests.unit.roles.test_hardening import BOOKWORM, INVENTORY, TRIXIE

ROLES = {name: load_role(PROJECT_ROOT / "roles" / name) for name in ("hardening", "ufw", "docker")}
DOCKER = ROLES["docker"]


def merged(*names: str, **inventory: Any) -> dict[str, Any]:
    base = {**INVENTORY, "hardening_ip_forward": True} if "hardening" in names else {}
    return merge_role_variables([ROLES[name] for name in names], {**base, **inventory}, "test")


def docker_steps(facts: Any = BOOKWORM, **inventory: Any) -> list[Step]:
    config = host_config("dk1", "192.0.2.10", roles=("docker",))
    host = Host(config, merged("docker", **inventory), gather_facts=lambda: facts,
                show_diff=True)
    return list(DOCKER.steps(host.for_role(DOCKER.template_dir)))


def step_named(steps: list[Step], fragment: str) -> Step:
    [step] = [step for step in steps if fragment in step.label]
    return step


def daemon_json(**inventory: Any) -> dict[str, Any]:
    plan = step_named(docker_steps(**inventory), PATH).decide(Probed("absent"))
    assert plan.action is not None and plan.diff is not None
    written = [line[1:] for line in plan.diff.splitlines()
               if line.startswith("+") and not line.startswith("+++")]
    return dict(json.loads("\n".join(written)))


def test_daemon_json_carries_the_cis_settings_by_default() -> None:
    assert daemon_json() == {
        "icc": False, "live-restore": True, "no-new-privileges": True,
        "userland-proxy": False, "log-level": "info", "ip": "127.0.0.1",
        "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}


def test_log_options_are_strings_as_dockerd_demands() -> None:
    assert daemon_json(docker_log_max_file=5)["log-opts"] == {"max-size": "10m", "max-file": "5"}


def test_extra_options_join_the_hardened_ones() -> None:
    limits = {"nofile": {"Name": "nofile", "Hard": 64000, "Soft": 64000}}
    options = daemon_json(docker_daemon_extra_options={"default-ulimits": limits})
    assert options["default-ulimits"] == limits and options["icc"] is False


def test_daemon_json_is_validated_and_restarts_docker() -> None:
    step = step_named(docker_steps(), PATH)
    assert step.notify == ("docker:restart",)
    plan = step.decide(Probed("absent"))
    assert plan.action is not None and "dockerd --validate --config-file" in plan.action


@pytest.mark.parametrize(("inventory", "named"), [
    ({"docker_log_max_size": "10 MB"}, "docker_log_max_size"),
    ({"docker_log_max_file": 0}, "docker_log_max_file"),
    ({"docker_log_level": "verbose"}, "docker_log_level"),
    ({"docker_default_bind_ip": "localhost"}, "docker_default_bind_ip"),
    ({"docker_daemon_extra_options": {"icc": True}}, "sets icc"),
    ({"docker_daemon_extra_options": {"iptables": False}}, "'iptables': False"),
    ({"docker_daemon_extra_options": {"iptables": "false"}}, "'iptables': 'false'"),
    ({"docker_daemon_extra_options": {"iptables": 0}}, "'iptables': 0"),
    ({"docker_daemon_extra_options": {"ip-forward": False}}, "'ip-forward': False"),
    ({"docker_daemon_extra_options": {"insecure-registries": ["r:5000"]}}, "insecure-registries"),
    ({"docker_daemon_extra_options": {"hosts": ["tcp://0.0.0.0:2375"]}}, "TCP socket"),
    ({"docker_daemon_extra_options": {"hosts": "tcp://0.0.0.0:2375"}}, "TCP socket"),
    ({"docker_daemon_extra_options": {"hosts": ["TCP://0.0.0.0:2375"]}}, "TCP socket"),
    ({"docker_daemon_extra_options": {"hosts": [" tcp://0.0.0.0:2375"]}}, "TCP socket"),
    ({"docker_users": ["Not A Name"]}, "docker_users"),
])
def test_bad_input_is_refused_before_contact(inventory: dict[str, Any], named: str) -> None:
    with pytest.raises(RoleError, match=named):
        merged("docker", **inventory)


def test_hardening_that_switches_forwarding_off_is_refused() -> None:
    with pytest.raises(RoleError, match="hardening_ip_forward is false"):
        merged("hardening", "docker", hardening_ip_forward=False)


def test_a_hardening_override_of_forwarding_to_0_is_refused() -> None:
    with pytest.raises(RoleError, match=r"hardening_sysctl_overrides sets net\.ipv4\.ip_forward"):
        merged("hardening", "docker",
               hardening_sysctl_overrides={"net.ipv4.ip_forward": 0})


def test_hardening_with_forwarding_on_agrees() -> None:
    assert merged("hardening", "docker")["hardening_ip_forward"] is True


def test_ufw_after_docker_in_the_hosts_roles_is_refused() -> None:
    config = host_config("dk1", "192.0.2.10", roles=("docker", "ufw"))
    roles = [DOCKER, ROLES["ufw"]]
    variables = merge_role_variables(roles, {}, "test")
    with pytest.raises(RoleError, match="List ufw before docker"):
        check_inventory_references(roles, config, variables, InventoryView.of_hosts([config]))


def test_debian_13_gets_the_docker_command_from_docker_cli() -> None:
    assert step_named(docker_steps(TRIXIE), "packages").label == \
        "packages docker.io ca-certificates docker-cli apparmor"
    assert step_named(docker_steps(BOOKWORM), "packages").label == \
        "packages docker.io ca-certificates apparmor"


FRESH = "docker.io\tun \nnow 1700000000\nfile 801 5 1700000000 /var/lib/apt/periodic/x\n"


def test_the_engine_is_installed_without_its_recommends() -> None:
    plan = step_named(docker_steps(), "packages").decide(Probed(FRESH))
    assert plan.action is not None
    assert "-o APT::Install-Recommends=false install docker.io" in plan.action
    assert "(without Recommends)" in plan.reason


def test_recommends_come_along_when_asked_for() -> None:
    step = step_named(docker_steps(docker_install_recommends=True), "packages")
    plan = step.decide(Probed(FRESH))
    assert plan.action is not None and "Install-Recommends" not in plan.action


def test_apparmor_comes_along_only_outside_containers() -> None:
    nspawn = replace(BOOKWORM, virtualization="systemd-nspawn")
    assert step_named(docker_steps(nspawn), "packages").label == \
        "packages docker.io ca-certificates"


def test_forwarding_is_written_to_a_drop_in_of_its_own() -> None:
    plan = step_named(docker_steps(), f"sysctl file {SYSCTL_FILE}").decide(Probed("absent"))
    assert plan.action is not None and plan.changes


def grep_lines(*pairs: tuple[str, str]) -> list[str]:
    return [f"{path}:net.ipv4.ip_forward = {value}" for path, value in pairs]


def test_the_last_file_sysctl_reads_has_the_last_word() -> None:
    lines = grep_lines(("/etc/sysctl.d/95-provisioner-docker.conf", "1"),
                       ("/etc/sysctl.d/90-provisioner-hardening.conf", "0"))
    assert last_word(lines) == ("/etc/sysctl.d/95-provisioner-docker.conf", "1")


def test_a_later_file_setting_0_is_refused_with_its_name() -> None:
    lines = grep_lines(("/etc/sysctl.d/95-provisioner-docker.conf", "1"),
                       ("/usr/lib/sysctl.d/99-vendor.conf", "0"))
    with pytest.raises(Refused, match=r"/usr/lib/sysctl\.d/99-vendor\.conf sets"):
        decide_lasting(Probed("\n".join(lines)))


def test_etc_sysctl_conf_is_read_last() -> None:
    lines = grep_lines(("/etc/sysctl.d/95-provisioner-docker.conf", "1"),
                       ("/etc/sysctl.conf", "0"))
    assert last_word(lines) == ("/etc/sysctl.conf", "0")


def test_an_etc_file_hides_the_vendor_file_of_its_name() -> None:
    lines = grep_lines(("/usr/lib/sysctl.d/99-zz.conf", "0"), ("/etc/sysctl.d/99-zz.conf", "1"),
                       ("/etc/sysctl.d/95-provisioner-docker.conf", "1"))
    assert last_word(lines) == ("/etc/sysctl.d/99-zz.conf", "1")


def test_a_commented_setting_does_not_count() -> None:
    lines = ["/etc/sysctl.d/95-provisioner-docker.conf:net.ipv4.ip_forward = 1",
             "/etc/sysctl.d/99-x.conf:# net.ipv4.ip_forward = 0"]
    assert last_word(lines)[0] == "/etc/sysctl.d/95-provisioner-docker.conf"


def test_before_the_drop_in_exists_the_check_waits_for_it() -> None:
    with pytest.raises(ProbeUnreadable):
        decide_lasting(Probed(""))


def test_docker_users_join_the_docker_group() -> None:
    step = step_named(docker_steps(docker_users=["deploy"]), "deploy in group docker")
    plan = step.decide(Probed("deploy:x:1001:1001::/home/deploy:/bin/bash\ngroups deploy\n"))
    assert plan.reason in ("added to docker", "user deploy does not exist") or plan.action


def test_no_trixie_specific_packages_on_another_os() -> None:
    ubuntu = replace(TRIXIE, os_id="ubuntu", os_version="24.04")
    assert step_named(docker_steps(ubuntu), "packages").label == \
        "packages docker.io ca-certificates apparmor"


def test_a_unix_socket_in_hosts_passes() -> None:
    merged("docker", docker_daemon_extra_options={"hosts": ["unix:///run/docker.sock"]})
