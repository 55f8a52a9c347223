"""The backup_target role: each client's key restricted to rrsync in its own directory."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.step import Probed, Step
from roles.backup_target.role import PROGRAM, validate_inventory
from roles.backups.retention import archive_name, kept_archives
from tests.unit.fakes import host_config, no_facts

ROLE = load_role(PROJECT_ROOT / "roles" / "backup_target")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOfLgIEVizpS+RmkyStzKbk0oGodV/pHrFU3S7eynBjV db1"
INVENTORY = InventoryView.of_hosts([host_config("db1", "192.0.2.20", groups=["db"]),
                                    host_config("vault1", "192.0.2.30", groups=["backup"])])
CLIENTS = [{"host": "db1", "public_key": KEY}]


def merged(**inventory: Any) -> dict[str, Any]:
    return merge_role_variables([ROLE], {"backup_target_clients": CLIENTS, **inventory}, "test")


def role_steps(**inventory: Any) -> dict[str, Step]:
    config = host_config("vault1", "192.0.2.30", groups=["backup"], roles=["backup_target"])
    host = Host(config, merged(**inventory), no_facts, inventory=INVENTORY, show_diff=True)
    return {step.label: step for step in ROLE.steps(host.for_role(ROLE.template_dir))}


def authorized_keys(steps: dict[str, Step]) -> str:
    plan = steps["file /srv/provisioner-backups/.ssh/authorized_keys [controls §10]"].decide(
        Probed("absent"))
    assert plan.diff is not None
    return "".join(line[1:] + "\n" for line in plan.diff.splitlines()[2:]
                   if line.startswith("+"))


def test_a_clients_key_works_only_from_its_address_only_to_add_files_to_its_directory() -> None:
    assert authorized_keys(role_steps()) == (
        'restrict,from="192.0.2.20",command="/usr/local/sbin/provisioner-backup-target receive '
        f'/srv/provisioner-backups/db1 /var/lib/provisioner-backup-target/db1/ledger" {KEY}\n')


def test_each_client_gets_a_directory_only_the_account_can_enter() -> None:
    step = role_steps()["directory /srv/provisioner-backups/db1"]

    action = step.decide(Probed("absent")).action
    assert action is not None and "pgbackup:pgbackup" in action and "0700" in action


def test_the_account_joins_the_hardening_roles_ssh_group_when_that_role_is_there() -> None:
    step = role_steps(hardening_ssh_allow_group="ssh-users")["user pgbackup"]

    assert "--groups ssh-users" in (step.decide(Probed("")).action or "")


@pytest.mark.parametrize(("clients", "message"), [
    ([{"host": "db1"}], r"backup_target_clients\[0\] must be a mapping of exactly host and "),
    ([{"host": "db 1", "public_key": KEY}], r"backup_target_clients\[0\]\.host is 'db 1'"),
    ([{"host": "db1", "public_key": "AAAA"}], r"backup_target_clients\[0\]\.public_key must"),
    ([CLIENTS[0], CLIENTS[0]], r"backup_target_clients\[1\]\.host 'db1' is listed twice"),
])
def test_a_bad_client_is_refused_before_contact(clients: list[Any], message: str) -> None:
    with pytest.raises(RoleError, match=message):
        merged(backup_target_clients=clients)


def test_a_client_the_inventory_lacks_is_a_role_error() -> None:
    with pytest.raises(RoleError, match="names host 'db9', which is no host"):
        role_steps(backup_target_clients=[{"host": "db9", "public_key": KEY}])


@pytest.mark.parametrize(("variable", "value"), [
    ("backup_target_user", "Backup User"), ("backup_target_directory", "srv/backups"),
    ("backup_target_rrsync", "rrsync -ro"), ("backup_target_keep_daily", 0),
    ("backup_target_keep_on_demand", 0), ("backup_target_keep_weekly", -1),
    ("backup_target_prune_schedule", "nightly"),
])
def test_a_bad_account_or_path_is_refused_naming_it(variable: str, value: str) -> None:
    with pytest.raises(RoleError, match=f"^test: {variable} is"):
        merged(**{variable: value})


def test_a_client_the_inventory_lacks_is_refused_before_contact() -> None:
    variables = merged(backup_target_clients=[{"host": "db9", "public_key": KEY}])

    with pytest.raises(RoleError, match="names host 'db9', which is no host"):
        validate_inventory(variables, INVENTORY)


def written(step: Step) -> str:
    """What a file step writes to a host that lacks the file (from its diff)."""
    plan = step.decide(Probed("absent"))
    assert plan.diff is not None
    return "".join(line[1:] + "\n" for line in plan.diff.splitlines()[2:]
                   if line.startswith("+"))


def program(tmp_path: Path) -> Path:
    """The role's host program, rendered with a stand-in rrsync that prints what it was given
    and makes the directory the upload names (exit status $RRSYNC_EXIT, as rsync's)."""
    stand_in = tmp_path / "rrsync"
    stand_in.write_text('#!/bin/sh\nprintf \'%s|\' "$@" "$SSH_ORIGINAL_COMMAND"\n'
                        'mkdir -p "$4/${SSH_ORIGINAL_COMMAND##* }"\nexit "${RRSYNC_EXIT:-0}"\n')
    stand_in.chmod(0o755)
    steps = role_steps(backup_target_rrsync=str(stand_in))
    path = tmp_path / "provisioner-backup-target"
    path.write_text(written(steps[f"program {PROGRAM} [controls §10]"]))
    return path


NOW = datetime.now(UTC)
RECENT = archive_name(NOW - timedelta(hours=1))


def receive(tmp_path: Path, asked: str, exit_code: int = 0) -> subprocess.CompletedProcess[str]:
    """The forced command run as sshd runs it, for client db1 (directory and ledger in tmp)."""
    (tmp_path / "db1").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(program(tmp_path)), "receive", str(tmp_path / "db1"),
                           str(tmp_path / "ledger")],
                          env={"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": asked,
                               "RRSYNC_EXIT": str(exit_code)},
                          capture_output=True, text=True, check=False)


def ledger(tmp_path: Path) -> list[list[str]]:
    return [line.split() for line in (tmp_path / "ledger").read_text().splitlines()]


def upload(name: str) -> str:
    return f"rsync --server -logDtpre.iLsfxCIvu --chmod=D0700,F0600 . {name}/"


def test_an_upload_runs_rrsync_write_only_without_deletes_never_replacing_a_file(
        tmp_path: Path) -> None:
    done = receive(tmp_path, upload(RECENT))

    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"-wo|-no-del|-munge|{tmp_path / 'db1'}|rsync --server "
                           f"--ignore-existing -logDtpre.iLsfxCIvu --chmod=D0700,F0600 . "
                           f"{RECENT}/|")


def test_the_ledger_records_an_arrival_with_this_hosts_time_once_the_upload_completed(
        tmp_path: Path) -> None:
    failed = receive(tmp_path, upload(RECENT), exit_code=12)
    assert failed.returncode == 12
    assert [entry[2] for entry in ledger(tmp_path)] == ["partial"]  # a half upload: no archive

    done = receive(tmp_path, upload(RECENT))  # the next run completes it

    assert done.returncode == 0, done.stderr
    (name, _, partial), (again, arrived, state) = ledger(tmp_path)
    assert (name, partial, again, state) == (RECENT, "partial", RECENT, "arrived")
    assert abs(int(arrived) - NOW.timestamp()) < 60


def test_nothing_is_added_to_an_archive_that_arrived_complete(tmp_path: Path) -> None:
    assert receive(tmp_path, upload(RECENT)).returncode == 0

    planted = receive(tmp_path, upload(RECENT))

    assert (planted.returncode, planted.stdout) == (1, "")
    assert f"refused {RECENT}: it arrived complete already" in planted.stderr


@pytest.mark.parametrize(("name", "why"), [
    ("20991201T020000Z", "dated in the future"),
    ("20991231T000000Z-ondemand", "dated in the future"),
    ("20261399T000000Z", "not a valid date and time"),
    ("steal2", "not an archive name"),
])
def test_an_upload_named_in_the_future_or_not_as_an_archive_is_refused(
        tmp_path: Path, name: str, why: str) -> None:
    done = receive(tmp_path, upload(name))

    assert (done.returncode, done.stdout) == (1, "")
    assert f"refused {name}: {why}" in done.stderr
    assert not (tmp_path / "ledger").exists()


@pytest.mark.parametrize("asked", ["rsync --server -logDtpre.iLsfxCIvu . x/ y/",
                                   "rsync --server -logDtpre.iLsfxCIvu . .",
                                   "rsync --server -logDtpre.iLsfxCIvu . ./"])
def test_an_upload_of_the_whole_directory_at_once_is_refused(tmp_path: Path, asked: str) -> None:
    done = receive(tmp_path, asked)

    assert (done.returncode, done.stdout) == (1, "")
    assert "may only upload one archive directory at a time" in done.stderr


@pytest.mark.parametrize("asked", ["", "sh", "rm -rf /srv/b", "rsync --version"])
def test_a_client_key_runs_nothing_but_an_rsync_upload(tmp_path: Path, asked: str) -> None:
    done = receive(tmp_path, asked)

    assert (done.returncode, done.stdout) == (1, "")
    assert "this key may only upload backups with rsync" in done.stderr


def prune(tmp_path: Path, client: Path, *counts: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(program(tmp_path)), "prune-directory", str(client),
                           str(tmp_path / "ledger"), *counts],
                          capture_output=True, text=True, check=False)


def arrive(tmp_path: Path, client: Path, arrivals: dict[str, datetime]) -> None:
    """Archive directories in ``client`` and their arrival lines in the ledger."""
    with (tmp_path / "ledger").open("a") as ledger_file:
        for name, moment in arrivals.items():
            (client / name).mkdir(parents=True, exist_ok=True)
            (client / name / "app.dump.age").write_text("ciphertext")
            ledger_file.write(f"{name} {int(moment.timestamp())} arrived\n")


def test_the_backup_host_prunes_by_the_same_rule_as_the_database_host(tmp_path: Path) -> None:
    start = datetime(2025, 11, 2, 2, 0, tzinfo=UTC)  # in the past: no name is in the future
    moments = [start + timedelta(days=day) for day in range(40)]
    moments += [start + timedelta(days=day, hours=10) for day in (39, 38, 30, 12)]
    names = [archive_name(moment, on_demand=moment.hour == 12) for moment in moments]
    client = tmp_path / "db1"
    arrive(tmp_path, client, dict(zip(names, moments, strict=True)))
    (client / ".app.dump.age.Xy12").write_text("an upload under way")

    done = prune(tmp_path, client, "7", "4", "2")

    assert done.returncode == 0, done.stderr
    left = {entry.name for entry in client.iterdir()}
    assert left == kept_archives(names, daily=7, weekly=4, on_demand=2) | {".app.dump.age.Xy12"}


def test_pruning_ranks_by_arrival_so_names_a_client_chose_cannot_push_real_copies_out(
        tmp_path: Path) -> None:
    # The breaker's attack: real copies arrived over three days, then uploads named in 2099 (and
    # one planted by other means, so not refused on arrival) and one dated last year.
    client = tmp_path / "db1"
    real = {archive_name(NOW - timedelta(days=day)): NOW - timedelta(days=day, minutes=-5)
            for day in (2, 1, 0)}
    real[archive_name(NOW, on_demand=True)] = NOW
    arrive(tmp_path, client, real)
    (client / "20991201T020000Z").mkdir()
    (client / "20261399T000000Z").mkdir()
    arrive(tmp_path, client, {archive_name(NOW - timedelta(days=400)): NOW})

    done = prune(tmp_path, client, "7", "4", "1")

    assert done.returncode == 0, done.stderr
    assert set(real) <= {entry.name for entry in client.iterdir()}
    assert "db1: ignored 20991201T020000Z: dated in the future" in done.stdout
    assert "db1: ignored 20261399T000000Z: not a valid date and time" in done.stdout
    assert "20991201T020000Z" in {entry.name for entry in client.iterdir()}  # left for a look


def test_junk_a_compromised_client_uploads_now_cannot_push_a_copy_out(tmp_path: Path) -> None:
    """Breaker C: uploads that arrive now (named a little ahead, or in the past, on-demand or
    not) took today's and this week's places and the on-demand ones, and the prune removed
    every real copy. Whatever arrived in the last N days now stays."""
    client = tmp_path / "db1"
    real = {archive_name(NOW - timedelta(days=day)): NOW - timedelta(days=day, minutes=-5)
            for day in (3, 2, 1, 0)}
    real[archive_name(NOW - timedelta(minutes=30), on_demand=True)] = NOW - timedelta(minutes=30)
    real[archive_name(NOW - timedelta(minutes=20), on_demand=True)] = NOW - timedelta(minutes=20)
    arrive(tmp_path, client, real)
    junk = {archive_name(NOW + timedelta(minutes=2)): NOW,
            "20261101T010000Z-ondemand": NOW, "20261102T010000Z-ondemand": NOW,
            "20261103T010000Z-ondemand": NOW, "20261104T010000Z": NOW}
    arrive(tmp_path, client, junk)

    done = prune(tmp_path, client, "7", "4", "1")

    assert done.returncode == 0, done.stderr
    assert set(real) <= {entry.name for entry in client.iterdir()}, done.stdout
    assert "removed" not in done.stdout


def test_a_half_upload_is_no_archive_and_goes_after_three_days(tmp_path: Path) -> None:
    client = tmp_path / "db1"
    arrive(tmp_path, client, {archive_name(NOW - timedelta(days=1)): NOW - timedelta(days=1)})
    stale, fresh = (archive_name(NOW - timedelta(days=days)) for days in (5, 0))
    for name, days in ((stale, 5), (fresh, 0)):
        (client / name).mkdir()
        with (tmp_path / "ledger").open("a") as ledger_file:
            moment = int((NOW - timedelta(days=days)).timestamp())
            ledger_file.write(f"{name} {moment} partial\n")

    done = prune(tmp_path, client, "1", "0", "1")

    assert done.returncode == 0, done.stderr
    assert f"db1: removed {stale} (an upload that never completed)" in done.stdout
    assert {entry.name for entry in client.iterdir()} == {
        archive_name(NOW - timedelta(days=1)), fresh}


def test_copies_that_arrived_before_there_was_a_ledger_are_adopted_by_their_names(
        tmp_path: Path) -> None:
    client = tmp_path / "db1"
    names = [archive_name(NOW - timedelta(days=day)) for day in range(10)]
    for name in [*names, "20991201T020000Z"]:
        (client / name).mkdir(parents=True)

    done = prune(tmp_path, client, "3", "0", "1")

    assert done.returncode == 0, done.stderr
    left = {entry.name for entry in client.iterdir()}
    # The last 3 days' arrivals stay by time, the next 3 days' by the daily rule.
    assert left == set(names[:6]) | {"20991201T020000Z"}
    assert "20991201T020000Z" not in (tmp_path / "ledger").read_text()


def test_pruning_runs_on_the_backup_hosts_own_timer_with_its_own_counts() -> None:
    steps = role_steps(backup_target_keep_daily=14, backup_target_prune_schedule="06:15")

    config = written(steps["file /etc/provisioner-backup-target/config"])
    assert config.splitlines()[1:] == [
        "ROOT=/srv/provisioner-backups", "CLIENTS=db1", "KEEP_DAILY=14", "KEEP_WEEKLY=4",
        "KEEP_ON_DEMAND=3"]
    assert "OnCalendar=*-*-* 06:15:00\n" in written(
        steps["template /etc/systemd/system/provisioner-backup-target-prune.timer"])
    assert "ExecStart=/usr/local/sbin/provisioner-backup-target prune\n" in written(
        steps["template /etc/systemd/system/provisioner-backup-target-prune.service"])
    assert "timer provisioner-backup-target-prune.timer [controls §10]" in steps
