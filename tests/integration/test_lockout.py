"""The no-lockout and secrets promises tried the way they broke: a fail2ban jail that does not
exempt the controller, changes that end the login, a login that goes dead mid-run, late
commands, an interrupted run, a secret in a template.

Its own machine (lk1), converged first with the base roles, fail2ban's sshd jail at maxretry 3
and the controller NOT in its ignore list: every refused login the tool makes counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from provisioner import sandbox
from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.run.safeguards import Arming, arm_action, disarm_action, revert_now_action
from provisioner.step import Safeguard
from provisioner.transport.connection import Connection
from tests.integration.conftest import (
    CONTROLLER_ADDRESS,
    PROJECT_ROOT,
    TEST_ROLES,
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
)

pytestmark = pytest.mark.integration



@dataclass(frozen=True)
class Guarded:
    machine: sandbox.Machine
    inventory: Path

    def invoke(self, *arguments: str, timeout: int = 600) -> Invocation:
        return invoke_task(*arguments, inventory=self.inventory, timeout=timeout,
                           report=self.inventory.parent / "report.json",
                           environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES)})

    def ssh(self, command: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        return admin_ssh(self.machine, command, timeout)

    def config(self) -> HostConfig:
        ssh = SshSettings(sandbox.KEY_PATH, sandbox.KNOWN_HOSTS_PATH, False, None, 10, 60, None,
                          control_persist=0)
        return HostConfig(self.machine.name, self.machine.address, 22, "admin", (), (), {}, ssh)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    with own_machines(tmp_path_factory, "lk", variant="standard") as ((machine,), inventory):
        # ufw's SSH rate limit is not what these tests are about; fail2ban is, with no exemption.
        edit_inventory(inventory, lambda data: data["defaults"]["vars"].update(
            {"ufw_ssh_unlimited_sources": [CONTROLLER_ADDRESS], "fail2ban_maxretry": 3}))
        host = Guarded(machine, inventory)
        run = host.invoke("provision")
        assert run.exit_code == 0, run.output
        yield host


def banned(host: Guarded) -> str:
    return host.ssh("sudo fail2ban-client status sshd").stdout


def test_admin_keys_without_the_login_key_are_refused_before_contact(guarded: Guarded) -> None:
    before = guarded.ssh("sudo sha256sum /home/admin/.ssh/authorized_keys").stdout
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(guarded.inventory.parent / "other_key")], check=True)
    assert other.returncode == 0
    other_key = (guarded.inventory.parent / "other_key.pub").read_text().strip()

    run = guarded.invoke("provision", "--set",
                         f'hardening_admin_authorized_keys=["{other_key}"]')

    assert run.exit_code == 2, run.output
    assert "does not hold the key this inventory logs in with" in run.output
    assert "SHA256:" in run.output and "Traceback" not in run.output
    assert guarded.ssh("sudo sha256sum /home/admin/.ssh/authorized_keys").stdout == before


def test_an_account_change_that_ends_the_login_is_reverted_without_a_ban(
        guarded: Guarded) -> None:
    # Three refused proofs within fail2ban's findtime: maxretry 3 would ban unless exempt.
    for _ in range(2):
        run = guarded.invoke("provision", "--roles", "hardening",
                             "--set", "hardening_admin_shell=/bin/nosuchshell")
        assert run.exit_code == 1, run.output
        assert "previous state was restored" in run.output
    run = guarded.invoke("provision", "--roles", "hardening",
                         "--set", 'hardening_sshd_extra_options=["DenyUsers admin"]')
    assert run.exit_code == 1, run.output
    assert "previous state was restored" in run.output

    assert guarded.ssh("getent passwd admin").stdout.strip().endswith(":/bin/bash")
    assert CONTROLLER_ADDRESS not in banned(guarded)
    ignored = guarded.ssh("sudo fail2ban-client get sshd ignoreip").stdout
    assert CONTROLLER_ADDRESS not in ignored  # the exemption ended with the arming
    assert guarded.invoke("provision").exit_code == 0


def test_a_command_sent_into_a_dead_login_fails_the_host_and_is_never_delivered(
        guarded: Guarded) -> None:
    data = yaml.safe_load(guarded.inventory.read_text())
    data["hosts"][guarded.machine.name]["roles"] = ["deadlink"]
    data["hosts"][guarded.machine.name]["groups"] = []
    inventory = guarded.inventory.parent / "deadlink.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.monotonic()

    run = Guarded(guarded.machine, inventory).invoke("provision", timeout=300)

    assert run.exit_code == 1, run.output
    assert "went dead" in run.output or "stopped answering" in run.output, run.output
    time.sleep(max(0.0, 70 - (time.monotonic() - started)))  # the drop is lifted at 60 s
    assert guarded.ssh("sudo ls /root").returncode == 0
    assert "stale-command-marker" not in guarded.ssh("sudo ls /root").stdout


def test_a_revert_or_disarm_acts_only_on_its_own_arming(guarded: Guarded) -> None:
    safeguard = Safeguard("test-arming", undo="touch /root/reverted-by-test", timeout=300)
    first, second = Arming.new(safeguard, 0), Arming.new(safeguard, 0)
    login = Connection(guarded.config())
    try:
        assert login.run_script(arm_action(first)).exit_code == 0
        assert login.run_script(arm_action(second)).exit_code == 0
        late = login.run_script(revert_now_action(first) + "; " + disarm_action(first))
        timer = login.run_script("systemctl is-active provisioner-revert-test-arming.timer; "
                                 "ls /root").stdout
        assert "no longer in place" in late.stdout
        assert timer.startswith("active") and "reverted-by-test" not in timer
        login.run_script(disarm_action(second))
    finally:
        login.close()


def test_a_revert_timer_fires_when_it_says(guarded: Guarded) -> None:
    safeguard = Safeguard("test-timer", undo="date +%s.%N > /root/timer-fired", timeout=5)
    login = Connection(guarded.config())
    try:
        arming = Arming(safeguard, "timer-test", 0)  # shorter than runs may ask: the engine
        armed_at = float(login.run_script(  # refuses under 120 s, this tests the timer alone
            f"date +%s.%N; {arm_action(arming)}").stdout.split()[0])
        time.sleep(9)
        fired_at = float(login.run_script("cat /root/timer-fired").stdout)
    finally:
        login.close()
    assert 4.5 <= fired_at - armed_at <= 6.5


def test_a_run_killed_before_its_proof_is_reverted_and_redone_by_the_next(
        guarded: Guarded) -> None:
    command = [sys.executable, "-m", "invoke", "provision", "--roles", "hardening", "--set",
               'hardening_sshd_extra_options=["AllowTcpForwarding local"]',
               "--inventory", str(guarded.inventory)]
    killed = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    for line in killed.stdout:
        if "changed  template /etc/ssh/sshd_config" in line:
            killed.kill()  # after the change, before its reload and proof
            break
    killed.wait(timeout=60)
    assert "allowtcpforwarding local" in guarded.ssh("sudo grep -i AllowTcp /etc/ssh/sshd_config"
                                                     ).stdout.lower()

    run = guarded.invoke("provision", "--roles", "hardening")

    assert run.exit_code == 0, run.output
    assert "which an earlier run left unproven" in run.output
    assert "allowtcpforwarding local" not in guarded.ssh("sudo sshd -T").stdout.lower()
    timers = guarded.ssh("systemctl list-timers --all --no-legend 'provisioner-revert-*'")
    assert "provisioner-revert" not in timers.stdout
    assert guarded.invoke("provision", "--roles", "hardening").exit_code == 0


def test_a_secret_in_a_template_reaches_the_host_while_output_and_report_mask_it(
        guarded: Guarded) -> None:
    data = yaml.safe_load(guarded.inventory.read_text())
    data["defaults"]["vars"]["hardening_legal_notice"] = {"secret": "env:LEGAL_NOTICE"}
    inventory = guarded.inventory.parent / "secret.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    report = guarded.inventory.parent / "secret-report.json"
    notice = "Authorised use only; ticket s3cr3t-9f2c"
    command = [sys.executable, "-m", "invoke", "provision", "--roles", "hardening", "--diff",
               "--report", str(report), "--inventory", str(inventory)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=False, timeout=600, env={**os.environ, "LEGAL_NOTICE": notice})

    assert done.returncode == 0, done.stdout + done.stderr
    assert notice in guarded.ssh("cat /etc/issue.net").stdout
    assert notice not in done.stdout + done.stderr and notice not in report.read_text()
    assert "+***" in done.stdout
    assert guarded.invoke("provision", "--roles", "hardening").exit_code == 0  # and back
