"""Real sandbox machines: they boot, take SSH with checked host keys, network, run Docker, cannot
change the controller's kernel settings, and go away cleanly.

Runs once per supported suite and once on the minimal variant, with prefixes of its own
(`sbtest`, `sbtrix`, `sbmin`) so it never touches the `sandbox1..N` machines of a demo running
beside it. Needs root; the first run also builds the base images (about a minute each).
"""

import http.client
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner import sandbox
from provisioner.sandbox import cgroups
from provisioner.sandbox.machines import find_leader
from provisioner.sandbox.network import host_interface, link_exists
from provisioner.sandbox.state import load_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox machines need root"),
]

IMAGE_PREFIXES = {
    ("bookworm", "standard"): "sbtest",
    ("trixie", "standard"): "sbtrix",
    ("bookworm", "minimal"): "sbmin",
}
"""(suite, variant) of each image under test, and the machine prefix its machines get."""


def prefix_of(machine: sandbox.Machine) -> str:
    return IMAGE_PREFIXES[(machine.suite, machine.variant)]


@pytest.fixture(scope="module", params=list(IMAGE_PREFIXES),
                ids=["bookworm", "trixie", "bookworm-minimal"])
def booted(request: pytest.FixtureRequest) -> Iterator[list[sandbox.Machine]]:
    suite, variant = request.param
    machines = sandbox.up(count=2, suite=suite, prefix=IMAGE_PREFIXES[suite, variant],
                          variant=variant)
    yield machines
    sandbox.down(names=[machine.name for machine in machines])


def ssh(
    machine: sandbox.Machine, command: str, user: str = "admin"
) -> subprocess.CompletedProcess[str]:
    # LogLevel INFO first (ssh keeps the first value it reads): a login that fails then says why
    # ("Connection closed by", "Received disconnect"), which ERROR keeps quiet about.
    argv = sandbox.ssh_argv(machine, user=user)
    return subprocess.run(
        [argv[0], "-o", "LogLevel=INFO", *argv[1:], command],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_up_boots_the_requested_machines_with_distinct_addresses(
    booted: list[sandbox.Machine],
) -> None:
    prefix = prefix_of(booted[0])
    assert [machine.name for machine in booted] == [f"{prefix}1", f"{prefix}2"]
    assert len({machine.address for machine in booted}) == 2


def test_admin_logs_in_with_the_sandbox_key_and_has_passwordless_sudo(
    booted: list[sandbox.Machine],
) -> None:
    result = ssh(booted[0], "sudo -n true && id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "admin"


def test_an_unknown_host_key_is_refused(booted: list[sandbox.Machine]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix="known_hosts") as empty:
        argv = [
            f"UserKnownHostsFile={empty.name}" if arg.startswith("UserKnownHostsFile=") else arg
            for arg in sandbox.ssh_argv(booted[0])
        ]
        result = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "host key" in result.stderr.lower()


def test_known_hosts_holds_each_machines_own_host_keys(booted: list[sandbox.Machine]) -> None:
    known = Path(sandbox.KNOWN_HOSTS_PATH).read_text().splitlines()
    keys = {
        machine.address: {line.split()[2] for line in known if line.split()[0] == machine.address}
        for machine in booted
    }
    assert all(keys.values())
    assert not keys[booted[0].address] & keys[booted[1].address]


def test_each_machine_has_its_own_machine_id_and_hostname(booted: list[sandbox.Machine]) -> None:
    identities = [ssh(machine, "hostname; cat /etc/machine-id").stdout for machine in booted]
    assert identities[0].split()[0] == booted[0].name
    assert identities[0].split()[1] != identities[1].split()[1]


def test_one_machine_reaches_another_on_port_22(booted: list[sandbox.Machine]) -> None:
    probe = f"timeout 5 bash -c 'exec 3<>/dev/tcp/{booted[1].address}/22; head -c 8 <&3'"
    assert ssh(booted[0], probe).stdout.startswith("SSH-2.0")


def test_apt_update_works_inside_a_machine(booted: list[sandbox.Machine]) -> None:
    result = ssh(booted[0], "sudo -n apt-get update -q")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_machine_runs_the_requested_debian_release(booted: list[sandbox.Machine]) -> None:
    codename = ssh(booted[0], ". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
    assert codename == booted[0].suite


def test_systemd_reports_the_machine_booted_with_no_failed_unit(
    booted: list[sandbox.Machine],
) -> None:
    for machine in booted:
        result = ssh(machine, "systemctl is-system-running; systemctl --failed --no-legend")
        assert result.stdout.strip() == "running", result.stdout


def test_each_machine_runs_in_cgroups_of_its_own(booted: list[sandbox.Machine]) -> None:
    # Machines sharing one cgroup tree removed each other's unit cgroups: degraded boots.
    for machine in booted:
        leader = find_leader(machine.pid)
        lines = Path(f"/proc/{leader}/cgroup").read_text().splitlines()  # seen from the host
        tracking = [line for line in lines if "name=systemd:" in line or line.startswith("0::")]
        assert tracking, lines
        assert all(f"/{cgroups.SANDBOX_GROUP}/{machine.name}/payload/" in line
                   for line in tracking), lines


def test_the_security_archive_is_not_configured_yet(booted: list[sandbox.Machine]) -> None:
    result = ssh(booted[0], "cat /etc/apt/sources.list.d/*.sources")
    assert "-updates" in result.stdout
    assert "security" not in result.stdout


HOST_WIDE_SETTINGS = ("kernel.printk_ratelimit", "vm.swappiness")
"""Kernel settings that no namespace holds, so a write from inside that got through would show
on the controller; both are harmless to change for a moment. (Not kernel.unprivileged_bpf_disabled:
once set to 1 it stays so until the controller reboots, which is how this test came about.)"""


def controller_setting(key: str) -> str:
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def machine_setting(machine: sandbox.Machine, key: str) -> str:
    return ssh(machine, "cat /proc/sys/" + key.replace(".", "/")).stdout.strip()


@contextmanager
def controller_setting_kept(key: str) -> Iterator[str]:
    """Yield the controller's value of key and put it back afterwards if a machine changed it."""
    before = controller_setting(key)
    try:
        yield before
    finally:
        if controller_setting(key) != before:
            Path("/proc/sys", *key.split(".")).write_text(before + "\n")


@pytest.mark.parametrize("key", HOST_WIDE_SETTINGS)
def test_a_host_wide_kernel_setting_cannot_be_changed_from_inside_a_machine(
    booted: list[sandbox.Machine], key: str,
) -> None:
    with controller_setting_kept(key) as before:
        write = ssh(booted[0], f"sudo sysctl -w {key}={int(before) + 1}")
        after = controller_setting(key)
    assert after == before
    assert write.returncode != 0
    assert machine_setting(booted[0], key) == before


def test_network_settings_are_the_machines_own_and_stay_writable(
    booted: list[sandbox.Machine],
) -> None:
    key = "net.ipv4.conf.all.log_martians"
    with controller_setting_kept(key) as before:
        wanted = "0" if before == "1" else "1"
        write = ssh(booted[0], f"sudo sysctl -w {key}={wanted}")
        after = controller_setting(key)
    assert write.returncode == 0, write.stderr
    assert machine_setting(booted[0], key) == wanted
    assert after == before


DOCKER_SERVICE_PORT = 9999
SERVE_BUSYBOX_FROM_DOCKER = f"""\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# Debian 13 ships the docker command in its own package, which docker.io only recommends.
cli=$(apt-cache show docker-cli >/dev/null 2>&1 && echo docker-cli || true)
apt-get install -y -q --no-install-recommends docker.io $cli busybox-static >/dev/null
image=$(mktemp -d)
mkdir "$image/bin" "$image/www"
cp /bin/busybox "$image/bin/busybox"
echo served-by-docker > "$image/www/index.html"
tar -C "$image" -c . | docker import - sandbox-httpd:test >/dev/null
docker run -d --name sandbox-httpd -p 0.0.0.0:{DOCKER_SERVICE_PORT}:8080 sandbox-httpd:test \\
    /bin/busybox httpd -f -p 8080 -h /www >/dev/null
"""
"""No registry can be reached, so the image is a static busybox imported from a tarball."""


def fetch_until_answered(address: str, port: int, attempts: int = 50) -> str:
    """The body of GET / at address:port, retried while the container's server is starting.

    http.client rather than urllib: urllib would honour a proxy from the environment, and tests
    talk to sandbox machines only.
    """
    for attempt in range(attempts):
        connection = http.client.HTTPConnection(address, port, timeout=2)
        try:
            connection.request("GET", "/")
            return connection.getresponse().read().decode()
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
        finally:
            connection.close()
    raise AssertionError("unreachable")


def test_docker_in_a_machine_runs_a_container_that_publishes_a_port(
    booted: list[sandbox.Machine],
) -> None:
    started = ssh(booted[1], f"sudo sh -c {shlex.quote(SERVE_BUSYBOX_FROM_DOCKER)}")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert fetch_until_answered(booted[1].address, DOCKER_SERVICE_PORT) == "served-by-docker\n"
    finally:
        # A running container holds up the machine's poweroff by Docker's 10 s stop timeout.
        ssh(booted[1], "sudo docker rm -f sandbox-httpd")


def test_only_standard_machines_come_with_kmod_and_etc_modprobe_d(
    booted: list[sandbox.Machine],
) -> None:
    found = ssh(booted[0], "dpkg-query -W -f='${Status}' kmod 2>/dev/null; ls -d /etc/modprobe.d")
    standard = booted[0].variant == "standard"
    assert ("install ok installed" in found.stdout) == standard
    assert ("/etc/modprobe.d" in found.stdout) == standard


def test_up_again_keeps_the_running_machines(booted: list[sandbox.Machine]) -> None:
    again = sandbox.up(count=2, suite=booted[0].suite, prefix=prefix_of(booted[0]),
                       variant=booted[0].variant)
    assert [(machine.name, machine.pid) for machine in again] == [
        (machine.name, machine.pid) for machine in booted
    ]


def test_down_removes_the_machines_veths_and_state_entries(
    booted: list[sandbox.Machine],
) -> None:
    names = [machine.name for machine in booted]
    sandbox.down(names=names)
    sandbox.down(names=names)
    assert not {machine.name for machine in sandbox.list_machines()} & set(names)
    assert not {machine.name for machine in load_state().machines} & set(names)
    assert not any(link_exists(host_interface(name)) for name in names)
    assert not any(machine.root.exists() for machine in booted)
    assert not any(path.exists() for name in names for path in cgroups.machine_cgroups(name))
