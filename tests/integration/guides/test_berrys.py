"""Berrys_AgentsV2 (seed guide 004) from inventories/berrys.yml: the API gateway on app1 behind
nginx, its database on db1, and the guide's blue/green release and backup-before-migration
procedures, checked from outside while clients keep asking.

What the guide asks, and what this module proves:
- "Prepare Green Environment ... Switch Traffic": a new release starts beside the serving one
  and takes traffic only once healthy. A client asking through nginx (TLS checked against the
  ACME server's root) all through a deploy gets no failed request, the old version until the
  switch and the new one after it, and each instance ends on its other port (blue to green).
- "Roll back immediately if problems detected": a release whose health check fails makes the
  deploy exit non-zero, and every answer during and after it is the old version; no container
  of it is left running.
- "Backup Before Migration ... Verify backup integrity": the deploy's output shows db1's
  backup (read back by pg_restore --list) before the migration, the migration before any
  instance moves, and the archive restores into a scratch database with the rows it had. A
  backup that fails (PostgreSQL down on db1) stops the deploy: exit 1, no migration, no
  instance moved, every answer still the old version.
- The database port answers app1 only (the firewall and db1's rule), app1 opens 22, 80 and
  443; the second provision, after the deploys, changes nothing in one round trip per host;
  `invoke verify` passes.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from provisioner.commands import quote
from tests.integration.guides.conftest import Guide, Release, Scenario, reaches

pytestmark = pytest.mark.integration

SITE = "agents.berrys.example.org"
DB_PASSWORD = "berrys-guide-" + "7e3a9c0b5d1f" * 3
STATE = "/var/lib/provisioner/apps/berrys"
GUIDE = Guide(
    name="berrys", prefix="gy", hosts=("app1", "db1"), acme_names={SITE: "app1"},
    releases=(Release("v2.0.0"), Release("v2.0.1"), Release("v2.0.2", healthy=False)),
    secret_files={
        "secrets/berrys_db_password": DB_PASSWORD,
        "secrets/berrys_database_url": f"postgresql://berrys:{DB_PASSWORD}@db1:5432/berrys_agents",
        "secrets/berrys_redis_url": "redis://:not-used-here@127.0.0.1:6379/0"},
    # The test image has no alembic: its migration says which version it ran. A broken
    # release is given up on after 10 s instead of the inventory's 60.
    overrides={"app_migration_command":
               "/bin/busybox sh -c 'echo migrated to $(cat /www/index.html)'",
               "app_health_timeout": 10},
)


@pytest.fixture(scope="module")
def berrys(guides: dict[str, Scenario]) -> Scenario:
    return guides["berrys"]


@dataclass
class Client:
    """GET / through nginx, a new TLS connection each time, as long as it runs: the versions
    answered in order and every failure."""

    scenario: Scenario
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def ask(self) -> None:
        connection = self.scenario.https("app1", SITE)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode().strip()
            if response.status == 200:
                self.answers.append(body)
            else:
                self.failures.append(f"{response.status} {body[:80]}")
        except (OSError, http.client.HTTPException) as error:
            self.failures.append(repr(error))
        finally:
            connection.close()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.ask()
            time.sleep(0.05)


@contextmanager
def asking(berrys: Scenario) -> Iterator[Client]:
    """A client asking all the time the block runs, and for a second after it."""
    client = Client(berrys)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        yield client
        time.sleep(1)
    finally:
        client.stopped.set()
        thread.join(timeout=15)


def live_ports(berrys: Scenario) -> dict[str, str]:
    """instance -> "port version" as the host records the slot serving it."""
    shown = berrys.root("app1", f"for f in {STATE}/live/*; do echo \"${{f##*/}} $(cat \"$f\")\"; "
                                "done")
    return {line.split()[0]: " ".join(line.split()[1:]) for line in shown.splitlines()}


def sql(berrys: Scenario, statement: str, database: str = "berrys_agents") -> str:
    return berrys.root("db1", "cd / && runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 "
                              f"-d {database} -c {quote(statement)}").strip()


def test_the_first_provision_of_both_hosts_succeeds(berrys: Scenario) -> None:
    assert berrys.first_run is not None
    assert berrys.first_run.exit_code == 0, berrys.first_run.output[-6000:]
    assert set(berrys.first_run.report["hosts"]) == {"app1", "db1"}
    print("first provision: " + ", ".join(f"{host} {result['duration_seconds']} s" for host, result
                                          in berrys.first_run.report["hosts"].items()))


def test_the_database_answers_the_app_host_only(berrys: Scenario) -> None:
    db = berrys.address("db1")

    assert not reaches(db, 5432)
    assert berrys.root("app1", f"timeout 5 bash -c '</dev/tcp/{db}/5432' && echo open"
                       ).strip() == "open"
    rules = [line.split() for line in berrys.root("db1", "ufw status").splitlines()
             if line.startswith("5432/tcp")]
    assert [rule[2] for rule in rules] == [berrys.address("app1")], rules


def test_the_app_host_opens_only_ssh_http_and_https(berrys: Scenario) -> None:
    opened = {line.split()[0] for line in berrys.root("app1", "ufw status").splitlines()
              if " ALLOW" in line or " LIMIT" in line}
    assert opened == {"22/tcp", "80/tcp", "443/tcp"}


def test_the_first_release_is_backed_up_then_migrated_then_served_with_tls(
        berrys: Scenario) -> None:
    sql(berrys, "CREATE TABLE IF NOT EXISTS agents (id serial PRIMARY KEY, name text); "
                "TRUNCATE agents; INSERT INTO agents (name) SELECT 'agent ' || n FROM "
                "generate_series(1, 120) n; ALTER TABLE agents OWNER TO berrys")

    deploy = berrys.invoke("deploy", "--version", "v2.0.0")

    assert deploy.exit_code == 0, deploy.output[-4000:]
    output = deploy.output
    # db1's archive is named only once pg_restore --list read it back.
    assert output.index("backing up the database on db1 before the migration") < \
        output.index(": globals.sql berrys_agents.dump") < \
        output.index("app1: running the migration with v2.0.0") < \
        output.index("instance 8080:"), output
    served = berrys.curl("app1", f"https://{SITE}/health", "--fail")
    assert (served.returncode, served.stdout.strip()) == (0, "ok v2.0.0"), served
    assert {value.split()[1] for value in live_ports(berrys).values()} == {"v2.0.0"}


def test_the_backup_taken_before_the_migration_restores(berrys: Scenario) -> None:
    listing = berrys.invoke("backup.list", "--host", "db1")  # newest first: the deploy's
    (archive, *_) = re.findall(r"\b(\d{8}T\d{6}Z-ondemand)\b", listing.output)

    restored = berrys.invoke("backup.restore", "--host", "db1", "--file",
                             f"{archive}/berrys_agents.dump", "--into", "berrys_check")

    try:
        assert restored.exit_code == 0, restored.output
        assert sql(berrys, "SELECT count(*), max(name) FROM agents", "berrys_check") == \
            sql(berrys, "SELECT count(*), max(name) FROM agents") == "120|agent 99"
    finally:
        sql(berrys, "DROP DATABASE IF EXISTS berrys_check", "postgres")


def test_a_backup_that_fails_stops_the_deploy_before_the_migration(berrys: Scenario) -> None:
    # A database that cannot be dumped: PostgreSQL stopped on db1 for the length of one deploy.
    before = live_ports(berrys)
    berrys.root("db1", "systemctl stop postgresql")
    try:
        with asking(berrys) as client:
            deploy = berrys.invoke("deploy", "--version", "v2.0.1")
    finally:
        berrys.root("db1", "systemctl start postgresql")

    assert deploy.exit_code == 1, deploy.output[-4000:]
    assert "the backup on db1 failed: the migration did not run" in deploy.output
    assert "running the migration" not in deploy.output, deploy.output[-4000:]
    assert live_ports(berrys) == before
    assert client.failures == [], client.failures[:10]
    assert client.answers and set(client.answers) == {"v2.0.0"}, set(client.answers)


def test_a_release_takes_traffic_only_once_healthy_with_no_failed_request(
        berrys: Scenario) -> None:
    before = live_ports(berrys)

    with asking(berrys) as client:
        deploy = berrys.invoke("deploy", "--version", "v2.0.1")

    assert deploy.exit_code == 0, deploy.output[-4000:]
    assert client.failures == [], client.failures[:10]
    assert set(client.answers) == {"v2.0.0", "v2.0.1"}, client.answers
    assert client.answers[0] == "v2.0.0" and client.answers[-1] == "v2.0.1"
    after = live_ports(berrys)
    # Each instance moved to its other slot (blue <-> green): port and port + 10000.
    assert {instance: abs(int(after[instance].split()[0]) - int(before[instance].split()[0]))
            for instance in before} == {instance: 10000 for instance in before}, (before, after)
    print(f"{len(client.answers)} answers during the deploy, "
          f"{client.answers.index('v2.0.1')} of them v2.0.0 before the first v2.0.1")


def test_a_release_that_never_becomes_healthy_never_takes_traffic(berrys: Scenario) -> None:
    with asking(berrys) as client:
        deploy = berrys.invoke("deploy", "--version", "v2.0.2")

    assert deploy.exit_code != 0, deploy.output[-4000:]
    assert "refusing to become healthy" in deploy.output, deploy.output[-4000:]
    assert client.failures == [], client.failures[:10]
    assert client.answers and set(client.answers) == {"v2.0.1"}, set(client.answers)
    assert {value.split()[1] for value in live_ports(berrys).values()} == {"v2.0.1"}
    assert "v2.0.2" not in berrys.root("app1", "docker ps --format '{{.Image}}'")
    status = berrys.invoke("deploy.status")
    assert status.exit_code == 0, status.output


def test_a_second_provision_after_the_deploys_changes_nothing_in_one_round_trip_per_host(
        berrys: Scenario) -> None:
    again = berrys.invoke("provision")

    assert again.exit_code == 0, again.output[-4000:]
    assert {host: (result["changed"], result["round_trips"])
            for host, result in again.report["hosts"].items()} == \
        {"app1": (0, 1), "db1": (0, 1)}, again.output[-4000:]


def test_every_spec_passes(berrys: Scenario) -> None:
    verified = berrys.invoke("verify", timeout=600)

    assert verified.exit_code == 0, verified.output[-4000:]
