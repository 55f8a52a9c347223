"""backups spec: the program and its timers are in place, and the backups are fresh and restorable.

Fails when the latest archive is older than the schedule's longest gap allows (plus
backups_grace_hours), when the last backup run failed, or when the last restore test failed,
is overdue, or never ran although one was owed (a verify interval after the first backup).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roles.backups.retention import ARCHIVE_NAME, archive_time
from roles.backups.schedule import parse_schedule

PROGRAM = "/usr/local/sbin/provisioner-backup"
STATUS_DIR = "/var/lib/provisioner-backup"
TIMERS = {"provisioner-backup.timer": "backups_schedule",
          "provisioner-backup-verify.timer": "backups_verify_schedule"}


def host_now(host: Any) -> datetime:
    return datetime.fromtimestamp(int(host.check_output("date -u +%s")), UTC)


def status(host: Any, name: str) -> dict[str, str] | None:
    """A status record of the program (key=value lines), None when it was never written."""
    record = host.file(f"{STATUS_DIR}/{name}")
    if not record.exists:
        return None
    return dict(line.split("=", 1) for line in record.content_string.splitlines() if "=" in line)


def allowed_age(role_vars: dict[str, Any], variable: str) -> timedelta:
    gap = parse_schedule(variable, role_vars[variable]).longest_gap
    return gap + timedelta(hours=role_vars["backups_grace_hours"])


def test_the_program_is_root_only(host: Any) -> None:
    program = host.file(PROGRAM)
    assert (program.user, program.group, program.mode) == ("root", "root", 0o750)


def test_the_archive_directory_is_postgres_only(host: Any, role_vars: dict[str, Any]) -> None:
    directory = host.file(role_vars["backups_directory"])
    assert directory.is_directory
    assert (directory.user, directory.group, directory.mode) == ("postgres", "postgres", 0o750)


def test_no_archive_file_is_readable_by_others(host: Any, role_vars: dict[str, Any]) -> None:
    readable = host.check_output(f"find {role_vars['backups_directory']} -perm /o+rwx")
    assert readable == ""


def test_the_offhost_key_is_root_only_when_there_is_a_copy(host: Any,
                                                          role_vars: dict[str, Any]) -> None:
    key = host.file("/etc/provisioner-backup/offhost_key")
    assert key.exists == bool(role_vars["backups_offhost"])
    if key.exists:
        assert (key.user, key.mode) == ("root", 0o600)


@pytest.mark.parametrize("timer", sorted(TIMERS))
def test_the_timer_is_enabled_and_waiting(host: Any, timer: str) -> None:
    unit = host.service(timer)
    assert unit.is_enabled and unit.is_running


@pytest.mark.parametrize("timer", sorted(TIMERS))
def test_the_timer_follows_the_inventory_schedule(host: Any, role_vars: dict[str, Any],
                                                  timer: str) -> None:
    wanted = parse_schedule(TIMERS[timer], role_vars[TIMERS[timer]]).on_calendar
    calendar = host.check_output(f"systemctl show -p TimersCalendar --value {timer}")
    assert f"OnCalendar={wanted} ;" in calendar


#: How far an archive's name may lie ahead of the host's clock (as the program allows).
CLOCK_SKEW = timedelta(minutes=15)


def archive_names(host: Any, role_vars: dict[str, Any]) -> list[str]:
    return [name for name in host.check_output(
        f"ls -1 {role_vars['backups_directory']}").split() if ARCHIVE_NAME.match(name)]


def test_no_archive_is_dated_in_the_future(host: Any, role_vars: dict[str, Any]) -> None:
    limit = host_now(host) + CLOCK_SKEW
    future = [name for name in archive_names(host, role_vars) if archive_time(name) > limit]
    assert not future, (f"{', '.join(future)} in {role_vars['backups_directory']} "
                        "is dated in the future, so made by no backup of this host: look at it "
                        "and remove it by hand")


def test_the_latest_backup_is_as_recent_as_the_schedule_allows(
        host: Any, role_vars: dict[str, Any]) -> None:
    now = host_now(host)
    names = [name for name in archive_names(host, role_vars)
             if archive_time(name) <= now + CLOCK_SKEW]
    allowed = allowed_age(role_vars, "backups_schedule")
    if names:
        age = now - archive_time(max(names, key=archive_time))
        assert age <= allowed, (
            f"the latest archive, {max(names)}, is {age} old; the schedule "
            f"({role_vars['backups_schedule']}) and backups_grace_hours allow {allowed}: see "
            "journalctl -u provisioner-backup.service and invoke backup.list")
    else:
        installed = datetime.fromtimestamp(host.file(PROGRAM).mtime.timestamp(), UTC)
        assert now - installed <= allowed, "no backup has run since the role was " \
            f"applied at {installed:%Y-%m-%d %H:%M} UTC"


def test_the_last_backup_run_succeeded(host: Any) -> None:
    record = status(host, "last-backup")
    assert record is None or record["result"] == "ok", record


def test_the_last_restore_test_passed_and_is_not_overdue(host: Any,
                                                         role_vars: dict[str, Any]) -> None:
    record = status(host, "last-verify")
    allowed = allowed_age(role_vars, "backups_verify_schedule")
    now = host_now(host)
    if record is None:
        first = host.file(f"{STATUS_DIR}/first-backup")
        if first.exists:
            began = datetime.strptime(first.content_string.strip(), "%Y-%m-%dT%H:%M:%SZ")
            assert now - began.replace(tzinfo=UTC) <= allowed, \
                f"backups began at {began} UTC and no restore test has run since"
        return
    assert record["result"] == "ok", record
    tested = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert now - tested <= allowed, f"the last restore test ran at {tested}"
