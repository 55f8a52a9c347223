"""Kernel parameters: a drop-in file for boot, and the running values kept equal to it.

The runtime step compares every key with /proc/sys and sets only those that differ, so drift
(e.g. Docker flipping ip_forward) is repaired and a converged host is not touched. Values are
written to /proc/sys directly, so a host without procps (no ``sysctl`` program) works too. A key
that is read-only here (a container shares the host's kernel) is reported, not failed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from provisioner.commands import quote
from provisioner.host import Host
from provisioner.ops.files import ensure_file
from provisioner.step import Plan, Probed, Step


def render_sysctl_file(settings: Mapping[str, str | int], header: str) -> str:
    lines = [f"# {header}"] + [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def probe_runtime(keys: Sequence[str]) -> str:
    """``key<TAB>w|r|-<TAB>value`` per key: writable, read-only or absent on this kernel.

    The tests are shell builtins and one awk reads every value: a ``$(cat ...)`` per key cost
    the host three process starts per key. (The shell's own ``read`` cannot be used: dash reads a
    byte at a time, and /proc/sys answers a read past offset 0 with end-of-file.) A value keeps
    its own tabs; plan_runtime normalises whitespace.
    """
    parts = ["set --"]
    for key in keys:
        path = quote(_proc_path(key))
        parts.append(f"if [ ! -e {path} ]; then s=-; elif [ -w {path} ]; then s=w; else s=r; fi; "
                     f"set -- \"$@\" {quote(key)} $s {path}")
    parts.append("awk 'BEGIN { for (i = 1; i < ARGC; i += 3) { v = \"\"; "
                 "if (ARGV[i + 1] != \"-\") getline v < ARGV[i + 2]; "
                 "printf \"%s\\t%s\\t%s\\n\", ARGV[i], ARGV[i + 1], v } }' \"$@\"")
    return "; ".join(parts)


def plan_runtime(output: str, settings: Mapping[str, str | int]) -> Plan:
    """``sysctl -w`` for every writable key whose running value differs; pure."""
    to_set: list[tuple[str, str]] = []
    skipped, absent = [], []
    for line in output.splitlines():
        key, status, value = [*line.split("\t", 2), "", ""][:3]
        wanted = " ".join(str(settings.get(key, "")).split())
        if key not in settings or " ".join(value.split()) == wanted:
            continue
        if status == "w":
            to_set.append((key, str(settings[key])))
        elif status == "r":
            skipped.append(key)
        else:
            absent.append(key)
    note = _note("read-only here", skipped) + _note("not in this kernel", absent)
    if not to_set:
        return Plan("running values match" + note)
    shown = ", ".join(f"{key}={value}" for key, value in to_set[:4])
    return Plan(f"set {len(to_set)} running value(s): {shown}" + note,
                action=write_runtime_command(to_set))


def _proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def write_runtime_command(values: Sequence[tuple[str, str]]) -> str:
    """Shell writing each value to its /proc/sys file, as ``sysctl -w`` does, with the shell's
    own printf: the sysctl program (procps) is absent from minimal images."""
    return " && ".join(f"printf '%s\\n' {quote(value)} > {quote(_proc_path(key))}"
                       for key, value in values)


def _note(what: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = ", ..." if len(keys) > 3 else ""
    return f" ({len(keys)} {what}: {', '.join(keys[:3])}{more})"


def ensure_sysctl(host: Host, path: str, settings: Mapping[str, str | int], *,
                  header: str = "Managed by provisioner", label: str = "") -> list[Step]:
    """A sysctl.d drop-in with these settings, applied to the running kernel when they differ."""
    def decide(probed: Probed) -> Plan:
        return plan_runtime(probed.output, settings)

    return [
        ensure_file(host, path, render_sysctl_file(settings, header),
                    label=label or f"sysctl file {path}"),
        Step(f"sysctl values from {path}", probe_runtime(list(settings)), decide),
    ]
