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
        f'/srv/provisioner-backups/db1" {KEY}\n')


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
    """The role's host program, rendered with a stand-in rrsync that prints what it was given."""
    stand_in = tmp_path / "rrsync"
    stand_in.write_text('#!/bin/sh\nprintf \'%s|\' "$@" "$SSH_ORIGINAL_COMMAND"\n')
    stand_in.chmod(0o755)
    steps = role_steps(backup_target_rrsync=str(stand_in))
    path = tmp_path / "provisioner-backup-target"
    path.write_text(written(steps[f"program {PROGRAM} [controls §10]"]))
    return path


def receive(tmp_path: Path, asked: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(program(tmp_path)), "receive", "/srv/b/db1"],
                          env={"PATH": os.environ["PATH"], "SSH_ORIGINAL_COMMAND": asked},
                          capture_output=True, text=True, check=False)


def test_an_upload_runs_rrsync_write_only_without_deletes_never_replacing_a_file(
        tmp_path: Path) -> None:
    done = receive(tmp_path, "rsync --server -logDtpre.iLsfxCIvu --chmod=D0700,F0600 . 2026/")

    assert done.returncode == 0, done.stderr
    assert done.stdout == ("-wo|-no-del|-munge|/srv/b/db1|rsync --server --ignore-existing "
                           "-logDtpre.iLsfxCIvu --chmod=D0700,F0600 . 2026/|")


@pytest.mark.parametrize("asked", ["", "sh", "rm -rf /srv/b", "rsync --version"])
def test_a_client_key_runs_nothing_but_an_rsync_upload(tmp_path: Path, asked: str) -> None:
    done = receive(tmp_path, asked)

    assert (done.returncode, done.stdout) == (1, "")
    assert "this key may only upload backups with rsync" in done.stderr


def test_the_backup_host_prunes_by_the_same_rule_as_the_database_host(tmp_path: Path) -> None:
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    names = [archive_name(start + timedelta(days=day)) for day in range(40)]
    names += [archive_name(start + timedelta(days=day, hours=10), on_demand=True)
              for day in (39, 38, 30, 12)]
    client = tmp_path / "db1"
    for name in names:
        (client / name).mkdir(parents=True)
        (client / name / "app.dump.age").write_text("ciphertext")
    (client / ".app.dump.age.Xy12").write_text("an upload under way")

    done = subprocess.run(["bash", str(program(tmp_path)), "prune-directory", str(client), "7",
                           "4", "2"], capture_output=True, text=True, check=False)

    assert done.returncode == 0, done.stderr
    left = {entry.name for entry in client.iterdir()}
    assert left == kept_archives(names, daily=7, weekly=4, on_demand=2) | {".app.dump.age.Xy12"}


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
