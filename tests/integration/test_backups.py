"""Backups on real machines: a db host (postgres, backups) and a backup host (backup_target).

Real PostgreSQL, real pg_dump and pg_restore, real rsync over SSH into rrsync, real age. Rows
written are back after a backup, a dropped database and a restore; a live database is not
overwritten without --replace; the restore test records its success (and, with no archive yet,
records nothing); a failed restore leaves no scratch database; retention keeps exactly what
roles/backups/retention.py says over forty simulated days with backup.now runs among them, on
the db host and (by its own timer's program) on the backup host; the db host's key can neither
delete nor overwrite anything there; a backup.now whose controller is killed mid-run still
completes, is copied and recorded; a dump that fails leaves no half archive; the copy on the
backup host is age ciphertext that decrypts to the dump; --diff never shows the private key; a
second run changes nothing and both roles' specs pass. The tests run in order, each from the
state the one before left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from provisioner import sandbox
from provisioner.commands import quote
from provisioner.transport.kept_logins import close_keepers
from roles.backups.retention import archive_name, archive_time, kept_archives
from tests.integration.conftest import (
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

PROGRAM = "/usr/local/sbin/provisioner-backup"
ARCHIVES = "/var/backups/postgresql-dumps"
TARGET_DIRECTORY = "/srv/provisioner-backups"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_checksum(hrp: str, data: list[int]) -> list[int]:
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data + [0] * 6
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1ffffff) << 5 ^ value
        for bit, generator in enumerate((0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd,
                                         0x2a1462b3)):
            check ^= generator if (top >> bit) & 1 else 0
    check ^= 1
    return [(check >> 5 * (5 - index)) & 31 for index in range(6)]


def bech32(hrp: str, payload: bytes) -> str:
    """BIP 173 bech32, as age writes its keys."""
    bits = "".join(f"{byte:08b}" for byte in payload)
    bits += "0" * (-len(bits) % 5)
    data = [int(bits[index:index + 5], 2) for index in range(0, len(bits), 5)]
    return hrp + "1" + "".join(BECH32[d] for d in data + _bech32_checksum(hrp, data))


def age_key_pair() -> tuple[str, str]:
    """(recipient, identity) of a new X25519 age key, made on the controller: the identity
    never reaches the backup host."""
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return bech32("age", public), bech32("age-secret-key-", raw).upper()


@dataclass
class Backups:
    db: sandbox.Machine
    vault: sandbox.Machine
    inventory: Path
    identity: str
    keys: Path
    shown: list[str] = field(default_factory=list)

    def provision(self, *arguments: str) -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", *arguments, inventory=self.inventory, timeout=600,
                          report=self.inventory.parent / "report.json")
        print(f"provision {' '.join(arguments)}: {time.monotonic() - started:.1f} s, "
              f"exit {run.exit_code}")
        return run

    def task(self, name: str, *arguments: Any) -> tuple[int, str]:
        """A backup task run as a user runs it, ``invoke backup.NAME``: (exit code, output)."""
        host = arguments[0]
        command = [f"backup.{name}", "--host", host]
        if name == "restore":
            file, into, replace = arguments[1:]
            command += ["--file", file, *(["--into", into] if into else []),
                        *(["--replace"] if replace else [])]
        run = invoke_task(*command, inventory=self.inventory, timeout=600,
                          report=self.inventory.parent / "report.json")
        return run.exit_code, run.output

    def root(self, command: str, machine: sandbox.Machine | None = None,
             stdin: str | None = None) -> str:
        return root_output(machine or self.db, command, stdin).strip()

    def sql(self, statement: str, database: str = "app") -> str:
        return self.root(f"cd / && runuser -u postgres -- psql -X -A -t -v ON_ERROR_STOP=1 "
                         f"-d {database} -c {quote(statement)}")

    def archives(self) -> list[str]:
        return sorted(self.root(f"ls -1 {ARCHIVES}").split())

    def copies(self) -> list[str]:
        """The archives on the backup host, in this db host's directory."""
        return sorted(self.root(f"ls -1 {TARGET_DIRECTORY}/{self.db.name}",
                                machine=self.vault).split())

    def as_client(self, command: str) -> subprocess.CompletedProcess[str]:
        """A shell command on the db host as root, with $SSH set to ssh with the client key as
        the backup program uses it and $TARGET to the backup host's account: what an intruder
        on the db host could do to the backups there."""
        script = (". /etc/provisioner-backup/config && TARGET=$OFFHOST_TARGET && "
                  "SSH=\"ssh -i /etc/provisioner-backup/offhost_key -o IdentitiesOnly=yes "
                  "-o BatchMode=yes -o UserKnownHostsFile=$OFFHOST_KNOWN_HOSTS "
                  "-o StrictHostKeyChecking=$OFFHOST_CHECKING -p $OFFHOST_PORT\" && cd /tmp && "
                  f"{command}")
        argv = [*sandbox.ssh_argv(self.db, "admin"), "-o", "BatchMode=yes",
                f"sudo -n bash -c {quote(script)}"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def status(self, kind: str) -> dict[str, str]:
        text = self.root(f"cat /var/lib/provisioner-backup/last-{kind}")
        return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture(scope="module")
def backups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backups]:
    keys = tmp_path_factory.mktemp("bkp-keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bkp1-backups", "-f",
                    str(keys / "offhost")], check=True)
    recipient, identity = age_key_pair()
    with own_machines(tmp_path_factory, "bkp", count=2) as (booted, inventory):
        db, vault = booted
        host_key = admin_ssh(vault, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()

        def describe(data: dict[str, Any]) -> None:
            data["groups"] = {"db": {"roles": ["postgres", "pgbouncer", "backups"]},
                              "backup": {"roles": ["backup_target"]}}
            data["hosts"][db.name].update(groups=["db"], vars={
                "host_secrets": {"db_password": {"kind": "password", "length": 32}},
                "postgres_roles": [{"name": "app", "login": True,
                                    "password": {"secret": "host:db_password"}}],
                "postgres_databases": [{"name": "app", "owner": "app"},
                                       {"name": "legacy", "owner": "app",
                                        "encoding": "LATIN1", "locale": "C"}],
                "postgres_maintenance": False,
                # An alias of app: a replacing restore pauses it too.
                "pgbouncer_databases": {"app": {}, "reporting": {"dbname": "app"}},
                # A backup host that stops answering is given up on after 10 s.
                "backups_offhost_timeout": 10,
                "backups_offhost": {"host": vault.name,
                                    "private_key": {"secret": f"file:{keys / 'offhost'}"},
                                    "host_key": " ".join(host_key[:2]),
                                    "age_recipient": recipient}})
            data["hosts"][vault.name].update(groups=["backup"], vars={
                "backup_target_clients": [{"host": db.name, "public_key": (
                    keys / "offhost.pub").read_text().strip()}]})

        edit_inventory(inventory, describe)
        yield Backups(db, vault, inventory, identity, keys)


def test_check_mode_on_fresh_hosts_changes_nothing_and_fails_nothing(backups: Backups) -> None:
    run = backups.provision("--check")

    assert run.exit_code == 0, run.output
    assert "provisioner-backup" not in backups.root("ls /usr/local/sbin")


def test_the_first_run_converges_both_hosts(backups: Backups) -> None:
    run = backups.provision()

    assert run.exit_code == 0, run.output


def test_a_second_run_changes_nothing(backups: Backups) -> None:
    run = backups.provision()

    assert run.exit_code == 0, run.output
    for name in (backups.db.name, backups.vault.name):
        assert run.report["hosts"][name]["changed"] == 0, run.output
        assert run.report["hosts"][name]["round_trips"] == 1, run.report["hosts"][name]


def test_verify_with_no_archive_yet_says_so_and_records_no_failure(backups: Backups) -> None:
    code, shown = backups.task("verify", backups.db.name, "")

    assert code == 1
    assert "no archive to verify yet; run backup.now first" in shown
    assert "last-verify" not in backups.root("ls -A /var/lib/provisioner-backup")
    # The timer's run of it is no failed unit either.
    assert backups.root("systemctl start provisioner-backup-verify.service && systemctl "
                        "show -p Result --value provisioner-backup-verify.service") == "success"
    assert "last-verify" not in backups.root("ls -A /var/lib/provisioner-backup")


def test_diff_of_a_changed_private_key_shows_no_key_material(backups: Backups) -> None:
    new_key = backups.keys / "replacement"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(new_key)],
                   check=True)
    original = backups.inventory.read_text()
    edit_inventory(backups.inventory, lambda data: data["hosts"][backups.db.name]["vars"][
        "backups_offhost"].update(private_key={"secret": f"file:{new_key}"}))
    try:
        run = backups.provision("--check", "--diff", "--host", backups.db.name)
    finally:
        backups.inventory.write_text(original)

    assert run.exit_code == 0, run.output
    assert "offhost_key" in run.output
    for key in (new_key, backups.keys / "offhost"):
        body = key.read_text().splitlines()[1:-1]
        assert body and not [line for line in body if line in run.output], run.output


def test_rows_are_back_after_a_backup_a_dropped_database_and_a_restore(
        backups: Backups) -> None:
    backups.sql("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); "
                "INSERT INTO items (name) SELECT 'item ' || n FROM generate_series(1, 250) n; "
                "ALTER TABLE items OWNER TO app")
    # Database-level properties pg_dump leaves out unless told (the breaker's): a restore
    # --replace must keep them.
    for statement in PROPERTIES:
        backups.sql(statement, database="postgres")
    code, shown = backups.task("now", backups.db.name, "")
    assert code == 0, shown
    (archive,) = backups.archives()

    backups.sql("DROP DATABASE app WITH (FORCE)", database="postgres")
    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "", False)

    assert code == 0, shown
    assert backups.sql("SELECT count(*), min(name) FROM items") == "250|item 1"
    assert backups.sql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                       "WHERE datname = 'app'") == "app"


PROPERTIES = ("ALTER DATABASE app SET work_mem = '7MB'",
              "ALTER DATABASE app SET statement_timeout = '30s'",
              # A list setting (breaker C: it came back as one schema named "public, extra").
              "ALTER DATABASE app SET search_path = public, extra",
              "ALTER ROLE app IN DATABASE app SET work_mem = '5MB'",
              "REVOKE CONNECT, TEMP ON DATABASE app FROM PUBLIC",
              "GRANT CONNECT ON DATABASE app TO app", "COMMENT ON DATABASE app IS 'prod'")
#: datname|datacl|setconfig|comment as PROPERTIES leave app.
PROPERTIES_SHOWN = ('app|{app=CTc/app}|{work_mem=7MB,statement_timeout=30s,"search_path=public, '
                    'extra"}|prod')
#: The app role's own settings in app, as PROPERTIES leave them.
ROLE_SETTINGS_SHOWN = "{work_mem=5MB}"


def database_properties(backups: Backups, name: str = "app") -> str:
    return backups.sql("SELECT d.datname, d.datacl, s.setconfig, shobj_description(d.oid, "
                       "'pg_database') FROM pg_database d LEFT JOIN pg_db_role_setting s ON "
                       f"s.setdatabase = d.oid AND s.setrole = 0 WHERE d.datname = '{name}'",
                       database="postgres")


def test_a_live_database_is_not_overwritten_without_replace(backups: Backups) -> None:
    backups.sql("INSERT INTO items (name) VALUES ('written after the dump')")
    (archive,) = backups.archives()

    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "", False)

    assert code == 1
    assert "database app exists and is live: nothing restored. Add --replace" in shown
    assert backups.sql("SELECT count(*) FROM items") == "251"


def test_replace_swaps_the_live_database_for_the_archive(backups: Backups) -> None:
    (archive,) = backups.archives()

    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "", True)

    assert code == 0, shown
    assert backups.sql("SELECT count(*) FROM items") == "250"
    assert "provisioner_restore" not in backups.sql("SELECT string_agg(datname, ' ') FROM "
                                                    "pg_database", database="postgres")
    assert database_properties(backups) == PROPERTIES_SHOWN
    assert backups.sql("SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON "
                       "d.oid = s.setdatabase WHERE d.datname = 'app' AND s.setrole = "
                       "'app'::regrole", database="postgres") == ROLE_SETTINGS_SHOWN
    assert backups.root("tail -n 1 /var/lib/provisioner-backup/history").endswith(
        f" restore ok {archive}/app.dump into app, replacing the live one")


def test_replace_keeps_the_databases_encoding_and_locale(backups: Backups) -> None:
    (archive,) = backups.archives()
    shown_before = backups.sql("SELECT pg_encoding_to_char(encoding), datcollate, datctype "
                               "FROM pg_database WHERE datname = 'legacy'", database="postgres")

    code, shown = backups.task("restore", backups.db.name, f"{archive}/legacy.dump", "", True)

    assert code == 0, shown
    assert shown_before == "LATIN1|C|C"
    assert backups.sql("SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM "
                       "pg_database WHERE datname = 'legacy'", database="postgres") == shown_before


#: On the db host, as root: four clients connecting through PgBouncer as app and counting the
#: items, one attempt after another without pause (so some land in the moment the database is
#: swapped), one line each: start and end on the host's clock, which is the controller's (the
#: sandbox shares its kernel), and ok/fail; until the stop file appears.
CLIENT_LOOP = (
    "rm -f /tmp/loop.stop /tmp/loop.log; pw=$(cat /etc/provisioner/secrets/db_password); "
    "for db in app app reporting reporting; do ( while [ ! -e /tmp/loop.stop ]; do "
    "s=$(date +%s.%N); if PGPASSWORD=$pw psql -X -A -t -w \"host=127.0.0.1 port=6432 user=app "
    "dbname=$db connect_timeout=30\" -c 'SELECT count(*) FROM items' >/dev/null 2>&1; then "
    "r=ok; else r=fail; fi; echo \"$s $(date +%s.%N) $r\" >> /tmp/loop.log; done ) & done; wait")
#: One more client through PgBouncer, its query running throughout the restore (PAUSE waits for
#: running queries: every other client waited out its 10 s timeout).
SLEEPER = ("pw=$(cat /etc/provisioner/secrets/db_password); PGPASSWORD=$pw psql -X -w "
           "'host=127.0.0.1 port=6432 user=app dbname=app' -c 'SELECT pg_sleep(60)'; true")


@dataclass
class Attempts:
    """The clients' attempts around one restore: (seconds taken, ok/fail) of those begun once
    it had ended, and the longest of all that ended after it began."""

    after: list[tuple[float, str]]
    longest: float


def restore_under_clients(backups: Backups, archive: str, sleeper: bool = False) -> Attempts:
    """A restore --replace while clients connect through PgBouncer (to app and to its alias
    reporting) again and again, with a long query running through it when ``sleeper``."""
    script = f"( {SLEEPER} ) & {CLIENT_LOOP}" if sleeper else CLIENT_LOOP
    loop = subprocess.Popen([*sandbox.ssh_argv(backups.db, "admin"), "-o", "BatchMode=yes",
                             f"sudo -n bash -c {quote(script)}"])
    time.sleep(2)
    began = time.time()
    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "", True)
    finished = time.time()
    time.sleep(20)
    backups.root("touch /tmp/loop.stop")
    loop.wait(timeout=60)
    assert code == 0, shown
    attempts = [(float(start), float(end), result) for start, end, result in (
        line.split() for line in backups.root("cat /tmp/loop.log").splitlines())]
    return Attempts([(end - start, result) for start, end, result in attempts
                     if start > finished],
                    max(end - start for start, end, _ in attempts if end > began))


def test_pgbouncer_clients_are_served_at_once_after_a_replacing_restore(
        backups: Backups) -> None:
    (archive,) = backups.archives()
    config = "/etc/provisioner-backup/config"
    backups.root(f"sed -i 's/^PGBOUNCER_PORT=.*/PGBOUNCER_PORT=/' {config}")
    try:
        untold = restore_under_clients(backups, archive)  # as before: PgBouncer not told
    finally:
        backups.root(f"sed -i 's/^PGBOUNCER_PORT=.*/PGBOUNCER_PORT=6432/' {config}")
    told = restore_under_clients(backups, archive, sleeper=True)

    for name, seen in (("not told", untold), ("told", told)):
        print(f"PgBouncer {name}: longest attempt {seen.longest:.1f} s; after the restore "
              f"{len(seen.after)} attempts, {sum(r == 'fail' for _, r in seen.after)} failed, "
              f"longest {max(took for took, _ in seen.after):.1f} s")
    assert told.after and {result for _, result in told.after} == {"ok"}, told
    assert told.longest < 3, told


def test_a_file_that_is_not_an_archive_is_refused_by_the_host(backups: Backups) -> None:
    code, shown = backups.task("restore", backups.db.name, "20000101T000000Z/app.dump", "",
                               False)

    assert code == 1  # after contact: 2 is for what is wrong before it
    assert "there is no archive 20000101T000000Z/app.dump; the archives:" in shown


@pytest.mark.parametrize("system", ["postgres", "template1"])
def test_a_restore_into_a_system_database_is_refused_and_leaves_nothing(
        backups: Backups, system: str) -> None:
    (archive,) = backups.archives()

    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", system, True)

    assert code == 1
    assert f"--into {system} is a system database of PostgreSQL: nothing restored" in shown
    assert backups.sql("SELECT count(*) FROM pg_database WHERE datname LIKE "
                       "'provisioner\\_restore\\_%'", database="postgres") == "0"


def test_a_restore_that_fails_after_its_copy_was_made_drops_the_copy(backups: Backups) -> None:
    (archive,) = backups.archives()
    # A template database cannot be dropped: the swap fails after the restored copy exists.
    backups.sql("CREATE DATABASE frozen IS_TEMPLATE true", database="postgres")
    try:
        code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "frozen",
                                   True)
    finally:
        backups.sql("ALTER DATABASE frozen IS_TEMPLATE false", database="postgres")
        backups.sql("DROP DATABASE frozen", database="postgres")

    assert code == 1
    assert "the live database frozen could not be dropped (nothing replaced)" in shown
    assert backups.sql("SELECT count(*) FROM pg_database WHERE datname LIKE "
                       "'provisioner\\_restore\\_%'", database="postgres") == "0"


def test_the_restore_test_restores_counts_records_and_drops_its_scratch_copy(
        backups: Backups) -> None:
    code, shown = backups.task("verify", backups.db.name, "")

    assert code == 0, shown
    record = backups.status("verify")
    assert record["result"] == "ok"
    assert record["reason"] == "app (public.items 250); legacy (no tables)"
    assert backups.sql("SELECT count(*) FROM pg_database WHERE datname = "
                       "'provisioner_restore_test'", database="postgres") == "0"


def test_the_copy_on_the_backup_host_is_age_ciphertext_of_the_dump(backups: Backups) -> None:
    (archive,) = backups.archives()
    copy = f"{TARGET_DIRECTORY}/{backups.db.name}/{archive}/app.dump.age"

    head = backups.root(f"head -c 21 {copy}", machine=backups.vault)
    ciphertext = backups.root(f"base64 -w0 {copy}", machine=backups.vault)
    decrypted = backups.root(
        "t=$(mktemp -d) && read -r id && printf '%s\\n' \"$id\" > $t/identity && "
        "base64 -d > $t/copy && "
        "age --decrypt --identity $t/identity $t/copy | sha256sum; rm -rf $t",
        stdin=f"{backups.identity}\n{ciphertext}\n")

    assert head == "age-encryption.org/v1"
    assert backups.root(f"grep -c PGDMP {copy} || true", machine=backups.vault) == "0"
    assert decrypted == backups.root(f"sha256sum < {ARCHIVES}/{archive}/app.dump")


#: On the backup host, as root: the account's processes stopped as soon as one starts (the
#: breaker's kill -STOP of its sshd session), so the db host's copy hangs mid-run.
FREEZE = ("systemd-run --quiet --collect --unit=bkp-freeze sh -c 'while ! pkill -STOP -u "
          "pgbackup; do sleep 0.05; done; sleep 120'")


def test_a_hung_backup_host_fails_the_copy_in_time_and_the_next_run_sends_it(
        backups: Backups) -> None:
    before = backups.archives()
    backups.root(FREEZE, machine=backups.vault)
    try:
        started = time.monotonic()
        code, shown = backups.task("now", backups.db.name, "")
        took = time.monotonic() - started
    finally:
        backups.root("systemctl stop bkp-freeze; pkill -CONT -u pgbackup; true",
                     machine=backups.vault)
    print(f"backup.now against a hung backup host: exit {code} after {took:.1f} s")
    assert code == 1, shown
    assert "kept here, but the off-host copy failed: rsync of" in shown
    assert "Debian" not in shown.split("failed: rsync of", 1)[1]  # no login banner
    assert took < 40
    (stuck,) = sorted(set(backups.archives()) - set(before))
    assert backups.status("backup")["result"] == "failed"
    assert stuck not in backups.copies()

    code, shown = backups.task("now", backups.db.name, "")  # the host answers again

    assert code == 0, shown
    assert f"also copied {stuck}, whose copy had failed" in shown
    assert set(backups.archives()) <= set(backups.copies())


def test_a_scheduled_run_meeting_another_is_recorded_and_retried_soon(backups: Backups) -> None:
    unit = "provisioner-backup-verify.service"
    backups.root(f"mkdir -p /run/systemd/system/{unit}.d && printf '[Service]\\n"
                 "Environment=PROVISIONER_BACKUP_LOCK_WAIT=2\\nRestartSec=3\\n' > "
                 f"/run/systemd/system/{unit}.d/bkp.conf && systemctl daemon-reload && "
                 "systemd-run --quiet --collect --unit=bkp-hold-lock flock "
                 "/run/lock/provisioner-backup.lock sleep 6")
    try:
        backups.root(f"systemctl start --no-block {unit}")
        wait_for(lambda: "failed" in backups.root(
            "cat /var/lib/provisioner-backup/last-verify 2>/dev/null || true"), 30)
        failed = backups.status("verify")
        wait_for(lambda: backups.status("verify")["result"] == "ok", 60)
    finally:
        backups.root(f"rm -rf /run/systemd/system/{unit}.d && systemctl daemon-reload")

    assert "did not end within 2 s; this run is retried" in failed["reason"], failed
    history = backups.root("tail -n 3 /var/lib/provisioner-backup/history")
    assert " verify failed - another provisioner-backup run" in history, history


def test_a_failed_dump_leaves_no_half_archive_and_says_why(backups: Backups) -> None:
    before = backups.archives()
    backups.sql("ALTER DATABASE app ALLOW_CONNECTIONS false", database="postgres")
    try:
        code, shown = backups.task("now", backups.db.name, "")
    finally:
        backups.sql("ALTER DATABASE app ALLOW_CONNECTIONS true", database="postgres")

    assert code == 1
    assert "failed, no archive kept: cannot read database app" in shown
    assert 'database "app" is not currently accepting connections' in shown
    assert backups.root(f"ls -A {ARCHIVES}").split() == before
    assert backups.status("backup")["result"] == "failed"


def simulated_days() -> list[str]:
    """Forty nights at 02:00 before today, a second scheduled archive on one day, and backup.now
    runs at noon (after that night's archive) on some days, twice on one."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    names = [archive_name(midnight - timedelta(days=day, hours=-2)) for day in range(1, 41)]
    names.append(archive_name(midnight - timedelta(days=3, hours=-14)))
    names += [archive_name(midnight - timedelta(days=day, hours=-hour), on_demand=True)
              for day, hour in ((1, 12), (2, 12), (2, 15), (5, 12), (20, 12))]
    return names


def test_retention_over_forty_simulated_days_keeps_what_the_rule_says(
        backups: Backups) -> None:
    simulated = simulated_days()
    # Each as if made then and copied off the host then (so no later run sends it again).
    backups.root(f"umask 027 && cd {ARCHIVES} && for d in {' '.join(simulated)}; do mkdir $d && "
                 "touch $d/app.dump && chown -R postgres:postgres $d && "
                 "echo $d >> /var/lib/provisioner-backup/copied; done")
    everything = backups.archives()

    backups.root(f"{PROGRAM} prune")

    assert backups.archives() == sorted(kept_archives(everything, daily=7, weekly=4,
                                                      on_demand=3))
    assert len(everything) - len(backups.archives()) >= 30
    assert max(everything, key=archive_time) in backups.archives()
    scheduled = [name for name in backups.archives() if not name.endswith("-ondemand")]
    assert sorted(kept_archives([n for n in everything if not n.endswith("-ondemand")],
                                daily=7, weekly=4, on_demand=3)) == scheduled


def test_the_backup_hosts_own_pruning_keeps_what_the_rule_says(backups: Backups) -> None:
    client = f"{TARGET_DIRECTORY}/{backups.db.name}"
    simulated = simulated_days()
    ledger = f"/var/lib/provisioner-backup-target/{backups.db.name}/ledger"
    # Each arrived, as the ledger records, at the time its name gives.
    arrivals = "".join(f"{name} {int(archive_time(name).timestamp())} arrived\n"
                       for name in simulated)
    backups.root(f"cd {client} && for d in {' '.join(simulated)}; do mkdir $d && "
                 f"touch $d/app.dump.age; done && chown -R pgbackup:pgbackup . && "
                 f"cat >> {ledger}", machine=backups.vault, stdin=arrivals)
    everything = backups.copies()

    backups.root("systemctl start provisioner-backup-target-prune.service", machine=backups.vault)

    # Whatever arrived in the last 7 days stays (junk uploaded now cannot push it out); the
    # older arrivals follow the rule.
    young = {name for name in everything
             if datetime.now(UTC) - archive_time(name) < timedelta(days=7)}
    older = [name for name in everything if name not in young]
    assert backups.copies() == sorted(young | kept_archives(older, daily=7, weekly=4,
                                                            on_demand=3))
    # How many go depends on where today falls in the week (24 of 49 on one CI day): the equality
    # above is the rule; this only proves the prune did real work.
    assert len(everything) - len(backups.copies()) >= 20


#: The breaker's attack, as root on the db host with the client key: archives named in the
#: future, meant to be "the newest" so that pruning deletes every real copy.
FAKES = ("20991201T020000Z 20991208T020000Z 20991215T020000Z 20991222T020000Z "
         "20991223T020000Z 20991224T020000Z 20991225T020000Z 20991231T000000Z-ondemand "
         "20991231T000001Z-ondemand 20991231T000002Z-ondemand")


def test_uploads_named_in_the_future_cannot_make_the_prune_delete_the_real_copies(
        backups: Backups) -> None:
    real = backups.copies()
    client = f"{TARGET_DIRECTORY}/{backups.db.name}"
    fakes = backups.as_client(f"mkdir -p fakes && cd fakes && for d in {FAKES}; do mkdir -p $d "
                              "&& echo junk > $d/app.dump.age; done && "
                              'rsync --recursive -e "$SSH" -- ./ "$TARGET:"')
    one = backups.as_client('rsync --recursive -e "$SSH" -- fakes/20991201T020000Z/ '
                            '"$TARGET:20991201T020000Z/"')
    planted = backups.as_client(f'rsync --recursive -e "$SSH" -- fakes/20991201T020000Z/ '
                                f'"$TARGET:{real[-1]}/"')
    # Breaker C: a name a little ahead is accepted (clock skew) and arrives now, the newest.
    soon = archive_name(datetime.now(UTC) + timedelta(minutes=2))
    near = backups.as_client(f"mkdir -p soon/{soon} && echo junk > soon/{soon}/app.dump.age && "
                             f'rsync --recursive -e "$SSH" -- soon/{soon}/ "$TARGET:{soon}/"')
    # And fakes that reached the directory by other means (before this host refused them).
    backups.root(f"cd {client} && mkdir 20991202T020000Z 20261399T000000Z steal2 && chown "
                 "pgbackup:pgbackup 20991202T020000Z 20261399T000000Z steal2",
                 machine=backups.vault)

    pruned = backups.root("systemctl start provisioner-backup-target-prune.service; journalctl "
                          "-u provisioner-backup-target-prune.service -n 20 -o cat",
                          machine=backups.vault)
    last = backups.root("cat /var/lib/provisioner-backup-target/last-prune",
                        machine=backups.vault)
    after_prune = backups.copies()
    backups.root(f"cd {client} && rm -rf 20991202T020000Z 20261399T000000Z steal2 {soon} && "
                 "systemctl start provisioner-backup-target-prune.service", machine=backups.vault)

    assert fakes.returncode != 0 and "one archive directory at a time" in fakes.stderr, fakes
    assert one.returncode != 0 and "refused 20991201T020000Z: dated in the future" in one.stderr
    assert planted.returncode != 0 and "arrived complete already" in planted.stderr, planted
    assert near.returncode == 0, near
    assert set(real) <= set(after_prune) and soon in after_prune
    assert set(real) <= set(backups.copies())
    assert not [name for name in backups.copies() if name.startswith("2099")]
    assert "ignored 20991202T020000Z: dated in the future" in pruned, pruned
    assert "ignored steal2: not an archive name" in pruned, pruned
    assert "result=attention" in last and "20261399T000000Z" in last, last
    assert "result=ok" in backups.root("cat /var/lib/provisioner-backup-target/last-prune",
                                       machine=backups.vault)


def test_the_db_hosts_key_cannot_delete_or_overwrite_the_copies(backups: Backups) -> None:
    before = backups.copies()
    victim = f"{TARGET_DIRECTORY}/{backups.db.name}/{before[-1]}/app.dump.age"
    digest = backups.root(f"sha256sum < {victim}", machine=backups.vault)

    # A new archive's name gets past the forced command's own checks to rrsync, which refuses.
    fresh = archive_name(datetime.now(UTC), on_demand=True)
    wipe = backups.as_client(f'mkdir -p empty && rsync -r --delete -e "$SSH" empty/ '
                             f'"$TARGET:{fresh}/"')
    whole = backups.as_client('rsync -r --delete -e "$SSH" empty/ "$TARGET":')
    missing = backups.as_client(f'rsync -r --delete-missing-args -e "$SSH" {before[0]} "$TARGET":')
    overwrite = backups.as_client(
        f'mkdir -p {before[-1]} && echo forged > {before[-1]}/app.dump.age && '
        f'rsync -r -e "$SSH" {before[-1]}/ "$TARGET":{before[-1]}/')
    shell = backups.as_client(f'$SSH "$TARGET" rm -rf {before[-1]}')

    assert wipe.returncode != 0 and "has been disabled on this server" in wipe.stderr, wipe
    assert whole.returncode != 0 and "one archive directory at a time" in whole.stderr, whole
    assert missing.returncode != 0, missing
    assert shell.returncode != 0 and "may only upload backups with rsync" in shell.stderr, shell
    assert overwrite.returncode != 0 and "arrived complete already" in overwrite.stderr
    assert backups.copies() == before
    assert backups.root(f"sha256sum < {victim}", machine=backups.vault) == digest


def test_a_backup_now_whose_controller_dies_mid_run_still_completes(backups: Backups) -> None:
    before = backups.archives()
    # A lock on the table makes the dump wait for it, long enough to kill the controller.
    backups.root("systemd-run --quiet --collect --uid=postgres --unit=bkp-hold-items "
                 "psql -X -q -d app -c 'BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; "
                 "SELECT pg_sleep(15); COMMIT'")
    controller = subprocess.Popen(
        [sys.executable, "-m", "invoke", "backup.now", "--host", backups.db.name,
         "--inventory", str(backups.inventory)], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    unit = "provisioner-backup-ondemand.service"
    try:
        wait_for(lambda: backups.root(f"systemctl is-active {unit} || true") == "activating", 60)
    finally:
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait()
    close_keepers({backups.db.name, backups.db.address})  # and the kept SSH login with it
    assert backups.root(f"systemctl is-active {unit} || true") == "activating"

    code, shown = backups.task("now", backups.db.name, "")  # while it still runs
    assert code == 1
    assert "a backup, restore test or restore is running on this host already" in shown
    assert "(provisioner-backup-ondemand.service)" in shown, shown

    wait_for(lambda: backups.root(f"systemctl is-active {unit} || true") != "activating", 90)
    (new,) = sorted(set(backups.archives()) - set(before))
    assert new.endswith("-ondemand")
    assert new in backups.copies()
    record = backups.status("backup")
    assert (record["result"], record["archive"]) == ("ok", new), record
    assert "copied to pgbackup@" in record["reason"]


def wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {seconds} s"
        time.sleep(0.5)


def test_the_verify_specs_pass(backups: Backups) -> None:
    run = invoke_task("verify", inventory=backups.inventory,
                      report=backups.inventory.parent / "report.json")

    assert run.exit_code == 0, run.output


def test_a_new_schedule_reaches_the_timer(backups: Backups) -> None:
    run = backups.provision("--host", backups.db.name, "--set", "backups_schedule=03:15")

    assert run.exit_code == 0, run.output
    next_run = backups.root("systemctl show -p NextElapseUSecRealtime --value "
                            "provisioner-backup.timer")
    assert "03:15:00" in next_run
