"""Backups on real machines: a db host (postgres, backups) and a backup host (backup_target).

Real PostgreSQL, real pg_dump and pg_restore, real rsync over SSH into rrsync, real age. Rows
written are back after a backup, a dropped database and a restore; a live database is not
overwritten without --replace; the restore test records its success; retention keeps exactly
what roles/backups/retention.py says over forty simulated days; a dump that fails leaves no
half archive; the copy on the backup host is age ciphertext that decrypts to the dump; a second
run changes nothing and both roles' specs pass. The tests run in order, each from the state the
one before left.
"""

from __future__ import annotations

import subprocess
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
from roles.backups.retention import archive_name, kept_archives
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
            data["groups"] = {"db": {"roles": ["postgres", "backups"]},
                              "backup": {"roles": ["backup_target"]}}
            data["hosts"][db.name].update(groups=["db"], vars={
                "postgres_roles": [{"name": "app", "login": False}],
                "postgres_databases": [{"name": "app", "owner": "app"}],
                "postgres_maintenance": False,
                "backups_offhost": {"host": vault.name,
                                    "private_key": {"secret": f"file:{keys / 'offhost'}"},
                                    "host_key": " ".join(host_key[:2]),
                                    "age_recipient": recipient}})
            data["hosts"][vault.name].update(groups=["backup"], vars={
                "backup_target_clients": [{"host": db.name, "public_key": (
                    keys / "offhost.pub").read_text().strip()}]})

        edit_inventory(inventory, describe)
        yield Backups(db, vault, inventory, identity)


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


def test_rows_are_back_after_a_backup_a_dropped_database_and_a_restore(
        backups: Backups) -> None:
    backups.sql("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); "
                "INSERT INTO items (name) SELECT 'item ' || n FROM generate_series(1, 250) n; "
                "ALTER TABLE items OWNER TO app")
    code, shown = backups.task("now", backups.db.name, "")
    assert code == 0, shown
    (archive,) = backups.archives()

    backups.sql("DROP DATABASE app WITH (FORCE)", database="postgres")
    code, shown = backups.task("restore", backups.db.name, f"{archive}/app.dump", "", False)

    assert code == 0, shown
    assert backups.sql("SELECT count(*), min(name) FROM items") == "250|item 1"
    assert backups.sql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                       "WHERE datname = 'app'") == "app"


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


def test_a_file_that_is_not_an_archive_is_refused_by_the_host(backups: Backups) -> None:
    code, shown = backups.task("restore", backups.db.name, "20000101T000000Z/app.dump", "",
                               False)

    assert code == 2
    assert "there is no archive 20000101T000000Z/app.dump; the archives:" in shown


def test_the_restore_test_restores_counts_records_and_drops_its_scratch_copy(
        backups: Backups) -> None:
    code, shown = backups.task("verify", backups.db.name, "")

    assert code == 0, shown
    record = backups.status("verify")
    assert record["result"] == "ok"
    assert record["reason"] == "app (public.items 250)"
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


def test_retention_over_forty_simulated_days_keeps_what_the_rule_says(
        backups: Backups) -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    simulated = [archive_name(midnight - timedelta(days=day, hours=-2)) for day in range(1, 41)]
    simulated.append(archive_name(midnight - timedelta(days=3, hours=-14)))  # a second that day
    backups.root(f"umask 027 && cd {ARCHIVES} && for d in {' '.join(simulated)}; do mkdir $d && "
                 "touch $d/app.dump && chown -R postgres:postgres $d; done")
    everything = backups.archives()

    backups.root(f"{PROGRAM} prune")

    assert backups.archives() == sorted(kept_archives(everything, daily=7, weekly=4))
    assert len(everything) - len(backups.archives()) >= 30


def test_the_next_backup_mirrors_retention_onto_the_backup_host(backups: Backups) -> None:
    code, shown = backups.task("now", backups.db.name, "")

    assert code == 0, shown
    remote = backups.root(f"ls -1 {TARGET_DIRECTORY}/{backups.db.name}", machine=backups.vault)
    assert sorted(remote.split()) == backups.archives()


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
