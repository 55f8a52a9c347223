"""Provisioning fresh sandbox machines end to end, in the order a user would.

it2 stays fresh for the check-mode test and then serves as the outside peer; it1 is converged,
run again (0 changed), verified, probed from the peer, attacked, and fed broken sshd settings.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.integration

#: Content of every file under /etc, the package list, unit states and /etc's directory listings.
#: Login sessions' scopes are left out: where libpam-systemd is installed (the minimal image),
#: every login, the check run's own included, shows up as one more transient session-N.scope.
STATE_PROBE = ("sudo sh -c 'find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum "
               "| sha256sum; dpkg-query -W | sha256sum; systemctl list-unit-files --no-legend "
               "| grep -v \"^session-[0-9]*\\.scope\" | sha256sum; ls -laR /etc | sha256sum'")


def host_state(machines: Sandbox) -> str:
    result = machines.ssh(machines.peer, STATE_PROBE)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_check_mode_on_a_fresh_host_reports_changes_and_changes_nothing(
        machines: Sandbox) -> None:
    before = host_state(machines)
    run = machines.invoke("provision", "--host", "it2", "--check", "--diff")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["it2"]["changed"] > 0
    assert run.report["hosts"]["it2"]["failed"] == 0
    assert host_state(machines) == before


def test_first_run_converges_a_fresh_host(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["it1"]["changed"] > 0
    # The security updates the host lacked are in (the minimal image is built without them):
    # nothing from the security archive is left to upgrade.
    updates = [step["status"] for step in run.report["hosts"]["it1"]["steps"]
               if step["label"].startswith("pending security updates installed")]
    assert updates == ["changed"]
    pending = machines.ssh(machines.target, "apt list --upgradable 2>/dev/null | grep -- -security"
                                            " || true")
    assert pending.stdout.strip() == "", pending.stdout


def test_second_run_changes_nothing(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["it1"]["changed"] == 0, run.report["hosts"]["it1"]


def test_check_mode_on_a_converged_host_reports_nothing_to_change(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1", "--check")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["it1"]["changed"] == 0


def test_a_converged_host_costs_one_round_trip(machines: Sandbox) -> None:
    # Its roles read facts: the facts it gave last run are checked in the same round trip.
    run = machines.invoke("provision", "--host", "it1")
    assert run.report["hosts"]["it1"]["changed"] == 0
    assert run.report["hosts"]["it1"]["round_trips"] == 1


def forge_remembered_memory(machine_name: str) -> None:
    """Make every remembered copy of a machine's facts (one per login the tests used) claim
    1 MiB of RAM, as if the machine had been resized since."""
    entries = Path(os.environ["PROVISIONER_CACHE_DIR"], "facts").glob("*.facts")
    forged = 0
    for entry in entries:
        text = entry.read_text()
        if f"== hostname\n{machine_name}\n" in text:
            entry.write_text(re.sub(r"MemTotal: +\d+", "MemTotal: 1024", text))
            forged += 1
    assert forged


def test_facts_that_changed_since_the_last_run_are_gathered_again_before_deciding(
        machines: Sandbox) -> None:
    forge_remembered_memory(machines.target.name)

    run = machines.invoke("provision", "--host", "it1")
    again = machines.invoke("provision", "--host", "it1")

    assert run.exit_code == 0, run.output
    assert (run.report["hosts"]["it1"]["changed"], run.report["hosts"]["it1"]["round_trips"]) \
        == (0, 2)
    assert again.report["hosts"]["it1"]["round_trips"] == 1  # the real facts were remembered


def test_drifted_files_are_repaired_together_in_one_round_trip(machines: Sandbox) -> None:
    machines.ssh(machines.target, "echo drift | sudo tee -a /etc/issue /etc/issue.net >/dev/null")
    run = machines.invoke("provision", "--host", "it1")
    host = run.report["hosts"]["it1"]
    assert run.exit_code == 0, run.output
    assert host["changed_steps"] == ["banner /etc/issue [controls §12]",
                                     "banner /etc/issue.net [controls §12]"]
    assert host["round_trips"] == 2  # facts and probes, then both writes in one
    banners = machines.ssh(machines.target, "cat /etc/issue /etc/issue.net").stdout
    assert "drift" not in banners


def test_verify_passes_on_the_converged_host(machines: Sandbox) -> None:
    run = machines.invoke("verify", "--host", "it1")
    assert run.exit_code == 0, run.output


def tcp_from_peer(machines: Sandbox, port: int) -> int:
    """Exit code of a 3 s TCP connect from the peer: 0 open, 1 refused, 124 silently dropped."""
    command = f"timeout 3 bash -c '</dev/tcp/{machines.target.address}/{port}'; echo $?"
    return int(machines.ssh(machines.peer, command).stdout.strip().splitlines()[-1])


def test_ssh_is_reachable_from_another_machine(machines: Sandbox) -> None:
    assert tcp_from_peer(machines, 22) == 0


def test_a_closed_port_is_dropped_for_another_machine(machines: Sandbox) -> None:
    assert tcp_from_peer(machines, 8080) == 124


def test_an_allowed_port_passes_the_firewall(machines: Sandbox) -> None:
    # Nothing listens on 80: the firewall lets the SYN through and the kernel refuses it.
    assert tcp_from_peer(machines, 80) == 1


def test_repeated_failed_logins_get_the_peer_banned(machines: Sandbox) -> None:
    # Each attempt is bounded: once the ban lands, a connection caught half-way through its
    # handshake would otherwise wait for TCP to give up (minutes) and time the test out.
    attempts = (f"sleep 30; for i in 1 2 3 4; do timeout 10 ssh -o BatchMode=yes "
                f"-o ConnectTimeout=3 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                f"nosuchuser@{machines.target.address} true 2>/dev/null; sleep 1; done; true")
    machines.ssh(machines.peer, attempts, timeout=120)
    banned = ""
    for _ in range(20):
        banned = machines.ssh(machines.target, "sudo fail2ban-client status sshd").stdout
        if machines.peer.address in banned:
            break
        time.sleep(1)
    try:
        assert machines.peer.address in banned
        assert tcp_from_peer(machines, 22) != 0
    finally:
        machines.ssh(machines.target, "sudo fail2ban-client unban --all")


def test_invalid_sshd_setting_is_rejected_before_it_goes_live(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1", "--roles", "hardening",
                          "--set", 'hardening_sshd_extra_options=["NoSuchOption yes"]')
    assert run.exit_code == 1
    assert "validation failed" in run.output
    assert machines.ssh(machines.target, "true").returncode == 0
    assert "nosuchoption" not in machines.ssh(machines.target, "sudo sshd -T").stdout.lower()


def test_sshd_setting_that_locks_out_the_admin_is_reverted(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1", "--roles", "hardening",
                          "--set", 'hardening_sshd_extra_options=["AllowUsers nobody"]')
    assert run.exit_code == 1
    assert "previous state was restored" in run.output
    assert machines.ssh(machines.target, "true").returncode == 0
    effective = machines.ssh(machines.target, "sudo sshd -T").stdout.lower()
    assert "allowusers nobody" not in effective


def test_host_is_converged_again_after_the_rejected_changes(machines: Sandbox) -> None:
    run = machines.invoke("provision", "--host", "it1")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["it1"]["changed"] == 0, run.report["hosts"]["it1"]


def test_unreachable_host_gets_a_clear_error_and_exit_code_1(machines: Sandbox) -> None:
    broken = machines.inventory.parent / "unreachable.yml"
    text = machines.inventory.read_text().replace(machines.target.address, "10.77.0.250")
    broken.write_text(text)
    run = machines.invoke("provision", "--host", "it1", inventory=broken)
    assert run.exit_code == 1
    assert "Cannot reach it1" in run.output
    assert "Traceback" not in run.output


def test_broken_inventory_is_refused_before_any_host_is_contacted(machines: Sandbox) -> None:
    data = yaml.safe_load(machines.inventory.read_text())
    data["hosts"]["it1"]["colour"] = "red"
    broken = machines.inventory.parent / "broken.yml"
    broken.write_text(yaml.safe_dump(data))
    run = machines.invoke("provision", "--host", "it1", inventory=broken)
    assert run.exit_code == 2
    assert "colour" in run.output and str(broken) in run.output
    assert "Traceback" not in run.output
    assert run.report == {}
