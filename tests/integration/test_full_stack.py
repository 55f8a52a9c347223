"""The full stack on one machine (fs1), as the one host of a small team would run it: the
sandbox's base roles (hardening, ufw, fail2ban), the data tier (postgres, pgbouncer, backups),
the web tier (nginx, certbot with a real certificate from Debian's Pebble on fs2) and the app
tier (docker, and the app role's two instances nginx sends to, deployed with a migration that
the database's backup comes before) together.

Each role's own module proves it alone; this one proves they live together: the second run
changes nothing (a breaker found postgres installing cron after hardening had tightened cron's
modes, so every second run changed /etc/crontab again), a converged no-op costs one round trip,
and every role's spec passes.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.sandbox.acme import AcmeServer, start_acme_server
from tests.integration.app_images import IMAGE, build_image_archive
from tests.integration.conftest import (
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
    write_test_inventory,
)

pytestmark = pytest.mark.integration

DATA_TIER: dict[str, Any] = {
    "host_secrets": {"app_password": {"kind": "password", "length": 32}},
    "postgres_roles": [{"name": "app", "password": {"secret": "host:app_password"}}],
    "postgres_databases": [{"name": "app", "owner": "app"}],
    "postgres_maintenance": True,
}
SITE_NAME = "stack.example.test"
#: Docker beside hardening (which must leave forwarding on) and the app's two instances nginx
#: sends to, given the database's password as a file; a deploy backs the database up on this
#: host, then runs the migration (which leaves its version in a volume), then moves them.
def app_tier(archives: Path, host: str) -> dict[str, Any]:
    return {"hardening_ip_forward": True, "app_name": "testapp", "app_image": IMAGE,
            "app_archive_dir": str(archives),
            "app_secrets": {"DB_PASSWORD": {"secret": "host:app_password"}},
            "app_volumes": ["/srv/testapp/data:/data"],
            "app_migration_command": "/bin/busybox sh -c 'cat /www/index.html >> /data/migrated'",
            "app_backup_host": host, "app_health_timeout": 20}


def web_tier(acme: AcmeServer) -> dict[str, Any]:
    return {"ufw_rules": [{"port": 80, "proto": "tcp"}, {"port": 443, "proto": "tcp"}],
            "nginx_upstreams": [{"name": "app", "app": "testapp"}],
            "nginx_sites": [{"name": "stack", "server_names": [SITE_NAME], "certificate": "acme",
                             "locations": [{"path": "/", "upstream": "app"}]}],
            "certbot_email": "ops@example.org", "certbot_server": acme.directory_url,
            "certbot_server_ca": acme.api_ca_pem}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sandbox.Machine, Path]]:
    archives = tmp_path_factory.mktemp("releases")
    for version in ("v1", "v2"):
        build_image_archive(archives, version)
    with own_machines(tmp_path_factory, "fs", count=2) as ((machine, pebble), inventory):
        acme = start_acme_server(pebble, {SITE_NAME: machine.address})
        (inventory.parent / "pebble-root.pem").write_text(acme.root_pem())
        write_test_inventory([machine], inventory)
        edit_inventory(inventory, lambda data: data["hosts"][machine.name].update(
            roles=["postgres", "pgbouncer", "backups", "docker", "app", "nginx", "certbot"],
            vars={**DATA_TIER, **web_tier(acme), **app_tier(archives, machine.name)}))
        yield machine, inventory


def provision(stack: tuple[sandbox.Machine, Path], *arguments: str) -> Invocation:
    machine, inventory = stack
    return invoke_task("provision", "--host", machine.name, *arguments, inventory=inventory,
                       report=inventory.parent / "report.json")


def outcome(run: Invocation, name: str) -> tuple[int, int]:
    result = run.report["hosts"][name]
    return result["changed"], result["round_trips"]


def test_the_stack_converges_and_its_second_run_changes_nothing(
        stack: tuple[sandbox.Machine, Path]) -> None:
    machine, _ = stack
    first = provision(stack)
    assert first.exit_code == 0, first.output

    second = provision(stack)

    assert second.exit_code == 0, second.output
    changed = [step["label"] for step in second.report["hosts"][machine.name]["steps"]
               if step["status"] == "changed"]
    assert changed == [], second.output
    assert root_output(machine, "stat -c %a /etc/crontab").strip() == "600"


def test_the_site_serves_its_certificate_from_pebble(stack: tuple[sandbox.Machine, Path]) -> None:
    machine, inventory = stack
    context = ssl.create_default_context(cafile=str(inventory.parent / "pebble-root.pem"))

    with socket.create_connection((machine.address, 443), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=SITE_NAME) as tls:
        served = tls.getpeercert() or {}

    assert ("DNS", SITE_NAME) in served.get("subjectAltName", ()), served


def site_answer(inventory: Path, machine: sandbox.Machine) -> str:
    """The body of GET / on the site, through nginx, its certificate checked against Pebble."""
    answer = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "10",
         "--cacert", str(inventory.parent / "pebble-root.pem"),
         "--resolve", f"{SITE_NAME}:443:{machine.address}", f"https://{SITE_NAME}/"],
        capture_output=True, text=True, check=False)
    assert answer.returncode == 0, answer
    return answer.stdout.strip()


def test_deploys_back_the_database_up_before_the_migration_and_serve_through_the_site(
        stack: tuple[sandbox.Machine, Path]) -> None:
    machine, inventory = stack
    deploy = ("deploy", "--host", machine.name)
    report = inventory.parent / "deploy.json"

    first = invoke_task(*deploy, "--version", "v1", inventory=inventory, report=report)
    second = invoke_task(*deploy, "--version", "v2", inventory=inventory, report=report)

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    for run in (first, second):
        assert run.output.index(f"backing up the database on {machine.name}") < \
            run.output.index("running the migration") < run.output.index("instance 8000:")
    archives = root_output(machine, "ls /var/backups/postgresql 2>/dev/null; "
                                    "/usr/local/sbin/provisioner-backup list")
    assert archives.count("-ondemand") >= 2, archives
    assert root_output(machine, "cat /srv/testapp/data/migrated").split() == ["v1", "v2"]
    assert {site_answer(inventory, machine) for _ in range(4)} == {"v2"}
    assert root_output(machine, "cat /proc/sys/net/ipv4/ip_forward").strip() == "1"


def test_a_converged_no_op_costs_one_round_trip(stack: tuple[sandbox.Machine, Path]) -> None:
    machine, _ = stack

    again = provision(stack)

    assert outcome(again, machine.name) == (0, 1), again.output + str(again.report)[-4000:]


def test_every_roles_spec_passes_on_the_stack(stack: tuple[sandbox.Machine, Path]) -> None:
    machine, inventory = stack

    verified = invoke_task("verify", "--host", machine.name, inventory=inventory,
                           report=inventory.parent / "verify.json", timeout=600)

    assert verified.exit_code == 0, verified.output[-3000:]
