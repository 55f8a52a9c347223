"""fail2ban spec: the service runs with the sshd and recidive jails and the inventory's limits."""

from __future__ import annotations

from typing import Any

import pytest


def test_fail2ban_is_running_and_enabled(host: Any) -> None:
    service = host.service("fail2ban")
    assert service.is_running and service.is_enabled


def test_sshd_jail_is_active(host: Any) -> None:
    assert "Status for the jail: sshd" in host.check_output("fail2ban-client status sshd")


def test_recidive_jail_follows_its_switch(host: Any, role_vars: dict[str, Any]) -> None:
    jails = host.check_output("fail2ban-client status")
    assert ("recidive" in jails) == role_vars["fail2ban_recidive_enabled"]


@pytest.mark.parametrize("setting", ["bantime", "findtime", "maxretry"])
def test_sshd_jail_uses_the_inventory_limits(host: Any, role_vars: dict[str, Any],
                                            setting: str) -> None:
    value = host.check_output(f"fail2ban-client get sshd {setting}")
    assert value.strip() == str(role_vars[f"fail2ban_{setting}"])


def test_admin_networks_are_never_banned(host: Any, role_vars: dict[str, Any]) -> None:
    ignored = host.check_output("fail2ban-client get sshd ignoreip")
    for network in role_vars["fail2ban_ignoreip"]:
        assert network.split("/")[0] in ignored


def test_sshd_jail_reads_the_journal_when_configured(host: Any,
                                                    role_vars: dict[str, Any]) -> None:
    status = host.check_output("fail2ban-client status sshd")
    if role_vars["fail2ban_backend"] == "systemd":
        assert "Journal matches" in status
