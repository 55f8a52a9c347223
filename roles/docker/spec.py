"""docker spec: the engine runs with the hardened daemon.json, its files have CIS modes, IPv4
forwarding is on and stays on, and with ufw published ports meet DOCKER-USER's rules first."""

from __future__ import annotations

import json
from typing import Any

import pytest

from roles.docker.daemon import PATH, daemon_options
from roles.docker.forwarding import SYSCTL_FILE


def test_docker_is_running_and_enabled(host: Any) -> None:
    service = host.service("docker")
    assert service.is_running and service.is_enabled


def test_daemon_json_holds_the_inventorys_settings(host: Any, role_vars: dict[str, Any]) -> None:
    assert json.loads(host.file(PATH).content_string) == daemon_options(role_vars)


def test_the_daemon_runs_with_them(host: Any, role_vars: dict[str, Any]) -> None:
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] == role_vars["docker_live_restore"]
    assert info["LoggingDriver"] == "json-file"


def test_docker_files_have_the_cis_modes(host: Any) -> None:
    for path, mode in ((PATH, 0o644), ("/etc/docker", 0o755)):
        found = host.file(path)
        assert (found.user, found.group, found.mode) == ("root", "root", mode)
    socket = host.file("/run/docker.sock")
    assert (socket.user, socket.group, socket.mode) == ("root", "docker", 0o660)


def test_ipv4_forwarding_is_on_and_in_a_file_of_its_own(host: Any) -> None:
    assert host.file("/proc/sys/net/ipv4/ip_forward").content_string.strip() == "1"
    assert "net.ipv4.ip_forward = 1" in host.file(SYSCTL_FILE).content_string


def test_published_ports_meet_the_firewalls_rules_first(host: Any,
                                                       role_vars: dict[str, Any]) -> None:
    if "ufw_rules" not in role_vars:
        pytest.skip("no ufw role on this host: no firewall for a published port to bypass")
    forward = host.check_output("iptables -S FORWARD").splitlines()[1:]
    # Docker 20.10 puts its isolation chain first after a restart; it only drops. What counts
    # is that DOCKER-USER comes before the first rule that lets a packet on to a container.
    passing = [index for index, rule in enumerate(forward)
               if rule.endswith(("-j ACCEPT", "-j DOCKER"))]
    assert "-A FORWARD -j DOCKER-USER" in forward, forward
    assert forward.index("-A FORWARD -j DOCKER-USER") < min(passing, default=len(forward))
    chain = host.check_output("iptables -S DOCKER-USER")
    assert "-m conntrack --ctstate NEW -j DROP" in chain or \
        role_vars["ufw_default_incoming"] != "deny"
