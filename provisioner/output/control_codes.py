"""Control characters a host may send in a label or a reason (a carriage return, a bell), taken
out before they reach a terminal or a log.

The same characters rich.control.strip_control_codes removes, kept here so that writing a log
needs no rich: importing rich.control alone pulls in most of rich (about 7 ms).
"""

from __future__ import annotations

#: BEL, BS, VT, FF and CR: rich.control.STRIP_CONTROL_CODES.
_STRIPPED = dict.fromkeys((7, 8, 11, 12, 13))


def strip_control_codes(text: str) -> str:
    return text.translate(_STRIPPED)
