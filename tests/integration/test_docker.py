"""Docker on a real machine (dk1, with hardening and ufw) and a peer (dk2) that tries its ports.

A container publishing 0.0.0.0:8080 is dropped from the peer, and answers it once the inventory's
firewall rules allow the peer; forwarding stays on after ``sysctl --system``; a daemon.json change
restarts Docker once (the container, live-restored, keeps serving) and a second run changes
nothing in one round trip; forwarding switched off by the hardening role is refused before
contact; the specs pass. ``--check`` runs first, on the fresh host. The tests run in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.commands import quote
from tests.integration.conftest import (
    CONTROLLER_ADDRESS,
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

PORT = 8080
#: No registry here: the image is Debian's static busybox, imported from a tarball.
START_CONTAINER = f"""\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends busybox-static >/dev/null
image=$(mktemp -d)
mkdir "$image/bin" "$image/www"
cp /bin/busybox "$image/bin/busybox"
echo served-by-docker > "$image/www/index.html"
tar -C "$image" -c . | docker import - dk-httpd:test >/dev/null
docker run -d --name dk-httpd -p 0.0.0.0:{PORT}:8080 dk-httpd:test \\
    /bin/busybox httpd -f -p 8080 -h /www >/dev/null
"""
#: Run on the peer: the body of GET / on the target's port, or the error (http.client, no
#: proxy from any environment).
FETCH = ("import http.client, sys\n"
         "c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=3)\n"
         "try:\n"
         "    c.request('GET', '/'); print(c.getresponse().read().decode().strip())\n"
         "except OSError as e:\n"
         "    print('error', type(e).__name__)\n")


@dataclass
class Hosts:
    target: sandbox.Machine
    peer: sandbox.Machine
    inventory: Path

    def provision(self, *arguments: str) -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", "--host", "dk1", *arguments, inventory=self.inventory,
                          report=self.inventory.parent / "report.json", timeout=900)
        trips = run.report.get("hosts", {}).get("dk1", {}).get("round_trips")
        print(f"provision dk1 {' '.join(arguments)}: {time.monotonic() - started:.1f} s, "
              f"exit {run.exit_code}, {trips} round trips")
        return run

    def root(self, command: str) -> str:
        return root_output(self.target, command)

    def from_peer(self) -> str:
        """What a client on the peer gets from the target's published port."""
        return root_output(self.peer, f"python3 -c {quote(FETCH)} {self.target.address} "
                                      f"{PORT}").strip()

    def edit_vars(self, **changes: Any) -> None:
        edit_inventory(self.inventory,
                       lambda data: data["hosts"]["dk1"]["vars"].update(changes))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    with own_machines(tmp_path_factory, "dk", count=2) as (booted, inventory):
        target, peer = booted

        def edit(data: dict[str, Any]) -> None:
            plain = data["hosts"]
            data["groups"] = {}  # the peer is only a client, never provisioned
            data["hosts"] = {
                "dk1": {**plain[target.name], "groups": [],
                        "roles": ["hardening", "ufw", "docker"],
                        "vars": {"hardening_ip_forward": True,
                                 "ufw_ssh_unlimited_sources": [CONTROLLER_ADDRESS]}}}

        edit_inventory(inventory, edit)
        yield Hosts(target, peer, inventory)


def test_check_on_the_fresh_host_changes_nothing(hosts: Hosts) -> None:
    run = hosts.provision("--check")
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["dk1"]["changed"] > 0
    assert hosts.root("command -v dockerd || echo none").strip() == "none"
    assert hosts.root("ls /etc/docker 2>/dev/null; echo end").strip() == "end"


def test_first_run_converges(hosts: Hosts) -> None:
    run = hosts.provision()
    assert run.exit_code == 0, run.output
    hosts.root(START_CONTAINER)
    # On the host itself, through loopback (nginx's way in) without Docker's userland proxy.
    assert hosts.root(f"for i in $(seq 50); do busybox wget -q -O - http://127.0.0.1:{PORT}/ "
                      "&& exit 0; sleep 0.2; done; exit 1").strip() == "served-by-docker"


def test_a_port_published_on_every_address_is_dropped_from_another_machine(
        hosts: Hosts) -> None:
    assert hosts.from_peer() == "error TimeoutError"


def test_the_inventorys_firewall_rule_lets_the_peer_in(hosts: Hosts) -> None:
    hosts.edit_vars(ufw_rules=[{"port": PORT, "proto": "tcp", "from": hosts.peer.address}])
    run = hosts.provision()
    assert run.exit_code == 0, run.output
    assert hosts.from_peer() == "served-by-docker"


def test_a_container_address_routed_to_from_another_machine_stays_closed(hosts: Hosts) -> None:
    """The peer may reach port 8080 as published, but routing to the container's own address
    is no published port (no DNAT): the container's 8080 stays closed to it."""
    container = hosts.root("docker inspect -f '{{.NetworkSettings.IPAddress}}' dk-httpd").strip()
    root_output(hosts.peer, f"ip route replace 172.17.0.0/16 via {hosts.target.address}")
    direct = root_output(hosts.peer, f"python3 -c {quote(FETCH)} {container} 8080").strip()
    assert direct == "error TimeoutError"
    assert hosts.from_peer() == "served-by-docker"


def test_forwarding_stays_on_after_sysctl_system(hosts: Hosts) -> None:
    # It exits 1 here: the machine's kernel.* keys are the controller's and read-only.
    hosts.root("sysctl --system >/dev/null 2>&1 || true")
    assert hosts.root("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert hosts.from_peer() == "served-by-docker"


def test_a_daemon_json_change_restarts_docker_once(hosts: Hosts) -> None:
    before = hosts.root("systemctl show -p MainPID --value docker.service").strip()
    hosts.edit_vars(docker_log_max_size="20m")
    run = hosts.provision()
    assert run.exit_code == 0, run.output
    assert run.output.count("docker:restart") == 1, run.output
    assert run.report["hosts"]["dk1"]["changed"] == 2, run.output  # the file and its handler
    assert hosts.root("systemctl show -p MainPID --value docker.service").strip() != before
    assert '"max-size": "20m"' in hosts.root("cat /etc/docker/daemon.json")
    assert hosts.from_peer() == "served-by-docker"  # live-restore kept the container


def test_second_run_changes_nothing_in_one_round_trip(hosts: Hosts) -> None:
    run = hosts.provision()
    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["dk1"]["changed"] == 0, run.output
    assert run.report["hosts"]["dk1"]["round_trips"] == 1, run.output


def test_hardening_switching_forwarding_off_is_refused_before_contact(hosts: Hosts) -> None:
    original = hosts.inventory.read_text()
    hosts.edit_vars(hardening_ip_forward=False)
    try:
        run = hosts.provision()
    finally:
        hosts.inventory.write_text(original)
    assert run.exit_code == 2, run.output
    assert "hardening_ip_forward is false" in run.output
    assert hosts.root("cat /proc/sys/net/ipv4/ip_forward").strip() == "1"


def test_the_verify_specs_pass(hosts: Hosts) -> None:
    run = invoke_task("verify", "--host", "dk1", inventory=hosts.inventory,
                      report=hosts.inventory.parent / "verify.json")
    assert run.exit_code == 0, run.output
