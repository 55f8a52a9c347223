"""Connections: host keys verified by default, trust-on-first-use only when asked, jump hosts.

These run before the machines are provisioned and only read from them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from provisioner.content.roles import available_roles
from provisioner.inventory.loader import load_inventory
from provisioner.transport.kept_logins import open_connection
from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.integration


def test_facts_describe_the_sandbox_machine(machines: Sandbox) -> None:
    run = machines.invoke("facts", "--host", "it1")
    assert run.exit_code == 0, run.output
    assert re.search(r"virtualization\s+systemd-nspawn", run.output), run.output
    assert re.search(r"OpenSSH\s+\d+\.\d+", run.output), run.output


def test_unknown_host_key_is_refused_with_advice(machines: Sandbox, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    run = machines.invoke("facts", "--host", "it1",
                          inventory=machines.variant("strict.yml", known_hosts=str(empty)))
    assert run.exit_code == 2
    assert "is not in" in run.output and "trust_on_first_use" in run.output
    assert "Traceback" not in run.output


def test_trust_on_first_use_records_the_key_then_it_is_verified(machines: Sandbox,
                                                               tmp_path: Path) -> None:
    recorded = tmp_path / "known_hosts"
    first = machines.variant("tofu.yml", known_hosts=str(recorded), trust_on_first_use=True)
    assert machines.invoke("facts", "--host", "it1", inventory=first).exit_code == 0
    assert machines.target.address in recorded.read_text()
    strict = machines.variant("strict-after.yml", known_hosts=str(recorded))
    assert machines.invoke("facts", "--host", "it1", inventory=strict).exit_code == 0


def test_changed_host_key_is_refused_even_with_trust_on_first_use(machines: Sandbox,
                                                                 tmp_path: Path) -> None:
    forged = tmp_path / "known_hosts"
    real = Path(machines.inventory.read_text().split("known_hosts: ")[1].split()[0]).read_text()
    peer_lines = [line for line in real.splitlines() if line.startswith(machines.peer.address)]
    forged.write_text("".join(line.replace(machines.peer.address, machines.target.address, 1)
                              + "\n" for line in peer_lines))
    run = machines.invoke("facts", "--host", "it1", inventory=machines.variant(
        "forged.yml", known_hosts=str(forged), trust_on_first_use=True))
    assert run.exit_code == 2
    assert "does not match" in run.output
    assert re.search(r"SHA256:[A-Za-z0-9+/]{43}\b", run.output), run.output
    assert f"ssh-keygen -R '{machines.target.address}' -f {forged}" in run.output


def test_host_is_reached_through_a_jump_host(machines: Sandbox) -> None:
    through_peer = machines.variant("jump.yml", jump_host=f"admin@{machines.peer.address}:22")
    run = machines.invoke("facts", "--host", "it1", inventory=through_peer)
    assert run.exit_code == 0, run.output
    assert re.search(rf"hostname\s+{machines.target.name}\b", run.output), run.output


PASSWORD_USER = (
    "sudo useradd --create-home --shell /bin/bash --groups sudo ops && "
    "echo 'ops:ops-sudo-password' | sudo chpasswd && sudo mkdir -p /home/ops/.ssh && "
    "sudo cp /home/admin/.ssh/authorized_keys /home/ops/.ssh/ && "
    "sudo chown -R ops:ops /home/ops/.ssh"
)


@pytest.fixture(scope="module")
def password_sudo_user(machines: Sandbox) -> str:
    """A login user on the peer whose sudo asks for a password (Debian's default %sudo rule)."""
    created = machines.ssh(machines.peer, PASSWORD_USER)
    assert created.returncode == 0, created.stderr
    return "ops"


def sudo_variant(machines: Sandbox, name: str, variable: str) -> Path:
    data = yaml.safe_load(machines.inventory.read_text())
    data["hosts"]["it2"]["user"] = "ops"
    data["hosts"]["it2"]["ssh"] = {"sudo_password": {"secret": f"env:{variable}"}}
    path = machines.inventory.parent / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_sudo_with_a_password_from_a_secret_reference(machines: Sandbox, password_sudo_user: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SUDO_PASSWORD", "ops-sudo-password")
    run = machines.invoke("provision", "--host", "it2", "--check", "--roles", "ufw",
                          inventory=sudo_variant(machines, "sudo.yml", "TEST_SUDO_PASSWORD"))
    assert run.exit_code == 0, run.output
    assert "ops-sudo-password" not in run.output


def test_wrong_sudo_password_is_a_clear_failure(machines: Sandbox, password_sudo_user: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SUDO_PASSWORD", "wrong")
    run = machines.invoke("provision", "--host", "it2", "--check", "--roles", "ufw",
                          inventory=sudo_variant(machines, "sudo-wrong.yml", "TEST_SUDO_PASSWORD"))
    assert run.exit_code == 1
    assert "refused to run commands as root" in run.output
    assert "Traceback" not in run.output


def test_no_root_shell_is_kept_where_sudo_asks_for_a_password(
        machines: Sandbox, password_sudo_user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SUDO_PASSWORD", "ops-sudo-password")
    inventory = sudo_variant(machines, "sudo-kept.yml", "TEST_SUDO_PASSWORD")
    config = load_inventory(inventory, available_roles()).hosts["it2"]
    parents = []
    for _ in range(2):
        connection = open_connection(config)
        parents.append(connection.run_script("id -u; echo $PPID").stdout)
        connection.close()

    assert parents[0].split()[0] == parents[1].split()[0] == "0"
    assert parents[0] != parents[1]  # a new sudo each time: nobody skips the password
