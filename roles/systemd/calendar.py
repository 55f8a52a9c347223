"""OnCalendar expressions checked on the controller, before any host is contacted.

systemd accepts a rich grammar (systemd.time(7), "Calendar Events"): a shorthand such as
``daily``, or ``[WEEKDAYS] [DATE] [TIME] [TIMEZONE]`` whose date and time components are ``*``,
numbers, ``a..b`` ranges, ``a/b`` repetitions and comma lists of those. This checks that shape
and the components' ranges, which catches what inventories get wrong (``25:00``, ``Mon..Fry``,
``every day``) without a systemd on the controller. The host has the last word: the units' config
set also runs ``systemd-analyze calendar`` on every expression before any unit goes live.
"""

from __future__ import annotations

import re

SHORTHANDS = frozenset({"minutely", "hourly", "daily", "weekly", "monthly", "yearly",
                        "annually", "quarterly", "semiannually"})
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {day: day for day in _DAYS} | {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun"}
_ZONE = re.compile(r"^(UTC|[A-Z][A-Za-z_+-]*(/[A-Za-z0-9_+-]+){0,2})$")
_NUMBER = re.compile(r"^[0-9]+$")
#: (lowest, highest) of each date and time component.
_YEAR, _MONTH, _DAY = (1970, 2199), (1, 12), (1, 31)
_HOUR, _MINUTE, _SECOND = (0, 23), (0, 59), (0, 59)


def calendar_problem(text: str) -> str | None:
    """What is wrong with an OnCalendar expression, or None when its shape is systemd's."""
    words = text.split()
    if not words:
        return "it is empty"
    if len(words) > 1 and _ZONE.fullmatch(words[-1]) and not _looks_like_time_or_date(words[-1]):
        words = words[:-1]
    if len(words) == 1 and words[0].lower() in SHORTHANDS:
        return None
    if words and _is_weekdays(words[0]):
        problem = weekday_problem(words[0])
        if problem:
            return problem
        words = words[1:]
    return _date_and_time(words)


def _looks_like_time_or_date(word: str) -> bool:
    return ":" in word or "-" in word or word == "*"


def _is_weekdays(word: str) -> bool:
    return word[:1].isalpha()


def _date_and_time(words: list[str]) -> str | None:
    if len(words) > 2:
        return f"{' '.join(words)!r} has more words than a date and a time"
    time = words.pop() if words and ":" in words[-1] else None
    date = words.pop() if words else None
    if words:
        return f"{words[0]!r} is neither a date nor a time"
    if date is not None:
        problem = _check_date(date)
        if problem:
            return problem
    return _check_time(time) if time is not None else None


def weekday_problem(word: str) -> str | None:
    """What is wrong with a weekday list such as ``Mon..Fri,Sun``, or None."""
    for part in word.split(","):
        ends = part.split("..")
        if len(ends) > 2 or not all(end.lower() in _DAY_NAMES for end in ends):
            return (f"{part!r} is not a weekday or a range of them (Mon, Tue, Wed, Thu, Fri, "
                    "Sat, Sun, e.g. Mon..Fri)")
    return None


def _check_date(date: str) -> str | None:
    if "~" in date:
        date = date.replace("~", "-", 1)
    parts = date.split("-")
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        return f"{date!r} is not a date: it has the form [YEAR-]MONTH-DAY, e.g. *-*-01"
    for part, name, bounds in zip(parts, ("year", "month", "day"), (_YEAR, _MONTH, _DAY),
                                  strict=True):
        problem = _component(part, name, bounds)
        if problem:
            return problem
    return None


def _check_time(time: str) -> str | None:
    parts = time.split(":")
    if len(parts) not in (2, 3):
        return f"{time!r} is not a time: it has the form HOUR:MINUTE[:SECOND], e.g. 02:30"
    if len(parts) == 3:
        parts[2] = parts[2].split(".", 1)[0]  # fractions of a second
    for part, name, bounds in zip(parts, ("hour", "minute", "second"),
                                  (_HOUR, _MINUTE, _SECOND), strict=False):
        problem = _component(part, name, bounds)
        if problem:
            return problem
    return None


def _component(text: str, name: str, bounds: tuple[int, int]) -> str | None:
    """One date or time component: ``*``, or a comma list of N, N..M and N/STEP (or */STEP)."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and (not _NUMBER.fullmatch(step) or int(step) == 0):
            return f"{item!r}: the {name}'s repetition must be a whole number above 0"
        if base == "*":
            continue
        ends = base.split("..")
        if len(ends) > 2 or not all(_NUMBER.fullmatch(end) for end in ends):
            return f"{item!r} is not a valid {name}: a number, a range such as 1..5, or *"
        if not all(bounds[0] <= int(end) <= bounds[1] for end in ends):
            return f"{item!r} is out of range: the {name} runs from {bounds[0]} to {bounds[1]}"
    return None
