"""The postgres role on real machines: a db host (ufw, postgres) and an api host (ufw).

Its own machines (pgr1 the db host, pgr2 the only host of group api): one boot, one apt install
of PostgreSQL. The tests run in order, each from the state the one before left: --check on the
fresh host, the first run and a second with nothing to do, pg_settings against the computed
tuning, reload versus restart by the postmaster's PID, a value the server refuses, one it cannot
start with (rolled back, serving), shared_buffers beyond the RAM, ALTER SYSTEM overrides, an
extension typo and a plain-text password refused, a client on the api host with the role's
password, refusals by pg_hba and by the firewall, the password nowhere in the server's log or
the runs' output, and the spec.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import sandbox
from provisioner.content.roles import PROJECT_ROOT
from provisioner.facts import FACTS_SCRIPT, parse_facts
from roles.postgres.handlers import APPLY_RUNNING, PREVIOUS
from roles.postgres.hba import listen_addresses
from roles.postgres.settings import desired_settings, same_value
from tests.integration.conftest import (
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
)

pytestmark = pytest.mark.integration

DB_VARS: dict[str, Any] = {
    "host_secrets": {"app_password": {"kind": "password", "length": 32}},
    "ufw_rules": [{"port": 5432, "from_group": "api"}],
    "postgres_remote_groups": ["api"],
    "postgres_pool_size": 20,
    "postgres_roles": [{"name": "app", "password": {"secret": "host:app_password"}}],
    "postgres_databases": [{"name": "app", "owner": "app",
                            "extensions": ["uuid-ossp", "pgcrypto"]}],
    "postgres_grants": [{"role": "app", "database": "app", "privileges": ["CONNECT"]}],
}


@dataclass
class Cluster:
    db: sandbox.Machine
    api: sandbox.Machine
    inventory: Path
    outputs: list[str] = field(default_factory=list)

    def provision(self, *arguments: str) -> Invocation:
        run = invoke_task("provision", "--host", self.db.name, *arguments,
                          inventory=self.inventory, report=self.inventory.parent / "report.json")
        self.outputs.append(run.output + yaml.safe_dump(run.report))
        return run

    def ssh(self, machine: sandbox.Machine, command: str) -> str:
        done = admin_ssh(machine, command, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def sql(self, query: str) -> str:
        return self.ssh(self.db, f"printf '%s' {_quote(query)} | sudo -u postgres psql -X -q "
                        "-A -t -d postgres").strip()

    def postmaster_pid(self) -> str:
        return self.ssh(self.db, "sudo sh -c 'head -n 1 /var/lib/postgresql/*/main/"
                        "postmaster.pid'").strip()

    def set_settings(self, settings: dict[str, Any]) -> None:
        edit_inventory(self.inventory, lambda data: data["groups"]["db"]["vars"].update(
            {"postgres_settings": settings}))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with own_machines(tmp_path_factory, "pgr", count=2) as (booted, inventory):
        db, api = booted

        def edit(data: dict[str, Any]) -> None:
            data["defaults"]["vars"]["ufw_ssh_unlimited_sources"] = ["10.77.0.1"]
            data["groups"] = {"db": {"roles": ["ufw", "postgres"], "vars": DB_VARS},
                              "api": {"roles": ["ufw"]}}
            data["hosts"][db.name]["groups"] = ["db"]
            data["hosts"][api.name]["groups"] = ["api"]

        edit_inventory(inventory, edit)
        yield Cluster(db, api, inventory)


def test_check_on_a_fresh_host_changes_nothing(cluster: Cluster) -> None:
    run = cluster.provision("--check")

    assert run.exit_code == 0, run.output
    assert cluster.ssh(cluster.db, "test -e /etc/postgresql && echo present || echo absent; "
                       "test -e /etc/provisioner/secrets && echo present || echo absent"
                       ).split() == ["absent", "absent"]


def test_first_run_converges_and_a_second_changes_nothing(cluster: Cluster) -> None:
    first = cluster.provision()
    second = cluster.provision()

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert second.report["hosts"][cluster.db.name]["changed"] == 0, second.output
    assert second.report["hosts"][cluster.db.name]["round_trips"] == 1


def test_pg_settings_equal_the_computed_tuning(cluster: Cluster) -> None:
    facts = parse_facts(cluster.ssh(cluster.db, f"sh -c {_quote(FACTS_SCRIPT)}"))
    variables = {**yaml.safe_load((PROJECT_ROOT / "roles/postgres/defaults.yml").read_text()),
                 **DB_VARS}
    version = int(cluster.sql("SELECT current_setting('server_version_num')::int / 10000"))
    wanted = desired_settings(variables, facts, version,
                              listen_addresses(variables, cluster.db.address))
    rows = {line.split("|")[0]: line.split("|") for line in cluster.sql(
        "SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings").splitlines()}

    assert {name: (value, rows[name][1]) for name, value in wanted.items()
            if not same_value(value, *rows[name][1:])} == {}
    assert wanted["max_connections"] == "30"  # PgBouncer's pool of 20 + 10 reserved


def test_a_reload_only_change_keeps_the_postmaster_pid(cluster: Cluster) -> None:
    before = cluster.postmaster_pid()
    cluster.set_settings({"work_mem": "32MB"})

    run = cluster.provision()

    assert run.exit_code == 0, run.output
    assert "postgresql:reload" in run.output
    assert cluster.postmaster_pid() == before
    assert cluster.sql("SHOW work_mem") == "32MB"


def test_a_restart_context_change_restarts_exactly_once(cluster: Cluster) -> None:
    before = cluster.postmaster_pid()
    cluster.set_settings({"work_mem": "16MB", "max_connections": 40})

    run = cluster.provision()

    assert run.exit_code == 0, run.output
    assert run.output.count("handler postgresql:restart") == 1
    assert "handler postgresql:reload" not in run.output
    assert cluster.postmaster_pid() != before
    assert (cluster.sql("SHOW max_connections"), cluster.sql("SHOW work_mem")) == ("40", "16MB")


def test_a_value_the_server_rejects_fails_with_its_message_and_it_keeps_serving(
        cluster: Cluster) -> None:
    before = cluster.postmaster_pid()
    cluster.set_settings({"work_mem": "banana"})

    run = cluster.provision()
    cluster.set_settings({})

    assert run.exit_code == 1
    assert 'invalid value for parameter "work_mem": "banana"' in run.output
    assert cluster.sql("SELECT 1") == "1"
    assert cluster.postmaster_pid() == before
    assert cluster.provision().exit_code == 0


def test_a_value_the_server_cannot_start_with_fails_the_run_and_the_old_settings_serve(
        cluster: Cluster) -> None:
    if cluster.ssh(cluster.db, "cat /proc/sys/vm/nr_hugepages").strip() != "0":
        pytest.skip("this host has huge pages: huge_pages = on would start")
    before = cluster.sql("SHOW huge_pages")
    cluster.set_settings({"huge_pages": "on"})  # postgres -C accepts it; the start fails

    failed = cluster.provision()
    again = cluster.provision()
    cluster.set_settings({})
    fixed = cluster.provision()

    for run in (failed, again):  # the next run reports the same problem, never "ok"
        assert run.exit_code == 1, run.output
        assert "could not map anonymous shared memory" in run.output
        # the server's words without the logging set's line prefix (F22: a cut-off line)
        assert "\nFATAL:  could not map anonymous shared memory" in run.output
        assert "The previous conf.d/50-provisioner.conf and pg_hba.conf are back and " \
            "PostgreSQL runs with them" in run.output
    assert fixed.exit_code == 0, fixed.output
    assert cluster.sql("SHOW huge_pages") == before
    assert cluster.ssh(cluster.db, "systemctl is-active postgresql@$(ls /etc/postgresql)-main"
                       ).strip() == "active"
    assert cluster.provision().report["hosts"][cluster.db.name]["changed"] == 0


def test_a_run_killed_mid_restart_still_rolls_back_on_the_host(cluster: Cluster) -> None:
    """F4: the controller dies (kill -9 of the whole run, no kept login) while the restart with a
    value the server cannot start with runs: the host finishes it, rollback included."""
    if cluster.ssh(cluster.db, "cat /proc/sys/vm/nr_hugepages").strip() != "0":
        pytest.skip("this host has huge pages: huge_pages = on would start")
    before = cluster.sql("SHOW huge_pages")
    cluster.set_settings({"huge_pages": "on"})
    edit_inventory(cluster.inventory, lambda data: data["defaults"]["ssh"].update(
        {"control_persist": 0}))
    command = [sys.executable, "-m", "invoke", "provision", "--host", cluster.db.name,
               "--inventory", str(cluster.inventory)]
    run = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cluster.ssh(cluster.db, f"i=0; until {APPLY_RUNNING}; do "
                    "i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.2; done")
        time.sleep(0.5)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    cluster.ssh(cluster.db, f"i=0; while {APPLY_RUNNING}; do "
                "i=$((i+1)); [ $i -lt 900 ] || exit 1; sleep 0.2; done")
    cluster.set_settings({})
    edit_inventory(cluster.inventory, lambda data: data["defaults"]["ssh"].pop("control_persist"))

    assert cluster.ssh(cluster.db, "systemctl is-active postgresql@$(ls /etc/postgresql)-main"
                       ).strip() == "active"
    assert cluster.sql("SHOW huge_pages") == before
    assert cluster.ssh(cluster.db, f"sudo test -e {PREVIOUS} && echo saved || echo none"
                       ).strip() == "none"
    assert cluster.provision().exit_code == 0


def test_a_save_left_with_the_server_down_is_put_back_first(cluster: Cluster) -> None:
    """F4, the fallback: a change cut off before its rollback (here made by hand: the drop-in
    saved, a value the server cannot start with written, the server stopped) is undone by the
    next run before anything is decided, and reported."""
    dropin = "/etc/postgresql/$(ls /etc/postgresql)/main/conf.d/50-provisioner.conf"
    cluster.ssh(cluster.db, "sudo sh -c '" + f"mkdir -p {PREVIOUS} && cp -p {dropin} "
                f"{PREVIOUS}/0 && echo \"0 {dropin}\" > {PREVIOUS}/paths && "
                f"echo \"max_connections = 1000000\" >> {dropin} && "
                "systemctl stop postgresql@$(ls /etc/postgresql)-main'")

    run = cluster.provision()

    assert run.exit_code == 0, run.output
    assert "with the configuration of a change whose run was cut off before it was proven: " \
        "put back the conf.d/50-provisioner.conf" in run.output
    assert cluster.sql("SELECT 1") == "1"
    assert cluster.provision().report["hosts"][cluster.db.name]["changed"] == 0


def test_a_listen_address_that_is_not_the_hosts_is_refused_before_anything_changes(
        cluster: Cluster) -> None:
    """F5: PostgreSQL would start on localhost only, warning in its log."""
    before = cluster.sql("SHOW listen_addresses")
    edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"].update(
        {"postgres_listen_address": "10.77.0.99"}))

    run = cluster.provision()
    edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"].pop(
        "postgres_listen_address"))

    assert run.exit_code == 1, run.output
    assert "listen_addresses holds 10.77.0.99, which is not an address of this host" in \
        run.output
    assert cluster.sql("SHOW listen_addresses") == before


def test_a_file_setting_a_reload_leaves_unapplied_fails_and_is_rolled_back(
        cluster: Cluster) -> None:
    """F6: a reload keeps the old certificate and says so in the log only; the next restart
    would never come up."""
    before = cluster.sql("SHOW ssl_cert_file")
    cluster.set_settings({"ssl_cert_file": "/etc/ssl/certs/nonexistent.pem"})

    run = cluster.provision()
    cluster.set_settings({})

    assert run.exit_code == 1, run.output
    assert "SSL configuration was not reloaded" in run.output
    assert "The previous conf.d/50-provisioner.conf and pg_hba.conf are back" in run.output
    assert cluster.sql("SHOW ssl_cert_file") == before
    assert "nonexistent" not in cluster.ssh(cluster.db, "cat /etc/postgresql/*/main/conf.d/"
                                            "50-provisioner.conf")
    assert cluster.provision().exit_code == 0


def test_shared_buffers_beyond_the_ram_is_refused_before_anything_changes(
        cluster: Cluster) -> None:
    facts = parse_facts(cluster.ssh(cluster.db, f"sh -c {_quote(FACTS_SCRIPT)}"))
    too_much = f"{2 * facts.memory_bytes // (1 << 30) + 1}GB"
    before = cluster.ssh(cluster.db, "sudo sh -c 'sha256sum /etc/postgresql/*/main/conf.d/*'")
    pid = cluster.postmaster_pid()
    cluster.set_settings({"shared_buffers": too_much})

    run = cluster.provision()
    cluster.set_settings({})

    assert run.exit_code == 1
    assert f"postgres_settings.shared_buffers is {too_much}, more than this host's" in run.output
    assert cluster.ssh(cluster.db, "sudo sh -c 'sha256sum /etc/postgresql/*/main/conf.d/*'") \
        == before
    assert cluster.postmaster_pid() == pid


def test_settings_alter_system_overrides_are_refused_naming_all_before_a_restart(
        cluster: Cluster) -> None:
    pid = cluster.postmaster_pid()
    cluster.sql("ALTER SYSTEM SET work_mem = '1MB'")
    cluster.sql("ALTER SYSTEM SET max_connections = '50'")
    cluster.sql("SELECT pg_reload_conf()")
    cluster.set_settings({"max_connections": 45})  # a restart-only change of ours is pending

    refused = cluster.provision()
    cluster.sql("ALTER SYSTEM RESET work_mem")
    cluster.sql("ALTER SYSTEM RESET max_connections")
    cluster.sql("SELECT pg_reload_conf()")
    cluster.set_settings({})
    cleared = cluster.provision()

    assert refused.exit_code == 1
    assert "postgresql.auto.conf (ALTER SYSTEM) sets max_connections, work_mem" in refused.output
    assert "ALTER SYSTEM RESET max_connections; ALTER SYSTEM RESET work_mem;" in refused.output
    assert cleared.exit_code == 0, cleared.output
    assert cluster.postmaster_pid() == pid


def test_an_extension_the_host_lacks_fails_naming_the_close_match(cluster: Cluster) -> None:
    def extensions(names: list[str]) -> None:
        edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"][
            "postgres_databases"][0].update({"extensions": names}))

    extensions(["pgcrypto", "uuid-osp"])
    run = cluster.provision()
    extensions(["uuid-ossp", "pgcrypto"])

    assert run.exit_code == 1
    assert "uuid-osp (did you mean uuid-ossp?) not available on this host" in run.output
    assert cluster.provision().exit_code == 0


def test_a_plain_text_password_is_refused_before_contact(cluster: Cluster) -> None:
    def password(value: Any) -> None:
        edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"][
            "postgres_roles"][0].update({"password": value}))

    password("hunter2hunter2")
    run = cluster.provision()
    password({"secret": "host:app_password"})

    assert run.exit_code == 2
    assert "has its password in plain text" in run.output and "hunter2" not in run.output


def test_a_hand_written_later_conf_d_file_is_refused_naming_what_it_overrides(
        cluster: Cluster) -> None:
    """F15: noticed by the settings step's probe (the files on disk), before any reload."""
    conf = "/etc/postgresql/$(ls /etc/postgresql)/main/conf.d/99-hand.conf"
    cluster.ssh(cluster.db, "sudo sh -c '" + f"printf \"work_mem = 64MB\\nmax_connections = "
                f"150\\n\" > {conf} && chown postgres: {conf}'")

    run = cluster.provision()
    cluster.ssh(cluster.db, f"sudo sh -c 'rm -f {conf}'")

    assert run.exit_code == 1, run.output
    assert "conf.d/99-hand.conf:2), work_mem (" in run.output
    assert "override the drop-in 50-provisioner.conf from a later file" in run.output
    assert "max_connections (/etc/postgresql/" in run.output
    assert cluster.provision().exit_code == 0


def test_a_role_change_another_transaction_blocks_fails_in_seconds_naming_it(
        cluster: Cluster) -> None:
    """F10: a lock held on the role's row ends the statement after lock_timeout (10 s), and
    the failure names the sessions holding transactions open."""
    hold = ("printf 'BEGIN;\\nALTER ROLE app CONNECTION LIMIT 7;\\nSELECT pg_sleep(90);\\n' | "
            "sudo -u postgres psql -X -q -d postgres")
    holder = subprocess.Popen([*sandbox.ssh_argv(cluster.db, "admin"), "-o", "BatchMode=yes",
                               hold], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cluster.ssh(cluster.db, "i=0; until sudo -u postgres psql -X -A -t -d postgres -c "
                    "\"SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(90)%' AND "
                    "pid <> pg_backend_pid()\" | grep -q 1; do i=$((i+1)); [ $i -lt 50 ] || "
                    "exit 1; sleep 0.2; done")
        edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"][
            "postgres_roles"][0].update({"login": False}))
        started = time.monotonic()
        run = cluster.provision()
        took = time.monotonic() - started
    finally:
        cluster.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query "
                    "LIKE '%pg_sleep(90)%' AND pid <> pg_backend_pid()")
        holder.wait(timeout=30)
        edit_inventory(cluster.inventory, lambda data: data["groups"]["db"]["vars"][
            "postgres_roles"][0].pop("login"))

    assert run.exit_code == 1, run.output
    assert "canceling statement due to lock timeout" in run.output
    assert "sessions holding a transaction open, oldest first:" in run.output
    assert ", application psql, user postgres, transaction started " in run.output
    assert took < 60, took
    assert cluster.provision().exit_code == 0


def test_the_api_host_logs_in_with_the_roles_password_over_tcp(cluster: Cluster) -> None:
    password = cluster.ssh(cluster.db, "sudo cat /etc/provisioner/secrets/app_password")
    cluster.ssh(cluster.api, "sudo apt-get -q update >/dev/null && sudo "
                "DEBIAN_FRONTEND=noninteractive apt-get -q -y install postgresql-client >/dev/null")
    pgpass = f"{cluster.db.address}:5432:app:app:{password}\n"
    cluster.ssh(cluster.api, f"umask 077; printf '%s' {_quote(pgpass)} > ~/.pgpass")

    answer = cluster.ssh(cluster.api, f"psql -X -A -t -w 'host={cluster.db.address} user=app "
                         "dbname=app sslmode=disable' -c 'SELECT current_user'")

    assert answer.strip() == "app"


def test_a_host_outside_the_group_is_refused_by_pg_hba(cluster: Cluster) -> None:
    done = admin_ssh(cluster.db, f"PGPASSWORD=wrong psql -X -w 'host={cluster.db.address} "
                     "user=app dbname=app sslmode=disable' -c 'SELECT 1'")

    assert done.returncode != 0
    assert "no pg_hba.conf entry" in done.stderr


def test_a_host_outside_the_group_is_dropped_by_the_firewall(cluster: Cluster) -> None:
    with pytest.raises(TimeoutError):
        socket.create_connection((cluster.db.address, 5432), timeout=3).close()


def test_the_password_is_in_no_log_and_no_output(cluster: Cluster) -> None:
    password = cluster.ssh(cluster.db, "sudo cat /etc/provisioner/secrets/app_password").strip()
    verifier = cluster.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    log = cluster.ssh(cluster.db, "sudo sh -c 'cat /var/log/postgresql/*.log'")

    assert len(password) == 32 and verifier.startswith("SCRAM-SHA-256$")
    for text in [log, *cluster.outputs]:
        assert password not in text
        assert verifier.split("$", 2)[2] not in text


def test_the_spec_passes(cluster: Cluster) -> None:
    run = invoke_task("verify", "--host", cluster.db.name, inventory=cluster.inventory,
                      report=cluster.inventory.parent / "verify.json")

    assert run.exit_code == 0, run.output
