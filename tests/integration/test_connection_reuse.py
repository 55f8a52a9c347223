"""Kept logins: a run reuses the login an earlier run left open, and never depends on it.

These run before the machines are provisioned; their provision runs are check runs, which change
nothing on the hosts.
"""

from __future__ import annotations

import os
import shlex
import socket
import struct
import time
from pathlib import Path

import pytest
import yaml

from provisioner.content.roles import available_roles
from provisioner.errors import ConnectError
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.loader import load_inventory
from provisioner.transport.kept_logins import keeper_socket, open_connection
from provisioner.transport.remote import Result
from tests.integration.conftest import CONTROLLER_ADDRESS, Invocation, Sandbox

pytestmark = pytest.mark.integration


def check_run(machines: Sandbox, inventory: Path | None = None) -> Invocation:
    run = machines.invoke("provision", "--host", "it1", "--check", inventory=inventory)
    assert run.exit_code == 0, run.output
    return run


def connection(run: Invocation) -> str:
    return str(run.report["hosts"]["it1"]["connection"])


def logins_seen_by(machines: Sandbox) -> int:
    """sshd's accepted logins on it1 so far, this query's own login included.

    Matched by the message, not by the program that logged it: OpenSSH 10 (Debian 13) logs it
    from its per-connection sshd-session, OpenSSH 9 from a forked sshd.
    """
    done = machines.ssh(machines.target, "sudo journalctl --no-pager -q -o cat | "
                                         "grep -c '^Accepted publickey for '")
    return int(done.stdout.strip())


def hex_address(address: str) -> str:
    """An IPv4 address as /proc/net/tcp prints it: the 32-bit value in the kernel's byte order."""
    return f"{struct.unpack('=I', socket.inet_aton(address))[0]:08X}"


def end_logins_from_controller(machines: Sandbox) -> None:
    """Kill, on it1, every process holding an SSH connection that comes from the controller.

    The per-login processes are the ones owning the TCP connection, whatever OpenSSH calls them
    (`sshd: admin@notty` in 9, `sshd-session: admin@notty` in 10). Read from /proc, so it needs
    neither ss nor fuser on the host. This ends the query's own login too, so its exit status
    says nothing.
    """
    script = (
        f"inodes=$(awk -v peer={hex_address(CONTROLLER_ADDRESS)}: "
        "'$2 ~ /:0016$/ && index($3, peer) && $4 == \"01\" {print $10}' "
        "/proc/net/tcp /proc/net/tcp6); "
        "for inode in $inodes; do "
        "find /proc/[0-9]*/fd -lname \"socket:\\[$inode\\]\" 2>/dev/null | cut -d/ -f3; "
        "done | sort -u | xargs -r kill"
    )
    machines.ssh(machines.target, f"sudo sh -c {shlex.quote(script)}")


def keeper_path(inventory: Path) -> Path:
    config = load_inventory(inventory, available_roles()).hosts["it1"]
    path = keeper_socket(config)
    assert path is not None
    return path


def it1(inventory: Path) -> HostConfig:
    return load_inventory(inventory, available_roles()).hosts["it1"]


def kept_run(config: HostConfig, script: str, timeout: float | None = None) -> Result:
    """One script through it1's keeper, as a run's only round trip."""
    connection = open_connection(config)
    try:
        return connection.run_script(script, timeout)
    finally:
        connection.close()


def test_a_second_run_reuses_the_login_and_the_host_sees_no_new_login(machines: Sandbox) -> None:
    machines.invoke("disconnect", "--host", "it1")
    first = check_run(machines)
    before = logins_seen_by(machines)

    second = check_run(machines)

    assert (connection(first), connection(second)) == ("new", "reused")
    assert logins_seen_by(machines) == before + 1  # only the counting query's own login


def test_control_persist_zero_logs_in_afresh_for_every_run(machines: Sandbox) -> None:
    direct = machines.variant("direct.yml", control_persist=0)
    machines.invoke("disconnect", "--host", "it1")

    runs = [check_run(machines, direct) for _ in range(2)]

    assert [connection(run) for run in runs] == ["new", "new"]
    assert not keeper_path(direct).exists()


def test_a_kept_login_the_host_dropped_is_replaced_without_failing_the_run(
        machines: Sandbox) -> None:
    check_run(machines)
    end_logins_from_controller(machines)
    time.sleep(0.5)

    run = check_run(machines)

    assert connection(run) == "new"
    assert run.report["hosts"]["it1"]["changed"] > 0  # a real check, not an empty answer


def test_a_kept_login_closes_after_its_persist_time(machines: Sandbox) -> None:
    brief = machines.variant("brief.yml", control_persist=1)
    check_run(machines, brief)
    path = keeper_path(brief)
    assert path.exists()

    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)

    assert not path.exists()
    assert connection(check_run(machines, brief)) == "new"


def test_disconnect_closes_the_kept_login(machines: Sandbox) -> None:
    check_run(machines)

    closed = machines.invoke("disconnect", "--host", "it1")

    assert closed.exit_code == 0 and "closed the kept logins to it1" in closed.output
    assert connection(check_run(machines)) == "new"


def test_an_unreachable_host_through_a_keeper_gets_the_login_error(machines: Sandbox) -> None:
    data = yaml.safe_load(machines.inventory.read_text())
    data["hosts"]["it1"]["port"] = 2
    broken = machines.inventory.parent / "closed-port.yml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))

    run = machines.invoke("facts", "--host", "it1", inventory=broken)

    assert run.exit_code == 2
    assert "Cannot reach it1" in run.output and "Traceback" not in run.output
    log = Path(os.environ["PROVISIONER_RUNTIME_DIR"]) / "keepers.log"
    assert f"it1 ({machines.target.address}:2): login failed: Cannot reach it1" in \
        log.read_text()


def test_runs_through_a_keeper_share_its_root_shell_yet_each_script_starts_clean(
        machines: Sandbox) -> None:
    config = it1(machines.inventory)
    first = kept_run(config, "id -u; echo $PPID; cd /tmp; X=1").stdout.split()

    second = kept_run(config, 'id -u; echo $PPID; pwd; echo "${X:-unset}"').stdout.split()

    assert first[0] == second[0] == "0"
    assert first[1] == second[1]  # the same kept shell started both
    assert second[2:] == ["/home/admin", "unset"]


def test_output_stderr_and_exit_code_come_back_whole_from_the_kept_root_shell(
        machines: Sandbox) -> None:
    result = kept_run(it1(machines.inventory), "echo out; echo err >&2; printf tail; exit 3")

    assert result == Result("out\ntail", "err\n", 3)


def test_a_script_timing_out_in_the_kept_root_shell_fails_alone(machines: Sandbox) -> None:
    config = it1(machines.inventory)
    before = kept_run(config, "echo $PPID").stdout

    with pytest.raises(ConnectError, match="timed out"):
        kept_run(config, "sleep 20", timeout=1)
    after = kept_run(config, "echo $PPID")

    assert after.exit_code == 0 and after.stdout != before  # a new shell took over


def test_a_kept_root_shell_killed_on_the_host_is_replaced_without_failing_the_run(
        machines: Sandbox) -> None:
    config = it1(machines.inventory)
    kept_run(config, "true")
    machines.ssh(machines.target, "sudo pkill -f provisioner-root-shell")
    time.sleep(0.5)

    assert kept_run(config, "echo still here").stdout == "still here\n"


def test_a_process_a_script_left_writing_retires_the_kept_root_shell_without_harm(
        machines: Sandbox) -> None:
    config = it1(machines.inventory)
    shell = kept_run(config, "echo $PPID; (sleep 1; echo late) &").stdout.split()[0]
    time.sleep(2)

    after = [kept_run(config, "echo $PPID").stdout.strip() for _ in range(2)]

    assert "late" not in "".join(after)
    assert after[0] != shell and after[1] != shell  # not the shell the stray output reached
