"""``invoke facts``: a host's facts as a table for people and as plain data for programs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from provisioner.facts import Facts
from provisioner.output.control_codes import strip_control_codes


def facts_table(name: str, facts: Facts) -> str:
    """A host's facts as a short aligned table, for people (``--json`` is for programs)."""
    rows = [("OS", _os_name(facts)),
            ("kernel", f"{facts.kernel} ({facts.architecture})"),
            ("CPUs", str(facts.cpus)),
            ("RAM", _size(facts.memory_bytes)),
            ("disks", ", ".join(f"{disk.name} {_size(disk.size_bytes)}"
                                f"{' rotational' if disk.rotational else ''}"
                                for disk in facts.disks) or "none"),
            ("virtualization", facts.virtualization),
            ("init", facts.init),
            ("firmware", "EFI" if facts.efi else "BIOS"),
            ("OpenSSH", ".".join(map(str, facts.openssh_version))
             if facts.openssh_version else "not installed"),
            ("hostname", facts.hostname)]
    width = max(len(label) for label, _ in rows)
    return "\n".join([strip_control_codes(name),
                      *(f"  {label:<{width}}  {strip_control_codes(value)}"
                        for label, value in rows)])


def facts_data(facts: Facts) -> dict[str, Any]:
    """A host's facts for ``--json``: every field, sizes in bytes; credentials in apt source
    URLs (user:password@) masked."""
    data = asdict(facts)
    data["apt_sources"] = [_without_credentials(line) for line in facts.apt_sources]
    return data


def _without_credentials(line: str) -> str:
    import re

    return re.sub(r"(://)[^/\s@]+@", r"\1***@", line)


def _os_name(facts: Facts) -> str:
    name = f"{facts.os_id.capitalize()} {facts.os_version}".strip()
    return f"{name} ({facts.os_codename})" if facts.os_codename else name


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
