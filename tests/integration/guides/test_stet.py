"""STET v1.2.1 (seed guide 003) from inventories/stet.yml: two API servers and a database
server, checked the way the guide's own sections and go-live checklist check them.

- Security hardening: root and password logins refused, unattended upgrades on, UFW 22/443 (and
  80 for the ACME challenge) on the API servers, fail2ban watching sshd.
- Database: PostgreSQL 15 with the guide's settings computed for the host (shared_buffers a
  quarter of its RAM, effective_cache_size three quarters, max_connections 100, the SSD's
  planner costs, the logging set), PgBouncer on 6432 in transaction mode; 5432 and 6432 reached
  from the API servers with the stet role's password, not from anywhere else.
- Maintenance: VACUUM ANALYZE from cron at 02:00, the backup at 03:00, restorable.
- TLS: each API server's certificate from the ACME server (Pebble), HTTP sent to HTTPS.
- Deploy: `invoke deploy --version v1.2.1` over both API servers under steady load with no
  failed request, `/health` answering through nginx after it.
- The second provision changes nothing in one round trip per host, and every spec passes.
- Lynis scores a provisioned API server at least 85 (`invoke audit`), and the host report
  (`invoke report`) shows what the deploys, the backups, the certificates, verify and the audit
  left, with no secret on the page.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from provisioner.content.roles import available_roles
from provisioner.facts import FACTS_SCRIPT, remembered
from provisioner.inventory.loader import load_inventory
from provisioner.records import load_record
from tests.integration.guides.conftest import Guide, Release, Scenario, reaches

pytestmark = pytest.mark.integration

DB_PASSWORD = "stet-guide-" + "d4c1e8f0a9b7" * 3
SITE = {"api1": "api1.stet.example.org", "api2": "api2.stet.example.org"}
GUIDE = Guide(
    name="stet", prefix="gs", hosts=("api1", "api2", "db1"),
    acme_names={name: host for host, name in SITE.items()},
    releases=(Release("v1.2.0"), Release("v1.2.1")),
    secret_files={"secrets/stet_db_password": DB_PASSWORD,
                  "secrets/stet_database_url": f"postgresql://stet:{DB_PASSWORD}@db1:6432/stet"},
    # The test image listens on 8080; its migration leaves a line on the host, so the backup
    # on db1 is seen to come first.
    overrides={"app_container_port": 8080,
               "app_migration_command": "/bin/busybox sh -c 'echo migrated'"},
)


@pytest.fixture(scope="module")
def stet(guides: dict[str, Scenario]) -> Scenario:
    return guides["stet"]


def test_the_first_provision_of_all_three_servers_succeeds(stet: Scenario) -> None:
    assert stet.first_run is not None
    assert stet.first_run.exit_code == 0, stet.first_run.output[-6000:]
    assert set(stet.first_run.report["hosts"]) == {"api1", "api2", "db1"}


def test_root_and_password_logins_are_refused(stet: Scenario) -> None:
    for host in ("api1", "db1"):
        for login in (["root@" + stet.address(host)],
                      ["-o", "PreferredAuthentications=password,keyboard-interactive",
                       "-o", "PubkeyAuthentication=no", "admin@" + stet.address(host)]):
            refused = subprocess.run(
                ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                 "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                 *login, "true"], capture_output=True, text=True, check=False, timeout=30)
            assert refused.returncode == 255, (host, login, refused)
        sshd = stet.root(host, "sshd -T")
        assert "permitrootlogin no" in sshd and "passwordauthentication no" in sshd


def test_security_updates_install_themselves_and_fail2ban_watches_sshd(stet: Scenario) -> None:
    for host in ("api1", "api2", "db1"):
        periodic = stet.root(host, "apt-config dump | grep -i 'APT::Periodic::Unattended'")
        assert 'Unattended-Upgrade "1"' in periodic, periodic
        assert "Currently failed" in stet.root(host, "fail2ban-client status sshd")


def test_the_api_servers_open_only_ssh_http_and_https(stet: Scenario) -> None:
    status = stet.root("api1", "ufw status verbose")
    assert "Default: deny (incoming)" in status
    opened = {line.split()[0] for line in status.splitlines()
              if " ALLOW" in line or " LIMIT" in line}
    assert opened == {"22/tcp", "80/tcp", "443/tcp"}, status


def test_the_database_ports_answer_the_api_servers_only(stet: Scenario) -> None:
    db = stet.address("db1")
    for port in (5432, 6432):
        assert not reaches(db, port), f"{port} is open to this machine"
        assert stet.root("api1", f"timeout 5 bash -c '</dev/tcp/{db}/{port}' && echo open"
                         ).strip() == "open"
    rules = stet.root("db1", "ufw status")
    for rule in ("5432/tcp", "6432/tcp"):
        sources = {line.split()[2] for line in rules.splitlines() if line.startswith(rule)}
        assert sources == {stet.address("api1"), stet.address("api2")}, rules


def setting(stet: Scenario, name: str) -> str:
    return stet.root("db1", "sudo -u postgres psql -Atc "
                            f"\"SELECT setting || coalesce(unit, '') FROM pg_settings "
                            f"WHERE name = '{name}'\"").strip()


def test_postgresql_15_has_the_guides_settings_computed_for_the_host(stet: Scenario) -> None:
    memory_kb = int(stet.root("db1", "awk '/MemTotal/ {print $2}' /proc/meminfo"))
    share_kb = memory_kb // 1024 * 1024  # PGTune's input: whole MB of RAM (share 1.0)

    assert stet.root("db1", "sudo -u postgres psql -Atc 'SHOW server_version'").startswith("15.")
    assert setting(stet, "shared_buffers") == f"{share_kb // 4 // 8}8kB"
    assert setting(stet, "effective_cache_size") == f"{share_kb * 3 // 4 // 8}8kB"
    expected = {"max_connections": "100", "superuser_reserved_connections": "3",
                "max_wal_size": "2048MB", "min_wal_size": "1024MB",
                "checkpoint_completion_target": "0.9", "random_page_cost": "1.1",
                "effective_io_concurrency": "200", "log_min_duration_statement": "1000ms",
                "log_statement": "ddl", "log_connections": "on", "log_lock_waits": "on",
                "wal_level": "replica"}
    assert {name: setting(stet, name) for name in expected} == expected


def test_vacuum_runs_at_two_and_the_backup_at_three(stet: Scenario) -> None:
    cron = stet.root("db1", "cat /etc/cron.d/postgres-maintenance")
    assert any(line.startswith("0 2 * * * postgres") and "ANALYZE" in line.upper()
               for line in cron.splitlines()), cron
    timer = stet.root("db1", "systemctl show -p TimersCalendar provisioner-backup.timer")
    assert "03:00:00" in timer, timer


def test_each_api_server_serves_its_acme_certificate_and_sends_http_to_https(
        stet: Scenario) -> None:
    for host, name in SITE.items():
        with socket.create_connection((stet.address(host), 443), timeout=5) as raw, \
                stet.tls_context().wrap_socket(raw, server_hostname=name) as tls:
            served = tls.getpeercert() or {}
        assert ("DNS", name) in served.get("subjectAltName", ()), served
        redirect = stet.curl(host, f"http://{name}/v1/facts", "-o", "/dev/null",
                             "-w", "%{http_code} %{redirect_url}")
        assert redirect.stdout == f"308 https://{name}/v1/facts", redirect


@dataclass
class SteadyLoad:
    """GET / on every API server through nginx (TLS, the certificate checked, a new
    connection each time), round after round, until stopped."""

    stet: Scenario
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def get(self, host: str) -> str:
        connection = self.stet.https(host, SITE[host])
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode().strip()
            if response.status != 200:
                raise OSError(f"{host}: status {response.status}: {body[:80]}")
            return body
        finally:
            connection.close()

    def run(self) -> None:
        while not self.stop.is_set():
            for host in SITE:
                try:
                    self.answers.append(self.get(host))
                except (OSError, ssl.SSLError, http.client.HTTPException) as error:
                    self.failures.append(repr(error))
            time.sleep(0.02)


def test_deploying_v1_2_1_over_both_api_servers_fails_no_request(stet: Scenario) -> None:
    first = stet.invoke("deploy", "--group", "api", "--version", "v1.2.0")
    assert first.exit_code == 0, first.output[-4000:]
    load = SteadyLoad(stet)
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()

    deployed = stet.invoke("deploy", "--group", "api", "--version", "v1.2.1",
                           "--message", "STET v1.2.1")
    time.sleep(1)
    load.stop.set()
    worker.join()

    assert deployed.exit_code == 0, deployed.output[-4000:]
    assert load.failures == [], load.failures[:5]
    assert len(load.answers) > 100
    assert load.answers[-4:] == ["v1.2.1"] * 4, load.answers[-8:]
    assert deployed.output.index("backing up the database on db1") < \
        deployed.output.index("running the migration")


def test_health_answers_through_nginx_on_both_api_servers(stet: Scenario) -> None:
    for host, name in SITE.items():
        health = stet.curl(host, f"https://{name}/health", "-o", "/dev/null", "-w",
                           "%{http_code}")
        assert health.stdout == "200", health
    status = stet.invoke("deploy.status", "--group", "api")
    assert status.exit_code == 0, status.output
    assert status.output.count("v1.2.1") >= 4, status.output


def test_the_backup_restores_and_the_secret_stays_in_its_file(stet: Scenario) -> None:
    verified = stet.invoke("backup.verify", "--host", "db1", timeout=600)
    assert verified.exit_code == 0, verified.output[-3000:]
    for host in ("api1", "api2"):
        inspect = stet.root(host, "docker inspect $(docker ps -q)")
        assert DB_PASSWORD not in inspect and "DATABASE_URL_FILE=/run/secrets/" in inspect


def facts_sections(stet: Scenario) -> dict[str, dict[str, str]]:
    """Each host's facts as the engine remembers them, and as the host gives them now, section
    by section: a run pays a second round trip exactly when the two differ."""
    inventory = load_inventory(stet.inventory, known_roles=list(available_roles()))
    sections = {}
    for name, config in inventory.hosts.items():
        entry = remembered.entry_path(config)
        before = entry.read_text() if entry.is_file() else ""
        now = stet.root(name, FACTS_SCRIPT)
        sections[name] = {part.split("\n", 1)[0]: part for part in before.split("== ")[1:]
                          if part not in now.split("== ")}
    return sections


def test_a_second_provision_changes_nothing_in_one_round_trip_per_host(stet: Scenario) -> None:
    drifted = facts_sections(stet)
    again = stet.invoke("provision")

    assert again.exit_code == 0, again.output[-4000:]
    for host, result in again.report["hosts"].items():
        changed = [step["label"] for step in result["steps"] if step["status"] == "changed"]
        assert (changed, result["round_trips"]) == ([], 1), (host, changed, drifted[host])


def test_every_spec_passes_on_the_three_servers(stet: Scenario) -> None:
    verified = stet.invoke("verify", timeout=900)
    assert verified.exit_code == 0, verified.output[-4000:]


def test_a_provisioned_api_server_scores_at_least_85_in_lynis(stet: Scenario) -> None:
    audited = stet.invoke("audit", "--host", "api1", "--min-index", "85", timeout=900)

    assert audited.exit_code == 0, audited.output[-3000:]
    record = load_record(stet.inventory, "api1", "audit")
    assert record is not None and record["hardening_index"] >= 85, record


def test_the_host_report_shows_deploys_backups_certificates_verify_and_audit(
        stet: Scenario) -> None:
    page, data_file = (stet.inventory.parent / f"stet-report.{kind}" for kind in ("html", "json"))

    made = stet.invoke("report", "--html", str(page), "--json", str(data_file))

    assert made.exit_code == 0, made.output[-3000:]
    hosts = json.loads(data_file.read_text())["hosts"]
    assert set(hosts) == {"api1", "api2", "db1"}
    for name in ("api1", "api2"):
        live = hosts[name]["live"]
        assert [entry["version"] for entry in live["deploy_history"]["entries"][:2]] == \
            ["v1.2.1", "v1.2.0"], live["deploy_history"]
        (certificate,) = live["certificates"]
        assert certificate["names"] == [SITE[name]] and certificate["days_left"] > 0
    backup = hosts["db1"]["live"]["backup"]
    assert backup["archives"] >= 1 and backup["last_restore_test"]["result"] == "ok", backup
    assert all(host["verify"]["failed"] == 0 and host["verify"]["passed"] > 0
               for host in hosts.values())
    assert hosts["api1"]["audit"]["hardening_index"] >= 85
    assert DB_PASSWORD not in page.read_text() and "v1.2.1" in page.read_text()


def test_the_api_servers_log_in_through_pgbouncer_and_to_postgresql(stet: Scenario) -> None:
    # Last: the psql client it installs on api1 is not the inventory's, and a host whose
    # packages changed costs its next run a second round trip to read its facts again.
    stet.root("api1", "command -v psql >/dev/null || DEBIAN_FRONTEND=noninteractive "
                      "apt-get install -y -q postgresql-client >/dev/null", timeout=300)
    db = stet.address("db1")
    for port in (6432, 5432):
        answer = stet.root("api1", f"PGPASSWORD={DB_PASSWORD} psql -h {db} -p {port} -U stet "
                                   "-d stet -Atc 'SELECT current_user'")
        assert answer.strip() == "stet"
    mode = stet.root("db1", "grep -E '^pool_mode' /etc/pgbouncer/pgbouncer.ini")
    assert "transaction" in mode
