"""cron.d files: names cron will actually read, root-owned, newline-terminated."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from provisioner.host import Host
from provisioner.ops.files import ensure_file
from provisioner.step import Step

_RUN_PARTS_NAME = re.compile(r"[A-Za-z0-9_-]+")


def render_cron_file(jobs: Sequence[str], environment: Mapping[str, str], header: str) -> str:
    """A cron.d body; '%' must already be escaped by the caller (cron turns it into newlines)."""
    lines = [f"# {header}"] + [f"{key}={value}" for key, value in environment.items()]
    return "\n".join([*lines, *jobs]) + "\n"


def ensure_cron_file(host: Host, name: str, jobs: Sequence[str], *,
                     environment: Mapping[str, str] | None = None,
                     header: str = "Managed by provisioner", label: str = "") -> Step:
    """/etc/cron.d/<name> with these job lines (``m h dom mon dow user command``)."""
    if not _RUN_PARTS_NAME.fullmatch(name):
        raise ValueError(f"cron.d file name {name!r} would be silently ignored by cron: use only "
                         "letters, digits, '_' and '-' (controls.md §10)")
    content = render_cron_file(jobs, environment or {}, header)
    return ensure_file(host, f"/etc/cron.d/{name}", content, mode=0o644,
                       label=label or f"cron.d {name}")
