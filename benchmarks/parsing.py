"""Reading each tool's own account of a run (pure, unit-tested): what changed and what failed.

A peer's result is checked, not trusted by exit code alone, so a broken run cannot pass for a
fast one: a no-op must really report 0 changed on every host.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HostCounts:
    changed: int
    failed: int


_ANSIBLE_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                            r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")
_PYINFRA_STATUS = re.compile(r"^\s+\[(?P<host>[^\]]+)\]\s+(?P<status>Success|No changes|Error)")
_PYINFRA_ERROR = re.compile(r"^\s+\[(?P<host>[^\]]+)\]\s+(?:Error|Unexpected error)")


def parse_ansible_recap(output: str) -> dict[str, HostCounts]:
    """Per host ``changed`` and ``failed + unreachable`` from the PLAY RECAP lines."""
    found = {}
    for line in output.splitlines():
        match = _ANSIBLE_RECAP.match(line.strip())
        if match:
            found[match["host"]] = HostCounts(
                int(match["changed"]), int(match["failed"]) + int(match["unreachable"]))
    return found


def parse_pyinfra_run(output: str, hosts: Iterable[str]) -> dict[str, HostCounts]:
    """Per host: operations reported ``Success`` (pyinfra's word for 'commands ran') and errors."""
    changed: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for line in output.splitlines():
        match = _PYINFRA_STATUS.match(line)
        if match and match["status"] == "Success":
            changed[match["host"]] += 1
        elif _PYINFRA_ERROR.match(line):
            failed[_PYINFRA_ERROR.match(line)["host"]] += 1  # type: ignore[index]
    return {host: HostCounts(changed[host], failed[host]) for host in hosts}


def parse_pyinfra_dry(output: str, hosts: Sequence[str]) -> dict[str, HostCounts]:
    """Per host: operations in the ``Change`` column of ``--dry``'s table of detected changes.

    A cell reads ``-`` or ``N (host, host...)``; the ``Conditional Change`` column (operations
    guarded by ``_if``, run only if an earlier one changes) is not a change.
    """
    changed: Counter[str] = Counter()
    in_table = False
    for line in output.splitlines():
        if line.startswith("--> Detected changes"):
            in_table = True
            continue
        if in_table and line.startswith("-->"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        if not in_table or len(cells) < 3 or cells[0] == "Operation":
            continue
        change = cells[-2]
        for host in hosts:
            if re.search(rf"[(, ]{re.escape(host)}[,)]", change):
                changed[host] += 1
        if change != "-" and "(" not in change and len(hosts) == 1:
            changed[hosts[0]] += 1
    failed = 0 if in_table else 1
    return {host: HostCounts(changed[host], failed) for host in hosts}


def count_sessions(log_lines: Iterable[str], addresses: dict[str, str]) -> dict[str, int]:
    """Per host, how many logged ssh/sftp/scp invocations name its address."""
    counts = {host: 0 for host in addresses}
    for line in log_lines:
        words = set(re.split(r"[\s\[\]@:]+", line))
        for host, address in addresses.items():
            if address in words:
                counts[host] += 1
    return counts
