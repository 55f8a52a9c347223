"""provbench spec: the workload's outcome on a host, checked from the outside."""

from __future__ import annotations

from typing import Any

import pytest


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["provbench_packages"]:
        assert host.package(name).is_installed, name


def test_files_are_rendered_with_host_name_and_index(host: Any,
                                                     role_vars: dict[str, Any]) -> None:
    directory = host.file(role_vars["provbench_directory"])
    assert directory.is_directory and directory.user == "root" and directory.mode == 0o755
    hostname = host.check_output("hostname")
    for index in range(role_vars["provbench_file_count"]):
        rendered = host.file(f"{role_vars['provbench_directory']}/file{index}.conf")
        assert rendered.user == "root" and rendered.mode == 0o644
        assert f"index = {index}\n" in rendered.content_string
        assert f"name = {hostname}-file{index}\n" in rendered.content_string


def test_sysctl_drop_in_holds_every_setting(host: Any, role_vars: dict[str, Any]) -> None:
    content = host.file(role_vars["provbench_sysctl_file"]).content_string
    for key, value in role_vars["provbench_sysctls"].items():
        assert f"{key} = {value}\n" in content


@pytest.mark.parametrize("key", ["net.ipv4.tcp_syncookies", "net.ipv4.conf.all.rp_filter"])
def test_network_sysctls_are_applied(host: Any, role_vars: dict[str, Any], key: str) -> None:
    assert host.sysctl(key) == role_vars["provbench_sysctls"][key]


def test_services_are_enabled_and_running(host: Any, role_vars: dict[str, Any]) -> None:
    for unit in role_vars["provbench_services"]:
        service = host.service(unit.removesuffix(".service"))
        assert service.is_enabled and service.is_running, unit


def test_deploy_user_has_shell_home_and_exactly_one_key(host: Any,
                                                        role_vars: dict[str, Any]) -> None:
    user = host.user(role_vars["provbench_user"])
    assert user.exists and user.shell == role_vars["provbench_user_shell"]
    assert host.file(user.home).is_directory
    keys = host.file(f"{user.home}/.ssh/authorized_keys")
    assert keys.mode == 0o600 and keys.user == user.name
    assert keys.content_string == role_vars["provbench_authorized_key"] + "\n"


def test_firewall_is_active_denies_incoming_and_allows_the_ports(
        host: Any, role_vars: dict[str, Any]) -> None:
    verbose = host.check_output("ufw status verbose")
    assert "Status: active" in verbose
    assert f"Default: {role_vars['provbench_ufw_default_incoming']} (incoming)" in verbose
    added = {line for line in host.check_output("ufw show added").splitlines()
             if line.startswith("ufw ")}
    assert added == {f"ufw allow {port}/tcp" for port in role_vars["provbench_ufw_tcp_ports"]}


def test_cron_file_holds_the_daily_job(host: Any, role_vars: dict[str, Any]) -> None:
    cron = host.file(f"/etc/cron.d/{role_vars['provbench_cron_name']}")
    assert cron.user == "root" and cron.mode == 0o644
    assert role_vars["provbench_cron_job"] + "\n" in cron.content_string
