"""Published container ports meet the inventory's firewall rules: the DOCKER-USER chain the ufw
role writes into /etc/ufw/after.rules on a host with the docker role, and only there."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.host import Host
from provisioner.ops.ufw import Rule
from provisioner.step import Probed, Step
from roles.ufw.docker_user import docker_user_lines
from tests.unit.fakes import host_config

UFW = load_role(PROJECT_ROOT / "roles" / "ufw")
DOCKER = load_role(PROJECT_ROOT / "roles" / "docker")
NEW = "-m conntrack --ctstate NEW"
DNAT = "-m conntrack --ctstate DNAT"


def after_rules(roles: tuple[str, ...], **inventory: Any) -> str:
    loaded = [UFW, DOCKER] if "docker" in roles else [UFW]
    variables = merge_role_variables(loaded, inventory, "test")
    host = Host(host_config("dk1", "192.0.2.10", roles=roles), variables,
                gather_facts=lambda: pytest.fail("no facts"), show_diff=True)
    [step] = [step for step in UFW.steps(host.for_role(UFW.template_dir))
              if "/etc/ufw/after.rules" in step.label]
    return written(step)


def written(step: Step) -> str:
    plan = step.decide(Probed("absent"))
    assert plan.diff is not None
    return "\n".join(line[1:] for line in plan.diff.splitlines()
                     if line.startswith("+") and not line.startswith("+++"))


def test_an_allowed_port_returns_to_dockers_chains_by_its_published_port() -> None:
    lines = docker_user_lines([Rule("8080", "tcp", "any", "allow")], "deny")
    assert f"-A DOCKER-USER -p tcp {NEW} --ctorigdstport 8080 --ctdir ORIGINAL {DNAT} " \
        "-j RETURN" in lines


def test_a_rule_lets_in_published_ports_only_not_a_container_address_routed_to() -> None:
    """Routed straight to 172.17.0.2:80 there is no DNAT, so 80 is the container's port: a
    host rule for port 80 must not open it (only the default drop applies)."""
    lines = docker_user_lines([Rule("80", "tcp", "any", "allow")], "deny")
    assert all(DNAT in line for line in lines if "--ctorigdstport" in line)


def test_everything_else_new_is_dropped_like_ufws_default() -> None:
    lines = docker_user_lines([], "deny")
    assert lines[-2:] == [f"-A DOCKER-USER {NEW} -j DROP", "-A DOCKER-USER -j RETURN"]


def test_a_reject_default_rejects_and_an_allow_default_drops_nothing() -> None:
    assert f"-A DOCKER-USER {NEW} -j REJECT" in docker_user_lines([], "reject")
    assert not any(line.endswith("DROP") and NEW in line
                   for line in docker_user_lines([], "allow"))


def test_replies_and_the_containers_own_traffic_come_before_any_rule() -> None:
    lines = docker_user_lines([Rule("22", "tcp", "any", "deny")], "deny")
    first_rule = next(index for index, line in enumerate(lines) if "--ctorigdstport" in line)
    head = lines[:first_rule]
    assert "-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN" in head
    assert "-A DOCKER-USER -i docker0 -j RETURN" in head


def test_ports_published_on_loopback_are_dropped_from_the_link() -> None:
    assert "-A DOCKER-USER -m conntrack --ctorigdst 127.0.0.0/8 -j DROP" in \
        docker_user_lines([Rule("8000", "tcp", "any", "allow")], "deny")


def test_rules_keep_their_source_order_and_action() -> None:
    lines = docker_user_lines([Rule("5000", "tcp", "192.0.2.7", "deny"),
                               Rule("5000", "tcp", "any", "allow")], "deny")
    ports = [line for line in lines if "--ctorigdstport" in line]
    assert ports == [f"-A DOCKER-USER -p tcp -s 192.0.2.7 {NEW} --ctorigdstport 5000 "
                     f"--ctdir ORIGINAL {DNAT} -j DROP",
                     f"-A DOCKER-USER -p tcp {NEW} --ctorigdstport 5000 --ctdir ORIGINAL "
                     f"{DNAT} -j RETURN"]


def test_any_protocol_is_tcp_and_udp_and_ranges_stay_ranges() -> None:
    ports = [line for line in docker_user_lines([Rule("6000:6010", "any")], "deny")
             if "--ctorigdstport" in line]
    assert [line.split()[3] for line in ports] == ["tcp", "udp"]
    assert all("--ctorigdstport 6000:6010" in line for line in ports)


def test_an_ipv6_source_has_no_ipv4_line() -> None:
    assert not [line for line in docker_user_lines([Rule("80", "tcp", "2001:db8::/32")], "deny")
                if "--ctorigdstport" in line]


def test_a_docker_host_gets_the_inventorys_rules_in_docker_user() -> None:
    text = after_rules(("ufw", "docker"), ufw_rules=[{"port": 8080, "from": "192.0.2.20"}])
    assert ":DOCKER-USER - [0:0]" in text
    assert "-s 192.0.2.20 -m conntrack --ctstate NEW --ctorigdstport 8080" in text
    assert text.rstrip().endswith("COMMIT")


def test_a_host_without_docker_keeps_debians_after_rules() -> None:
    text = after_rules(("ufw",))
    assert "DOCKER-USER" not in text
    assert ":ufw-after-input - [0:0]" in text and text.splitlines().count("COMMIT") == 1


def test_the_after_rules_change_reloads_ufw_under_its_safeguard() -> None:
    variables = merge_role_variables([UFW, DOCKER], {}, "test")
    host = Host(host_config("dk1", roles=("ufw", "docker")), variables,
                gather_facts=lambda: pytest.fail("no facts"))
    [step] = [step for step in UFW.steps(host.for_role(UFW.template_dir))
              if "/etc/ufw/after.rules" in step.label]
    assert step.notify == ("ufw:reload",)
    assert step.safeguard is not None and step.safeguard.undo == "ufw reload"
