"""Backup retention: the newest N daily and M weekly scheduled archives and the newest K on-demand
ones, a pure function of their names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from roles.backups.retention import archive_name, archive_time, kept_archives

START = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # a Sunday


def nightly(days: int, start: datetime = START) -> list[str]:
    return [archive_name(start + timedelta(days=day)) for day in range(days)]


def test_forty_nights_keep_the_last_seven_days_and_the_last_four_weeks() -> None:
    kept = kept_archives(nightly(40), daily=7, weekly=4, on_demand=3)

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

    assert kept_archives(names, daily=2, weekly=0, on_demand=3) == {
        "20261201T140000Z", "20261202T020000Z"}


def test_days_without_archives_are_not_counted_so_old_archives_survive_a_pause() -> None:
    names = nightly(3) + nightly(2, START + timedelta(days=30))

    assert kept_archives(names, daily=4, weekly=0, on_demand=3) == set(names[1:])


def test_no_weekly_keeps_the_dailies_only() -> None:
    assert kept_archives(nightly(10), daily=3, weekly=0, on_demand=3) == set(nightly(10)[-3:])


def test_the_newest_archive_is_always_kept() -> None:
    assert "20261210T020000Z" in kept_archives(nightly(40), daily=1, weekly=0, on_demand=1)


def test_no_archives_keep_nothing() -> None:
    assert kept_archives([], daily=7, weekly=4, on_demand=3) == set()


def test_an_archive_name_is_its_utc_start_time() -> None:
    moment = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)

    assert archive_time(archive_name(moment)) == moment


#: The nine scheduled archives 7 daily / 4 weekly keep of forty nights from START.
FORTY_NIGHTS_KEPT = {
    "20261122T020000Z", "20261129T020000Z", "20261204T020000Z", "20261205T020000Z",
    "20261206T020000Z", "20261207T020000Z", "20261208T020000Z", "20261209T020000Z",
    "20261210T020000Z"}


def on_demand(day: int, hour: int, minute: int = 0) -> str:
    """A backup.now archive on day ``day`` after START (day 0), at hour:minute UTC."""
    moment = START.replace(hour=hour, minute=minute) + timedelta(days=day)
    return archive_name(moment, on_demand=True)


def test_backup_now_on_some_days_never_costs_a_nightly_archive_its_place() -> None:
    # Forty nights at 02:00, and backup.now at noon (after that day's nightly) on the last day,
    # twice on the day before, and on days that are dailies or weeklies now.
    demanded = [on_demand(39, 12), on_demand(38, 9), on_demand(38, 15, 30), on_demand(35, 23),
                on_demand(28, 12), on_demand(21, 12), on_demand(3, 12)]
    names = nightly(40) + demanded

    kept = kept_archives(names, daily=7, weekly=4, on_demand=3)

    assert {name for name in kept if not name.endswith("-ondemand")} == FORTY_NIGHTS_KEPT
    assert {name for name in kept if name.endswith("-ondemand")} == {
        on_demand(39, 12), on_demand(38, 15, 30), on_demand(38, 9)}
    assert max(names, key=archive_time) in kept  # the noon backup.now of the last day


def test_the_newest_archive_is_kept_whatever_made_it() -> None:
    for count in range(1, 5):
        names = nightly(40) + [on_demand(39, 3 + hour) for hour in range(count)]
        newest = max(names, key=archive_time)

        assert newest.endswith("-ondemand")
        assert newest in kept_archives(names, daily=1, weekly=0, on_demand=1)
    assert "20261210T020000Z" in kept_archives([*nightly(40), on_demand(20, 12)],
                                               daily=1, weekly=0, on_demand=1)


def test_on_demand_archives_beyond_their_count_go_oldest_first() -> None:
    demanded = [on_demand(day, 12) for day in range(10)]

    kept = kept_archives(nightly(3) + demanded, daily=7, weekly=4, on_demand=2)

    assert kept == set(nightly(3)) | set(demanded[-2:])


def test_an_on_demand_name_gives_its_time_and_kind() -> None:
    moment = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)

    assert archive_name(moment, on_demand=True) == "20261202T143000Z-ondemand"
    assert archive_time("20261202T143000Z-ondemand") == moment


@pytest.mark.parametrize("name", ["20261202T020000", ".partial-20261202T020000Z", "latest",
                                  "20261202T020000Z-manual", "20261202T020000Z-ondemandx"])
def test_other_names_are_no_archives(name: str) -> None:
    with pytest.raises(ValueError, match="is not an archive name"):
        archive_time(name)
