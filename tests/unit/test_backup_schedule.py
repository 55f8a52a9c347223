"""Backup schedules: the OnCalendar forms the backups role accepts, and their longest gaps."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from provisioner.errors import RoleError
from roles.backups.schedule import longest_weekday_gap, parse_schedule, weekday_numbers

ACCEPTED = [
    ("02:00", "*-*-* 02:00:00", timedelta(days=1)),
    ("2:30:15", "*-*-* 02:30:15", timedelta(days=1)),
    ("*-*-* 23:59", "*-*-* 23:59:00", timedelta(days=1)),
    ("daily", "*-*-* 00:00:00", timedelta(days=1)),
    ("hourly", "*-*-* *:00:00", timedelta(hours=1)),
    ("weekly", "Mon *-*-* 00:00:00", timedelta(days=7)),
    ("monthly", "*-*-01 00:00:00", timedelta(days=31)),
    ("Mon..Fri 02:00", "Mon..Fri *-*-* 02:00:00", timedelta(days=3)),
    ("Sun 04:00", "Sun *-*-* 04:00:00", timedelta(days=7)),
    ("Mon,Thu 01:00", "Mon,Thu *-*-* 01:00:00", timedelta(days=4)),
    ("*-*-15 03:00", "*-*-15 03:00:00", timedelta(days=31)),
    ("*-*-01 04:00 UTC", "*-*-01 04:00:00 UTC", timedelta(days=31)),
    ("02:00 UTC", "*-*-* 02:00:00 UTC", timedelta(days=1)),
]

REFUSED = ["", "2am", "25:00", "02:60", "nightly", "Mon..Fri", "Fri..Mon 02:00",
           "Mon *-*-01 02:00", "*-*-31 02:00", "*-*-00 02:00", "*-02-01 02:00",
           "02:00 Europe/Berlin", "Mon Tue 02:00", "02:00; rm -rf /", 2.5, ["02:00"], True]


@pytest.mark.parametrize(("text", "calendar", "gap"), ACCEPTED)
def test_an_accepted_form_gives_its_timer_expression_and_longest_gap(
        text: str, calendar: str, gap: timedelta) -> None:
    schedule = parse_schedule("backups_schedule", text)

    assert (schedule.on_calendar, schedule.longest_gap) == (calendar, gap)


@pytest.mark.parametrize(("number", "quoted"), [(120, "'02:00'"), (0, "'00:00'"),
                                               (1439, "'23:59'"), (930, "'15:30'")])
def test_a_time_yaml_read_as_a_number_is_refused_saying_to_quote_it(number: int,
                                                                    quoted: str) -> None:
    # YAML 1.1 reads an unquoted 02:00 as the sexagesimal number 2 * 60 + 0 = 120.
    with pytest.raises(RoleError) as refused:
        parse_schedule("backups_schedule", number)

    assert str(refused.value) == (
        f"backups_schedule is the number {number}: YAML reads an unquoted time such as "
        f"{quoted[1:-1]} as a number of minutes. Write it quoted: backups_schedule: {quoted}.")


@pytest.mark.parametrize("text", REFUSED)
def test_a_form_outside_the_accepted_ones_is_refused_naming_the_variable(text: object) -> None:
    with pytest.raises(RoleError, match=r"^backups_verify_schedule is .* not a schedule this "
                                        r"role accepts: use hourly, daily"):
        parse_schedule("backups_verify_schedule", text)


def test_weekday_lists_and_ranges_name_the_days_they_cover() -> None:
    assert weekday_numbers("Mon,Wed..Fri,Sun") == {0, 2, 3, 4, 6}


def test_the_longest_weekday_gap_wraps_around_the_week() -> None:
    assert longest_weekday_gap(frozenset({1, 2})) == 6


def _systemd_gaps(calendar: str) -> list[timedelta]:
    done = subprocess.run(["systemd-analyze", "calendar", "--iterations=80", calendar],
                          capture_output=True, text=True, check=True,
                          env={"TZ": "UTC", "PATH": "/usr/bin:/bin"})
    times = [datetime.strptime(" ".join(line.split(":", 1)[1].split()[1:3]), "%Y-%m-%d %H:%M:%S")
             for line in done.stdout.splitlines()
             if line.strip().startswith(("Next elapse:", "Iter. #"))]
    return [after - before for before, after in pairwise(times)]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed on this controller")
@pytest.mark.parametrize(("text", "calendar", "gap"), ACCEPTED)
def test_systemd_reads_each_accepted_form_with_exactly_that_longest_gap(
        text: str, calendar: str, gap: timedelta) -> None:
    assert max(_systemd_gaps(parse_schedule("backups_schedule", text).on_calendar)) == gap


def test_a_time_past_the_day_read_as_a_number_is_not_suggested_back() -> None:
    # --set backups_schedule=24:00 reaches the role as 1440: quoting "24:00" is refused too.
    with pytest.raises(RoleError) as refused:
        parse_schedule("backups_schedule", 1440)

    assert str(refused.value) == (
        "backups_schedule is the number 1440: YAML reads an unquoted time as a number of "
        "minutes, and 24:00 is past a day's last minute (23:59). Write a time from 00:00 to "
        "23:59, quoted: backups_schedule: '00:00'.")
