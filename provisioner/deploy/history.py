"""Each host's record of what was deployed when: one JSON line per deploy or rollback.

Kept on the host (``<state>/history``), so it is true whichever controller deployed; written
once the host's part ends, whatever the result (a deploy rolled back is recorded as such).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from provisioner.commands import quote

#: Lines kept: the oldest go once the file holds more.
KEEP_LINES = 500


@dataclass(frozen=True)
class Entry:
    action: str
    version: str
    previous: str
    who: str
    started: str
    duration_s: float
    result: str
    detail: str = ""


def append(path: str, entry: Entry) -> str:
    """Shell adding the entry (and trimming the file to KEEP_LINES)."""
    line = quote(json.dumps(asdict(entry), sort_keys=True))
    history = quote(path)
    # A line cut short (a crash, a full disk) must not swallow this one.
    return (f"if [ -s {history} ] && [ -n \"$(tail -c 1 {history})\" ]; then echo >> {history}; "
            f"fi; printf '%s\\n' {line} >> {history} && "
            f"if [ \"$(wc -l < {history})\" -gt {KEEP_LINES} ]; then "
            f"tail -n {KEEP_LINES} {history} > {history}.tmp && mv {history}.tmp {history}; fi")


def read(path: str, limit: int = 20) -> str:
    """Read-only shell printing the last ``limit`` entries."""
    return f"tail -n {limit} {quote(path)} 2>/dev/null; true"


def parse(output: str) -> list[Entry]:
    """The entries in order; a line that is not one (a damaged file) is skipped."""
    return read_entries(output)[0]


def read_entries(output: str) -> tuple[list[Entry], int]:
    """(the entries in order, how many non-empty lines were not entries)."""
    entries, damaged = [], 0
    for line in output.splitlines():
        try:
            data = json.loads(line)
            entries.append(Entry(**{key: data[key] for key in Entry.__dataclass_fields__
                                    if key in data}))
        except (ValueError, TypeError):
            damaged += bool(line.strip())
    return entries, damaged


def rollback_target(entries: list[Entry], serving: set[str]) -> str:
    """Where a rollback goes: after a deploy that did not finish (interrupted, failed) and
    left some instance on its version, back to what served before it; otherwise the version
    that served before the current one."""
    last = entries[-1] if entries else None
    if last is not None and last.result != "ok" and last.version in serving and last.previous:
        return last.previous
    current = sorted(serving)[0] if len(serving) == 1 else ""
    return previous_version(entries, current) if current else ""


def previous_version(entries: list[Entry], current: str) -> str:
    """The version that served before ``current``: the latest successful change to it."""
    for entry in reversed(entries):
        if entry.result == "ok" and entry.version == current and entry.previous \
                and entry.previous != current:
            return entry.previous
    return ""
