"""The backup tasks' command line: hosts and archives judged before any host is contacted."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli import backup as backup_cli
from provisioner.cli import load
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from tests.unit.fakes import never_shown

# Addresses of TEST-NET-1: a test that contacted them would hang, not pass.
INVENTORY = """\
    defaults:
      user: admin
      ssh: {known_hosts: /dev/null}
    groups:
      db: {roles: [backups]}
      web: {roles: [ufw]}
    hosts:
      db1: {address: 192.0.2.20, groups: [db], vars: {backups_databases: [app]}}
      db2: {address: 192.0.2.21, groups: [db], vars: {backups_databases: [app]}}
      web1: {address: 192.0.2.10, groups: [web]}
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(INVENTORY))
    return load(str(path))


def test_every_host_with_the_role_is_chosen_when_none_is_named(inventory: Inventory) -> None:
    jobs = backup_cli.backup_jobs(inventory, "", "")

    assert [job.config.name for job in jobs] == ["db1", "db2"]


def test_a_named_host_without_the_role_is_refused_before_contact(inventory: Inventory) -> None:
    with pytest.raises(ProvisionerError, match=r"web1 of .* has no backups role, so no backup "
                                                "program"):
        backup_cli.now(inventory, "db1,web1", "", never_shown)


def test_an_unknown_host_is_refused_naming_the_hosts_there_are(inventory: Inventory) -> None:
    with pytest.raises(ProvisionerError, match=r"--host db3: no such host .* Did you mean"):
        backup_cli.verify(inventory, "db3", "", never_shown)


def test_an_inventory_without_the_role_says_so(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("hosts:\n  web1: {address: 192.0.2.10, roles: [ufw]}\n")

    with pytest.raises(ProvisionerError, match=r"no host of .* has the backups role"):
        backup_cli.list_archives(load(str(path)), "", "", never_shown)


@pytest.mark.parametrize(("host", "file", "into", "message"), [
    ("", "20261202T020000Z/app.dump", "", "needs --host naming exactly one host"),
    ("db1,db2", "20261202T020000Z/app.dump", "", "needs --host naming exactly one host"),
    ("db1", "app.dump", "", "--file 'app.dump' is not an archive as backup.list names them"),
    ("db1", "20261202T020000Z/globals.sql", "", "is not an archive as backup.list names"),
    ("db1", "20261202T020000Z/../etc.dump", "", "is not an archive as backup.list names"),
    ("db1", "20261202T020000Z/app.dump", "app; drop", "--into 'app; drop' is not a database"),
])
def test_a_restore_that_cannot_be_right_is_refused_before_contact(
        inventory: Inventory, host: str, file: str, into: str, message: str) -> None:
    with pytest.raises(ProvisionerError, match=message.replace(".", r"\.")):
        backup_cli.restore(inventory, host, file, into, False, never_shown)


def test_a_restore_asks_the_program_for_exactly_what_was_given() -> None:
    assert backup_cli.restore_arguments("db1", "20261202T020000Z/app.dump", "app_copy",
                                        True) == [
        "restore", "20261202T020000Z/app.dump", "--into", "app_copy", "--replace"]


def test_an_on_demand_archive_can_be_restored() -> None:
    assert backup_cli.restore_arguments("db1", "20261202T143000Z-ondemand/app.dump", "",
                                        False) == ["restore", "20261202T143000Z-ondemand/app.dump"]


def test_backup_now_asks_the_host_to_run_its_on_demand_unit(
        inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []
    monkeypatch.setattr(backup_cli, "_run", lambda job, arguments, show, **_: asked.append(
        list(arguments)) or 0)

    assert backup_cli.now(inventory, "db1", "", never_shown) == 0
    assert asked == [["run-now"]]


# 2 is the tasks' code for what is wrong before any contact; whatever the host says after it
# (its own usage error 2, 3 refused, 4 no archive to verify yet, 127 no program) is 1.
@pytest.mark.parametrize(("program", "task"), [(0, 0), (1, 1), (2, 1), (3, 1), (4, 1),
                                               (127, 1)])
def test_the_programs_exit_becomes_the_tasks(program: int, task: int) -> None:
    assert backup_cli.exit_code(program) == task


def test_a_ctrl_c_during_backup_now_says_the_backup_carries_on(
        inventory: Inventory, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: Any, **__: Any) -> int:
        raise KeyboardInterrupt
    monkeypatch.setattr(backup_cli, "_run", interrupted)
    shown: list[tuple[str, bool]] = []

    code = backup_cli.now(inventory, "db1", "", lambda text, error: shown.append((text, error)))

    assert code == 1
    ((text, error),) = shown
    assert error and "a backup already started carries on on the host" in text
