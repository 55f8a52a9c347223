"""The backups spec's freshness checks, against a stand-in host: an archive named in the future
is flagged and never counts as the latest (a breaker's 20300101T020000Z made a 12-day-old backup
look fresh, with a negative age)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roles.backups import spec
from roles.backups.retention import archive_name

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
VARS = {"backups_directory": "/var/backups/postgresql-dumps", "backups_schedule": "02:00",
        "backups_grace_hours": 6}


@dataclass
class StandInHost:
    """What the spec asks of a testinfra host: the clock and the archive directory's names."""

    names: list[str]
    asked: list[str] = field(default_factory=list)

    def check_output(self, command: str) -> str:
        self.asked.append(command)
        if command == "date -u +%s":
            return str(int(NOW.timestamp()))
        assert command == f"ls -1 {VARS['backups_directory']}"
        return "\n".join(self.names)

    def file(self, path: str) -> Any:
        raise AssertionError(f"not asked for in these tests: {path}")


def test_an_archive_named_in_the_future_is_flagged() -> None:
    host = StandInHost([archive_name(NOW - timedelta(hours=13)), "20300101T020000Z"])

    with pytest.raises(AssertionError, match="20300101T020000Z in /var/backups/postgresql-dumps "
                                             "is dated in the future"):
        spec.test_no_archive_is_dated_in_the_future(host, VARS)


def test_an_archive_named_in_the_future_never_makes_a_stale_backup_look_fresh() -> None:
    stale = archive_name(NOW - timedelta(days=12))
    host = StandInHost([stale, "20300101T020000Z"])

    with pytest.raises(AssertionError, match=f"the latest archive, {stale}, is 12 days, 0:00:00 "
                                             r"old; the schedule \(02:00\) and "
                                             "backups_grace_hours allow 1 day, 6:00:00"):
        spec.test_the_latest_backup_is_as_recent_as_the_schedule_allows(host, VARS)


def test_a_fresh_archive_and_a_few_minutes_of_clock_skew_pass() -> None:
    host = StandInHost([archive_name(NOW - timedelta(hours=13)),
                        archive_name(NOW + timedelta(minutes=5), on_demand=True)])

    spec.test_no_archive_is_dated_in_the_future(host, VARS)
    spec.test_the_latest_backup_is_as_recent_as_the_schedule_allows(host, VARS)
