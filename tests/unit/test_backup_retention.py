"""Backup retention: the newest N daily and M weekly archives, a pure function of their names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from roles.backups.retention import archive_name, archive_time, kept_archives

START = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # a Sunday


def nightly(days: int, start: datetime = START) -> list[str]:
    return [archive_name(start + timedelta(days=day)) for day in range(days)]


def test_forty_nights_keep_the_last_seven_days_and_the_last_four_weeks() -> None:
    kept = kept_archives(nightly(40), daily=7, weekly=4)

    assert sorted(kept) == [
        "20261122T020000Z",  # Sunday: the newest of the ISO week Nov 16-22
        "20261129T020000Z",  # Sunday: of the week Nov 23-29
        "20261204T020000Z", "20261205T020000Z",
        "20261206T020000Z",  # a daily, and the newest of the week Nov 30-Dec 6
        "20261207T020000Z", "20261208T020000Z", "20261209T020000Z",
        "20261210T020000Z",  # a daily, and the newest of this week
    ]


def test_only_the_newest_archive_of_a_day_counts_as_that_days_daily() -> None:
    names = ["20261201T020000Z", "20261201T140000Z", "20261202T020000Z"]

    assert kept_archives(names, daily=2, weekly=0) == {"20261201T140000Z", "20261202T020000Z"}


def test_days_without_archives_are_not_counted_so_old_archives_survive_a_pause() -> None:
    names = nightly(3) + nightly(2, START + timedelta(days=30))

    assert kept_archives(names, daily=4, weekly=0) == set(names[1:])


def test_no_weekly_keeps_the_dailies_only() -> None:
    assert kept_archives(nightly(10), daily=3, weekly=0) == set(nightly(10)[-3:])


def test_the_newest_archive_is_always_kept() -> None:
    assert "20261210T020000Z" in kept_archives(nightly(40), daily=1, weekly=0)


def test_no_archives_keep_nothing() -> None:
    assert kept_archives([], daily=7, weekly=4) == set()


def test_an_archive_name_is_its_utc_start_time() -> None:
    moment = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)

    assert archive_time(archive_name(moment)) == moment


@pytest.mark.parametrize("name", ["20261202T020000", ".partial-20261202T020000Z", "latest"])
def test_other_names_are_no_archives(name: str) -> None:
    with pytest.raises(ValueError, match="is not an archive name"):
        archive_time(name)
