"""Which backup archives retention keeps: the newest N daily and the newest M weekly.

A pure function of the archives' UTC timestamps, so it can be unit-tested; the host program
(templates/usr/local/sbin/provisioner-backup.j2, ``prune``) applies the same rule, and the
integration test proves it does by simulating forty days of archives on a real host.

The rule: walking the archives from newest to oldest, an archive is a day's *daily* when it is
the newest of its UTC day, and a week's *weekly* when it is the newest of its ISO week (Monday
to Sunday, UTC). The dailies of the N newest days that have an archive are kept, and the
weeklies of the M newest weeks that have one; everything else goes. Counting days that have an
archive, rather than calendar days back from now, means backups that stopped for a while are
never all deleted by the passing of time: the newest is always kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

#: An archive's directory name: its UTC start time, e.g. 20261202T020000Z.
ARCHIVE_NAME = re.compile(r"^\d{8}T\d{6}Z$")


def archive_time(name: str) -> datetime:
    """The UTC time an archive directory's name gives; ValueError for another name."""
    if not ARCHIVE_NAME.match(name):
        raise ValueError(f"{name!r} is not an archive name (YYYYMMDDTHHMMSSZ)")
    return datetime.strptime(name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def archive_name(moment: datetime) -> str:
    """The directory name of an archive started at ``moment`` (converted to UTC)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def kept_archives(names: Iterable[str], daily: int, weekly: int) -> set[str]:
    """The archive names retention keeps out of ``names`` (see the module docstring)."""
    kept: set[str] = set()
    days: set[str] = set()
    weeks: set[tuple[int, int]] = set()
    for name in sorted(names, reverse=True):
        moment = archive_time(name)
        day = name[:8]
        week = moment.isocalendar()[:2]
        if day not in days and len(days) < daily:
            days.add(day)
            kept.add(name)
        if week not in weeks and len(weeks) < weekly:
            weeks.add(week)
            kept.add(name)
    return kept
