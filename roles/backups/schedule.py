"""Backup schedules: the systemd OnCalendar forms the role accepts, checked on the controller.

The controller need not run systemd (``systemd-analyze calendar`` may be missing), and a timer
unit with an expression systemd rejects is only found out on the host, after the change. So the
role accepts a small, documented subset of OnCalendar, parses it here before any contact, and
also derives from it the longest gap between two runs, which the verify spec needs to call a
backup "too old". The forms (each optionally followed by `` UTC``; otherwise the host's time
zone, as systemd reads it):

- ``hourly``, ``daily``, ``weekly``, ``monthly``: systemd's own meanings (weekly is Monday
  00:00, monthly the 1st at 00:00);
- ``HH:MM`` or ``HH:MM:SS``, alone or after ``*-*-*``: every day at that time;
- ``DAYS HH:MM[:SS]``: on those weekdays, DAYS a comma list of ``Mon``..``Sun`` and ranges
  such as ``Mon..Fri``;
- ``*-*-DD HH:MM[:SS]``: every month on day DD, 1 to 28 (a later day is skipped by months that
  lack it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from provisioner.errors import RoleError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_KEYWORDS = {
    "hourly": ("*-*-* *:00:00", timedelta(hours=1)),
    "daily": ("*-*-* 00:00:00", timedelta(days=1)),
    "weekly": ("Mon *-*-* 00:00:00", timedelta(days=7)),
    "monthly": ("*-*-01 00:00:00", timedelta(days=31)),
}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
_MONTH_DAY = re.compile(r"^\*-\*-(0?[1-9]|1\d|2[0-8])$")
FORMS = ("hourly, daily, weekly, monthly, HH:MM, DAYS HH:MM (e.g. Mon..Fri 02:00) or *-*-DD "
         "HH:MM (DD 1-28), each optionally followed by UTC")


@dataclass(frozen=True)
class Schedule:
    """An accepted schedule: what the timer's OnCalendar says, and the longest wait between
    two of its runs."""

    on_calendar: str
    longest_gap: timedelta


def parse_schedule(variable: str, text: object) -> Schedule:
    """The Schedule ``text`` stands for; RoleError naming ``variable`` and the accepted forms."""
    if isinstance(text, int) and not isinstance(text, bool):
        raise unquoted_time(variable, text)
    if not isinstance(text, str):
        raise _refused(variable, text)
    words = text.split()
    zone = ""
    if words and words[-1] == "UTC":
        words, zone = words[:-1], " UTC"
    try:
        calendar, gap = _parse_words(words)
    except ValueError:
        raise _refused(variable, text) from None
    return Schedule(calendar + zone, gap)


def _parse_words(words: list[str]) -> tuple[str, timedelta]:
    if len(words) == 1 and words[0] in _KEYWORDS:
        return _KEYWORDS[words[0]]
    if not 1 <= len(words) <= 2:
        raise ValueError("one or two words before the time zone")
    time = _clock(words[-1])
    if len(words) == 1 or words[0] == "*-*-*":
        return f"*-*-* {time}", timedelta(days=1)
    month_day = _MONTH_DAY.fullmatch(words[0])
    if month_day:
        return f"*-*-{int(month_day.group(1)):02d} {time}", timedelta(days=31)
    days = weekday_numbers(words[0])
    return f"{words[0]} *-*-* {time}", timedelta(days=longest_weekday_gap(days))


def _clock(word: str) -> str:
    match = _TIME.fullmatch(word)
    if not match:
        raise ValueError(f"not a time: {word}")
    hours, minutes, seconds = match.groups()
    return f"{int(hours):02d}:{minutes}:{seconds or '00'}"


def weekday_numbers(text: str) -> frozenset[int]:
    """``Mon,Wed..Fri`` -> {0, 2, 3, 4}; ValueError for anything else (a backwards range too)."""
    days: set[int] = set()
    for part in text.split(","):
        first, dots, last = part.partition("..")
        start = WEEKDAYS.index(first)  # ValueError when it is no weekday
        end = WEEKDAYS.index(last) if dots else start
        if end < start:
            raise ValueError(f"backwards range {part}")
        days.update(range(start, end + 1))
    return frozenset(days)


def longest_weekday_gap(days: frozenset[int]) -> int:
    """The most days from one chosen weekday to the next (7 when only one is chosen)."""
    ordered = sorted(days)
    following = [*ordered[1:], ordered[0] + 7]
    return max(after - before for before, after in zip(ordered, following, strict=True))


def unquoted_time(variable: str, minutes: int) -> RoleError:
    """The error for a time YAML read as a number: YAML 1.1 reads an unquoted 02:00 as the
    sexagesimal 2*60+0 = 120, and "120 is not a schedule" left a breaker puzzled."""
    hours, rest = divmod(minutes, 60)
    if minutes >= 24 * 60:
        return RoleError(f"{variable} is the number {minutes}: YAML reads an unquoted time as a "
                         f"number of minutes, and {hours:02d}:{rest:02d} is past a day's last "
                         f"minute (23:59). Write a time from 00:00 to 23:59, quoted: "
                         f"{variable}: '00:00'.")
    guess = f"'{hours:02d}:{rest:02d}'" if 0 <= hours < 24 else "'02:00'"
    return RoleError(f"{variable} is the number {minutes}: YAML reads an unquoted time such as "
                     f"{guess[1:-1]} as a number of minutes. Write it quoted: {variable}: "
                     f"{guess}.")


def _refused(variable: str, text: object) -> RoleError:
    return RoleError(f"{variable} is {text!r}, which is not a schedule this role accepts: use "
                     f"{FORMS} (systemd OnCalendar forms; see roles/backups/schedule.py).")
