"""PgBouncer on real machines: a db host (ufw, postgres, pgbouncer) and an api-group host.

A real psql logs in through port 6432 with the app role's host-secret password and runs a
query; a wrong password is refused; the api host connects through the db host's private
address while the controller, outside the group, is dropped by the firewall; a pool setting
reloads PgBouncer under the same PID; a setting PgBouncer refuses fails the reload with its own
words; a second run changes nothing and the role's spec passes. The tests run in order, each
from the state the one before left.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.commands import quote
from roles.pgbouncer.handlers import PREVIOUS
from roles.pgbouncer.settings import RESTART_ONLY
from tests.integration.conftest import (
    CONTROLLER_ADDRESS,
    TEST_ROLES,
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

PORT = 6432
DB_VARS: dict[str, Any] = {
    "host_secrets": {"db_password": {"kind": "password", "length": 32}},
    "postgres_roles": [{"name": "app", "password": {"secret": "host:db_password"},
                        "login": True}],
    "postgres_databases": [{"name": "app", "owner": "app"}],
    "pgbouncer_remote_groups": ["api"],
    "pgbouncer_stats_users": ["app"],
    "ufw_rules": [{"port": PORT, "proto": "tcp", "from_group": "api"}],
}


@dataclass
class DataTier:
    db: sandbox.Machine
    api: sandbox.Machine
    inventory: Path
    #: The api host's psql being installed while the db host converges.
    client_install: subprocess.Popen[str] | None = None
    #: Everything the runs printed and reported, searched for the password at the end.
    shown: list[str] = field(default_factory=list)

    def provision(self, *arguments: str, inventory: Path | None = None) -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", "--host", self.db.name, *arguments,
                          inventory=inventory or self.inventory, timeout=600,
                          report=self.inventory.parent / "report.json")
        print(f"provision {' '.join(arguments)}: {time.monotonic() - started:.1f} s, "
              f"exit {run.exit_code}")
        self.shown += [run.output, json.dumps(run.report)]
        return run

    def api_client_installed(self) -> None:
        assert self.client_install is not None
        output, _ = self.client_install.communicate(timeout=300)
        assert self.client_install.returncode == 0, output

    def root(self, command: str) -> str:
        return root_output(self.db, command).strip()

    def password(self) -> str:
        return self.root("cat /etc/provisioner/secrets/db_password")

    def pgbouncer_pid(self) -> str:
        return self.root("systemctl show -p MainPID --value pgbouncer.service")

    def console(self, command: str) -> dict[str, str]:
        rows = self.root(f"cd / && runuser -u postgres -- psql -X -A -t -F '|' -h "
                         f"/var/run/postgresql -p {PORT} -U pgbouncer -d pgbouncer -c "
                         f"'{command}'")
        return {line.split("|")[0]: line for line in rows.splitlines() if "|" in line}


def psql_via(machine: sandbox.Machine | None, address: str, password: str, sql: str,
             database: str = "app") -> subprocess.CompletedProcess[str]:
    """A real psql client logging in as app through PgBouncer, on ``machine`` (None: the
    controller); the password goes on stdin, never in argv."""
    client = (f"read -r PGPASSWORD; export PGPASSWORD; psql -X -A -t -w "
              f"'host={address} port={PORT} user=app dbname={database} connect_timeout=5' "
              f"-c {quote(sql)}")
    argv = ["sh", "-c", client] if machine is None else \
        [*sandbox.ssh_argv(machine, "admin"), "-o", "BatchMode=yes", client]
    return subprocess.run(argv, input=password + "\n", capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataTier]:
    with own_machines(tmp_path_factory, "pgb", count=2) as (booted, inventory):
        db, api = booted

        def describe(data: dict[str, Any]) -> None:
            data["defaults"]["vars"]["ufw_ssh_unlimited_sources"] = [CONTROLLER_ADDRESS]
            data["groups"] = {"db": {"roles": ["ufw", "postgres", "pgbouncer"]},
                              "api": {"roles": ["ufw"]}}
            data["hosts"][db.name].update(groups=["db"], vars=DB_VARS)
            data["hosts"][api.name].update(groups=["api"])

        edit_inventory(inventory, describe)
        # The api host's client, installed while the db host converges.
        client = subprocess.Popen(
            [*sandbox.ssh_argv(api, "admin"), "-o", "BatchMode=yes",
             "sudo -n sh -c 'apt-get -qq update && DEBIAN_FRONTEND=noninteractive "
             "apt-get -qq -y install postgresql-client >/dev/null'"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        yield DataTier(db, api, inventory, client)
        client.wait(timeout=300)


def steps_of(run: Invocation, host: str) -> dict[str, dict[str, Any]]:
    return {step["label"]: step for step in run.report["hosts"][host]["steps"]}


def test_check_mode_on_a_fresh_host_says_the_userlist_waits_for_the_server(
        tier: DataTier) -> None:
    run = tier.provision("--check")

    assert run.exit_code == 0, run.output
    userlist = steps_of(run, tier.db.name)["userlist /etc/pgbouncer/userlist.txt [controls §7.2]"]
    assert userlist["reason"].startswith("would change after"), userlist


def test_the_first_run_converges_with_one_restart(tier: DataTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    steps = steps_of(run, tier.db.name)
    assert steps["handler pgbouncer:restart"]["status"] == "changed"
    assert steps["handler pgbouncer:reload"]["reason"].startswith("not run: pgbouncer:restart")


def test_a_client_with_the_app_password_runs_a_query_through_pgbouncer(tier: DataTier) -> None:
    done = psql_via(tier.db, "127.0.0.1", tier.password(),
                    "SELECT current_user, current_database(), 6 * 7")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "app|app|42"


def test_a_wrong_password_is_refused(tier: DataTier) -> None:
    done = psql_via(tier.db, "127.0.0.1", tier.password() + "x", "SELECT 1")

    assert done.returncode != 0
    assert "SASL authentication failed" in done.stderr or \
        "password authentication failed" in done.stderr, done.stderr


def test_the_api_host_connects_through_the_private_address(tier: DataTier) -> None:
    tier.api_client_installed()

    done = psql_via(tier.api, tier.db.address, tier.password(), "SELECT inet_client_addr()")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "127.0.0.1"  # PgBouncer's own connection to the server


def test_a_host_outside_the_group_is_dropped_by_the_firewall(tier: DataTier) -> None:
    done = psql_via(None, tier.db.address, tier.password(), "SELECT 1")

    assert done.returncode != 0
    assert "timeout expired" in done.stderr, done.stderr


def test_the_stats_user_reads_the_console_but_cannot_reload(tier: DataTier) -> None:
    stats = psql_via(tier.db, "127.0.0.1", tier.password(), "SHOW POOLS", database="pgbouncer")
    reload = psql_via(tier.db, "127.0.0.1", tier.password(), "RELOAD", database="pgbouncer")

    assert stats.returncode == 0, stats.stderr
    assert reload.returncode != 0 and "admin access needed" in reload.stderr, reload.stderr


def test_a_second_run_changes_nothing(tier: DataTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    assert run.report["hosts"][tier.db.name]["changed"] == 0, run.output


def test_the_spec_passes(tier: DataTier) -> None:
    run = invoke_task("verify", "--host", tier.db.name, inventory=tier.inventory,
                      report=tier.inventory.parent / "verify.json")

    assert run.exit_code == 0, run.output


def test_a_pool_size_change_reloads_under_the_same_pid(tier: DataTier) -> None:
    before = tier.pgbouncer_pid()

    run = tier.provision("--set", "pgbouncer_default_pool_size=30")

    assert run.exit_code == 0, run.output
    steps = steps_of(run, tier.db.name)
    assert steps["handler pgbouncer:reload"]["status"] == "changed"
    assert "handler pgbouncer:restart" not in steps
    assert tier.pgbouncer_pid() == before
    assert tier.console("SHOW CONFIG")["default_pool_size"].split("|")[1] == "30"


def test_a_setting_pgbouncer_refuses_fails_the_reload_with_its_words(tier: DataTier) -> None:
    refused = tier.inventory.parent / "refused.yml"
    refused.write_text(tier.inventory.read_text())
    edit_inventory(refused, lambda data: data["hosts"][tier.db.name]["vars"].update(
        pgbouncer_extra_settings={"max_prepared_statement": 100}))

    run = tier.provision(inventory=refused)

    assert run.exit_code == 1, run.output
    reload = steps_of(run, tier.db.name)["handler pgbouncer:reload"]
    assert reload["status"] == "failed"
    assert "PgBouncer refused the new configuration and keeps running the old one" \
        in reload["reason"]
    assert "unknown parameter: pgbouncer/max_prepared_statement" in reload["reason"]
    assert psql_via(tier.db, "127.0.0.1", tier.password(), "SELECT 1").returncode == 0
    # F7: the refused file does not stay on disk for the next restart to fail on
    assert "The previous pgbouncer.ini and userlist are back on disk and reloaded" in \
        reload["reason"]
    assert "max_prepared_statement" not in tier.root("cat /etc/pgbouncer/pgbouncer.ini")
    assert tier.root(f"test -e {PREVIOUS} && echo saved || echo none").strip() == "none"


def test_a_private_address_that_is_not_the_hosts_is_refused_before_the_ini_changes(
        tier: DataTier) -> None:
    """F5: PgBouncer would fail to bind it at its next start."""
    before = tier.root("cat /etc/pgbouncer/pgbouncer.ini")

    run = tier.provision("--set", "pgbouncer_private_address=10.77.0.99")

    assert run.exit_code == 1, run.output
    assert "PgBouncer would listen on 10.77.0.99, which is not an address of this host" in \
        run.output
    assert tier.root("cat /etc/pgbouncer/pgbouncer.ini") == before


def test_the_next_good_run_reloads_what_the_failed_one_left(tier: DataTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    assert steps_of(run, tier.db.name)["handler pgbouncer:reload"]["status"] == "changed"
    assert tier.console("SHOW CONFIG")["default_pool_size"].split("|")[1] == "25"


def test_a_converged_host_costs_one_round_trip(tier: DataTier) -> None:
    run = tier.provision()

    assert run.exit_code == 0, run.output
    assert run.report["hosts"][tier.db.name]["changed"] == 0, run.output
    assert run.report["hosts"][tier.db.name]["round_trips"] == 1


def test_check_mode_on_the_converged_host_changes_nothing(tier: DataTier) -> None:
    run = tier.provision("--check")

    assert run.exit_code == 0, run.output
    assert run.report["hosts"][tier.db.name]["changed"] == 0, run.output


def test_a_postgresql_restart_pauses_pgbouncer_so_its_clients_wait_not_fail(
        tier: DataTier) -> None:
    """F19: clients through PgBouncer while the server restarts for a start-only setting."""
    loop = ("read -r PGPASSWORD; export PGPASSWORD; rm -f /tmp/f19-stop; ok=0; bad=0; worst=0; "
            "n=0; while [ ! -e /tmp/f19-stop ] && [ $n -lt 1500 ]; do n=$((n+1)); "
            "s=$(date +%s%N); if psql -X -A -t -w 'host=127.0.0.1 port=6432 user=app dbname=app "
            "connect_timeout=30' -c 'SELECT 1' >/dev/null 2>&1; then ok=$((ok+1)); else "
            "bad=$((bad+1)); fi; t=$(( ($(date +%s%N) - s) / 1000000 )); "
            "[ $t -le $worst ] || worst=$t; sleep 0.1; done; echo \"$ok $bad $worst\"")
    clients = subprocess.Popen([*sandbox.ssh_argv(tier.db, "admin"), "-o", "BatchMode=yes",
                                loop], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert clients.stdin is not None
    clients.stdin.write(tier.password() + "\n")
    clients.stdin.close()
    time.sleep(1)
    edit_inventory(tier.inventory, lambda data: data["hosts"][tier.db.name]["vars"].update(
        postgres_settings={"max_wal_senders": 9}))  # a restart of the server

    run = tier.provision()
    root_output(tier.db, "touch /tmp/f19-stop && chmod 666 /tmp/f19-stop")
    assert clients.stdout is not None
    output = clients.stdout.read()
    clients.wait(timeout=120)

    assert run.exit_code == 0, run.output
    assert steps_of(run, tier.db.name)["handler postgresql:restart"]["status"] == "changed"
    ok, failed, longest = (int(field) for field in output.split())
    print(f"through PgBouncer during the restart: {ok} queries, {failed} failed, longest "
          f"{longest} ms")
    assert failed == 0 and ok > 0
    assert longest < 10_000


def test_every_setting_pgbouncer_marks_unchangeable_restarts_it(tier: DataTier) -> None:
    rows = tier.console("SHOW CONFIG").values()
    # 1.18 (Debian 12) marks 13 such settings; 1.24 (Debian 13) one more, which 1.18 lacks.
    assert {row.split("|")[0] for row in rows if row.split("|")[3] == "no"} <= RESTART_ONLY


#: On the db host, as root: reconnect through PgBouncer every 0.1 s with the password the app's
#: environment file holds at that moment, one line per attempt (host clock, ok/fail), until
#: the stop file appears. The host's clock is the controller's (the sandbox shares its kernel).
RECONNECT_LOOP = (
    "rm -f /tmp/loop.stop; while [ ! -e /tmp/loop.stop ]; do "
    "pw=$(sed -n 's|^DATABASE_URL=postgresql://app:\\(.*\\)@.*|\\1|p' /etc/secretuser/app.env); "
    "if PGPASSWORD=$pw psql -X -A -t -w 'host=127.0.0.1 port=6432 user=app dbname=app "
    "connect_timeout=5' -c 'SELECT 1' >/dev/null 2>&1; then r=ok; else r=fail; fi; "
    "echo \"$(date +%s.%N) $r\"; sleep 0.1; done > /tmp/loop.log 2>&1")


def test_a_rotation_keeps_clients_through_pgbouncer_connecting_once_it_is_done(
        tier: DataTier) -> None:
    rotation = tier.inventory.parent / "rotation.yml"
    rotation.write_text(tier.inventory.read_text())
    edit_inventory(rotation, lambda data: (
        data["groups"]["db"]["roles"].append("secretuser"),
        data["hosts"][tier.db.name]["vars"].update(
            secretuser_db_password={"secret": "host:db_password"},
            secretuser_signing_key={"secret": "host:db_password"})))
    roles = {"PROVISIONER_ROLES_PATH": str(TEST_ROLES)}
    converge = invoke_task("provision", "--host", tier.db.name, inventory=rotation,
                           report=tier.inventory.parent / "r.json", environment=roles)
    assert converge.exit_code == 0, converge.output
    old = tier.password()
    loop = subprocess.Popen([*sandbox.ssh_argv(tier.db, "admin"), "-o", "BatchMode=yes",
                             f"sudo -n sh -c {quote(RECONNECT_LOOP)}"])
    time.sleep(3)
    started = time.time()
    rotated = invoke_task("secrets.rotate", "--host", tier.db.name, "--name", "db_password",
                          inventory=rotation, report=tier.inventory.parent / "r.json",
                          environment=roles)
    finished = time.time()
    time.sleep(5)
    tier.root("touch /tmp/loop.stop")
    loop.wait(timeout=60)
    attempts = [line.split() for line in tier.root("cat /tmp/loop.log").splitlines()]
    tier.shown += [rotated.output, converge.output]

    assert rotated.exit_code == 0, rotated.output
    assert tier.password() != old
    before = [result for moment, result in attempts if float(moment) < started]
    after = [result for moment, result in attempts if float(moment) > finished]
    print(f"rotation {finished - started:.1f} s; attempts before {len(before)}, during "
          f"{len(attempts) - len(before) - len(after)}, after {len(after)}")
    assert before and set(before) == {"ok"}
    assert len(after) >= 10 and set(after) == {"ok"}, attempts


def test_the_password_and_its_verifier_never_appear_in_any_output(tier: DataTier) -> None:
    verifier = tier.root("cd / && runuser -u postgres -- psql -X -A -t -c \"SELECT rolpassword "
                         "FROM pg_authid WHERE rolname = 'app'\"")
    password = tier.password()

    assert verifier.startswith("SCRAM-SHA-256$")
    for text in tier.shown:
        assert password not in text and verifier not in text
        assert verifier.split("$")[2].split(":")[0] not in text  # nor its StoredKey alone
