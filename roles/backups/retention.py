"""Which archives retention keeps: scheduled ones by day and week, on-demand ones by count.

A pure function of the archives' names, so it can be unit-tested; the host program
(templates/usr/local/sbin/provisioner-backup.j2, ``prune``) and the backup host's own pruning
(roles/backup_target, provisioner-backup-target) apply the same rule, and the integration test
proves they do by simulating forty days of archives on real hosts.

An archive's name says how it was made: ``20261202T020000Z`` was started by the timer
(*scheduled*), ``20261202T143000Z-ondemand`` by ``invoke backup.now`` (*on demand*). Two rules,
one for each kind, so an on-demand archive never costs a scheduled one its place (a breaker
found a backup.now at noon pruning that night's archive, as the newest of the day):

- **Scheduled**: walking them from newest to oldest, one is a day's *daily* when it is the
  newest scheduled archive of its UTC day, and a week's *weekly* when it is the newest of its ISO
  week (Monday to Sunday, UTC). The dailies of the N newest days that have one are kept, and the
  weeklies of the M newest weeks that have one. Counting days that have an archive, rather than
  calendar days back from now, means backups that stopped for a while are never all deleted by
  the passing of time: the newest is always kept.
- **On demand**: the K newest are kept (K at least 1), whatever their days; the others go. So
  the newest archive of either kind is always kept, and a burst of backup.now runs costs at
  most K archives of space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

#: The suffix of an archive made on demand (invoke backup.now), not by the timer.
ON_DEMAND = "-ondemand"
#: An archive's directory name: its UTC start time, e.g. 20261202T020000Z, and the on-demand
#: suffix when backup.now made it.
ARCHIVE_NAME = re.compile(r"^\d{8}T\d{6}Z(-ondemand)?$")


def archive_time(name: str) -> datetime:
    """The UTC time an archive directory's name gives; ValueError for another name."""
    if not ARCHIVE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an archive name (YYYYMMDDTHHMMSSZ, with "
                         f"{ON_DEMAND} when made on demand)")
    return datetime.strptime(name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def archive_name(moment: datetime, on_demand: bool = False) -> str:
    """The directory name of an archive started at ``moment`` (converted to UTC)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") + (ON_DEMAND if on_demand else "")


def is_on_demand(name: str) -> bool:
    return name.endswith(ON_DEMAND)


def kept_archives(names: Iterable[str], daily: int, weekly: int, on_demand: int) -> set[str]:
    """The archive names retention keeps out of ``names`` (see the module docstring)."""
    ordered = sorted(names, key=archive_time, reverse=True)  # ValueError for another name
    kept = set([name for name in ordered if is_on_demand(name)][:on_demand])
    days: set[str] = set()
    weeks: set[tuple[int, int]] = set()
    for name in (name for name in ordered if not is_on_demand(name)):
        day = name[:8]
        week = archive_time(name).isocalendar()[:2]
        if day not in days and len(days) < daily:
            days.add(day)
            kept.add(name)
        if week not in weeks and len(weeks) < weekly:
            weeks.add(week)
            kept.add(name)
    return kept
