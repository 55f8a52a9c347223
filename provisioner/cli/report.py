"""What ``invoke report`` (and ``invoke provision --html``) does: the host report, written.

The page is drawn from the records the last provision, verify and audit of each host left on
this machine (provisioner/records.py) and from the host's live status (deploy history,
backups, certificates), read in one round trip per host unless ``--offline``. A host that
cannot be reached still gets its page from the records, which says why the live part is
missing, and the command then exits 1 (as the other commands do for a host they could not
ask); a host without a provision record, or a page or JSON path that cannot be written, is
refused before any contact (exit 2).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provisioner.cli import check_report_path, select_jobs
from provisioner.errors import ProvisionerError
from provisioner.inventory.hosts import Inventory
from provisioner.local_files import write_atomically
from provisioner.run.engine import RunOptions
from provisioner.run.session import HostJob


def check_outputs(html: str, json_file: str) -> None:
    """At least one of --html and --json, each a file that can be written now."""
    if not html and not json_file:
        raise ProvisionerError("invoke report writes the page to --html FILE and its data to "
                               "--json FILE: give at least one of them.")
    for flag, given in (("--html", html), ("--json", json_file)):
        if given:
            check_report_path(Path(given), flag)
    if html and json_file and Path(html).resolve() == Path(json_file).resolve():
        raise ProvisionerError(f"--html and --json both name {html}: give each a file of its "
                               "own.")


def report(inventory: Inventory, hosts: str, group: str, html: str = "", json_file: str = "",
           offline: bool = False) -> int:
    """``invoke report``: 0 when the page (and JSON) are written with every host's live
    status, 1 when a host's could not be read."""
    check_outputs(html, json_file)
    jobs = reported_jobs(inventory, hosts, group)
    reasons = {job.config.name: "not read (--offline)" for job in jobs} if offline else {}
    data = host_report_data(inventory.path, jobs, reasons)
    if not write_outputs(data, html, json_file):
        return 1
    unread = [name for name, host in data["hosts"].items()
              if not host["live"]["read"] and name not in reasons]
    for name in unread:
        print(f"{name}: {data['hosts'][name]['live']['reason']}; its page shows the records "
              "only.", file=sys.stderr)
    return 1 if unread else 0


def reported_jobs(inventory: Inventory, hosts: str, group: str) -> list[HostJob]:
    """The chosen hosts, each with a provision record; with none chosen, every host that has
    one (those without are named on stderr), and a message when no host has one."""
    from provisioner.report.data import check_records, has_provision_record

    jobs = select_jobs(inventory, hosts, group, RunOptions())
    if hosts or group:
        check_records(inventory.path, [job.config.name for job in jobs])
        return jobs
    recorded = [job for job in jobs if has_provision_record(inventory.path, job.config.name)]
    if not recorded:
        check_records(inventory.path, [jobs[0].config.name])  # says how to make one
    kept = {job.config.name for job in recorded}
    left_out = [job.config.name for job in jobs if job.config.name not in kept]
    if left_out:
        print(f"left out, never provisioned from this machine: {', '.join(left_out)}",
              file=sys.stderr)
    return recorded


def host_report_data(inventory_path: Path, jobs: Sequence[HostJob],
                     not_asked: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The page's data: the records, and the live status of each job's host but those in
    ``not_asked`` (host -> why it is not asked)."""
    from provisioner.cli.host_status import not_read, read_every_status, status_plan
    from provisioner.report.data import page_data

    not_asked = not_asked or {}
    live = {name: not_read(reason) for name, reason in not_asked.items()}
    plans = []
    for job in jobs:
        if job.config.name in not_asked:
            continue
        try:
            plans.append(status_plan(job, str(inventory_path)))
        except ProvisionerError as error:  # a role's settings that name no site or release
            live[job.config.name] = not_read(str(error))
    live.update(read_every_status(plans))
    return page_data(inventory_path, [job.config.name for job in jobs], live)


def write_outputs(data: Mapping[str, Any], html: str, json_file: str) -> bool:
    """Write the page and the JSON (each 0600: they describe the hosts); False (said on
    stderr) when one could not be written after all (a disk that filled meanwhile)."""
    from provisioner.output.html_report import render_page

    outputs = [(Path(html), render_page(data))] if html else []
    outputs += [(Path(json_file), json.dumps(data, indent=2) + "\n")] if json_file else []
    for path, text in outputs:
        try:
            # a new file renamed into place: a link planted at the path is replaced
            write_atomically(path, text, mode=0o600, make_parents=False)
        except OSError as error:
            print(f"error: the host report could not be written to {path}: "
                  f"{error.strerror or error}.", file=sys.stderr)
            return False
        print(f"host report: {path}", flush=True)
    return True

